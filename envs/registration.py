"""Registering toolgym env ids with Gymnasium.

Every id is ``toolgym/<EnvName>-v<N>`` with the string entry point
``toolgym.envs.toolenv:ToolEnv`` and the family id as a kwarg, so nothing is imported until
``gymnasium.make``. Gymnasium itself only warns when an id is registered twice; toolgym raises,
because two families silently sharing an id would serve the wrong tasks. Unknown ids are
reported by Gymnasium with the closest registered names ("Did you mean …").
"""

from __future__ import annotations

import gymnasium as gym

from toolgym.errors import DuplicateRegistrationError

ENTRY_POINT = "toolgym.envs.toolenv:ToolEnv"
NAMESPACE = "toolgym"


def register_env(env_id: str, family: str) -> None:
    """Register ``env_id`` for a family; raises if the id is already registered."""
    if env_id in gym.registry:
        raise DuplicateRegistrationError(f"environment id {env_id!r} is already registered")
    if not env_id.startswith(NAMESPACE + "/"):
        raise ValueError(f"toolgym env ids live in the {NAMESPACE!r} namespace, got {env_id!r}")
    # No TimeLimit wrapper: ToolEnv enforces its own turn limit (and reports truncation itself).
    gym.register(id=env_id, entry_point=ENTRY_POINT, kwargs={"family": family}, disable_env_checker=False)


def toolgym_env_ids() -> list[str]:
    """Every registered toolgym id."""
    return sorted(k for k in gym.registry if k.startswith(NAMESPACE + "/"))
