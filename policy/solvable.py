"""The solvability filter's solver: K samples of a registered policy per task, through the eval runner.

:mod:`toolgym.synth.solvable` (layer L5) defines what the filter needs, a
:class:`~toolgym.synth.solvable.Solver`; this module (L6) provides it for any policy of
``toolgym.POLICIES``: the policy is built once per run (:func:`toolgym.policy.evaluate.make_policy`,
seeded with the run's seed) and each batch's ``len(items) * k`` episodes go through
:func:`toolgym.policy.runner.run_episodes` in one call, so a :class:`~toolgym.policy.batch.BatchPolicy`
(the in-repo model) fills its slots across tasks and a factory with ``concurrency`` runs
episodes in threads.
"""

from __future__ import annotations

from typing import Any

from toolgym.errors import ConfigError
from toolgym.policy.evaluate import make_policy
from toolgym.policy.runner import run_episodes
from toolgym.spec import TaskSpec
from toolgym.synth.config import SynthConfig


class PolicySolver:
    """A :class:`~toolgym.synth.solvable.Solver` running one registered policy (close it, or use ``with``).

    Args:
        name: A ``toolgym.POLICIES`` id.
        max_turns: Turns per episode (the env's limit), or None for the env's default.
        **options: The policy's options (``seed`` and the rest, as :func:`make_policy` takes them).

    Raises:
        UnknownNameError: An unregistered policy (naming the known ones).
        ConfigError: An option the policy does not take, or a bad value (one line).
    """

    def __init__(self, name: str, max_turns: int | None = None, **options: Any) -> None:
        self.name = name
        self.env_kwargs = {} if max_turns is None else {"max_turns": max_turns}
        self.policy = make_policy(name, **options)

    def __call__(self, items: list[tuple[TaskSpec, Any]], k: int) -> list[int]:
        """Successes (reward 1) out of ``k`` samples per task, in the order of ``items``."""
        jobs = [(task, world, i) for task, world in items for i in range(k)]
        wins: dict[str, int] = {task.task_id: 0 for task, _ in items}
        for record in run_episodes(jobs, self.policy, **self.env_kwargs):
            wins[record.task_id] += record.reward >= 1.0
        return [wins[task.task_id] for task, _ in items]

    def close(self) -> None:
        """Release what the policy holds (a model's weights and caches)."""
        close = getattr(self.policy, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> PolicySolver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def policy_solver(config: SynthConfig) -> PolicySolver:
    """The solver of a run's filter: ``config.solvable_by`` with ``config.solvable_options``, seeded by ``config.seed``.

    Raises:
        ConfigError: ``config.solvable_by`` is not set, or the policy refuses its options.
        UnknownNameError: ``config.solvable_by`` is not registered.
    """
    if config.solvable_by is None:
        raise ConfigError("the run has no solvability filter (config.solvable_by is not set)")
    return PolicySolver(config.solvable_by, seed=config.seed, **config.solvable_options)


__all__ = ["PolicySolver", "policy_solver"]
