"""``toolgym eval --executor ray``: the episodes' envs on a Ray rollout pool (:mod:`toolgym.envs.raypool`).

Kept out of :mod:`toolgym.cli.eval` so that module's flow stays readable; Ray is imported only
when ``--executor ray`` is given.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from toolgym.cli.common import console
from toolgym.errors import ConfigError

#: Where ``toolgym eval`` runs its envs.
EVAL_EXECUTORS = ("local", "ray")


def ray_options(executor: str, address: str | None) -> dict[str, Any] | None:
    """The Ray pool's options for ``--executor`` and ``--address`` (None: envs in this process).

    Raises:
        ConfigError: An unknown executor, or ``--address`` without ``--executor ray``.
    """
    if executor not in EVAL_EXECUTORS:
        raise ConfigError(f"--executor {executor!r}: toolgym eval runs envs on {' or '.join(EVAL_EXECUTORS)}")
    if executor == "local":
        if address is not None:
            raise ConfigError(f"--address {address} is the Ray head to join: it needs --executor ray")
        return None
    return {"address": address}


@contextmanager
def env_runner(
    episodes: int, ray: dict[str, Any] | None, env_kwargs: dict[str, Any]
) -> Iterator[tuple[Any, dict[str, int]]]:
    """``(env_maker, counts)`` for a runner: None and no drops locally, else a Ray pool's.

    The pool holds ``episodes`` slots (the episodes the runner runs at once: :func:`episodes_at_once`
    for eval, a GRPO rollout's tasks x G); ``counts`` is its live stats dict (``dropped`` …).

    Raises:
        ConfigError: Ray is not installed.
        ExecutorError: The Ray head cannot be reached (one line).
    """
    if ray is None:
        yield None, {"dropped": 0}
        return
    from toolgym.envs.raypool import rollout_pool

    with rollout_pool(ray["address"], episodes, env_kwargs) as pool:
        yield pool.make_env, pool.stats
    if pool.stats["dropped"]:
        console.print(
            f"{pool.stats['dropped']} episodes lost (their Ray actor died, and again on the retry): left out "
            "of the results and counted (eval: summary.json's dropped; GRPO: env_errors)",
            highlight=False,
        )


def episodes_at_once(agent: Any) -> int:
    """The episodes the eval runner runs at once: a BatchPolicy's ``slots``, else ``concurrency``, else 1."""
    return int(getattr(agent, "slots", None) or getattr(agent, "concurrency", None) or 1)


def complete_tasks(records: list[Any], samples: int, dropped: int) -> list[Any]:
    """The records of the tasks that have every sample (all of them when nothing was dropped).

    pass@k needs the same n for every task, so a task that lost an episode is left out of the table
    until a rerun completes it.
    """
    if not dropped:
        return records
    have: dict[str, int] = {}
    for r in records:
        have[r.task_id] = have.get(r.task_id, 0) + 1
    return [r for r in records if have[r.task_id] >= samples]
