"""toolgym: synthesized, verified, sandboxed tool-use environments for RL of language models.

The package's face. Importing it registers every environment id with Gymnasium from one
central list of string entry points (nothing heavy is imported until ``gymnasium.make``), so
``import toolgym; gymnasium.make("toolgym/TripPlanning-v1")`` works, and so does
``gymnasium.make("toolgym:toolgym/TripPlanning-v1")`` without the explicit import.

Parts (see DESIGN.md): ``toolgym.envs`` (Gymnasium side), ``toolgym.synth`` (families and the
synthesis pipeline), ``toolgym.verifiers`` (verdicts and quality gates), ``toolgym.policy``
(the in-repo model, training and evaluation), ``toolgym.cli`` (the ``toolgym`` command).
"""

from __future__ import annotations

__version__ = "0.1.0"

#: The central list of env ids: id -> family id (families are listed in ``toolgym.synth``).
ENV_IDS: dict[str, str] = {
    "toolgym/TripPlanning-v1": "trip",
    "toolgym/CodeInterpreter-v1": "code",
}


def _register_all() -> None:
    import gymnasium as gym

    from toolgym.envs.registration import register_env

    for env_id, family in ENV_IDS.items():
        if env_id not in gym.registry:  # importing the package twice (reload) must not fail
            register_env(env_id, family)


_register_all()

__all__ = ["ENV_IDS", "__version__"]
