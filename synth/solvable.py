"""The solvability filter: keep a task only if some, not every, sample of a policy solves it.

DeepSeek-V3.2 (§4) keeps only the synthesized tasks its policy solves at least once in 100
tries (pass@100 > 0): a task nobody solves teaches nothing, and one the policy always solves
teaches nothing either. ``toolgym synth --solvable-by POLICY --k K`` runs ``K`` samples of a
registered policy on every task that passed the gates and drops it as

* ``unsolved`` when no sample scored 1, or
* ``always_solved`` when every sample did,

recorded in the dataset's ``candidates`` table like a gate's drop (so the manifest's gate counts,
``toolgym show``, count them), with the successes in the reason.

Decision: where the filter runs. Gates run per world inside the executor's workers; a policy such
as ``model`` holds a checkpoint and wants many episodes in one batch, so the filter is a stage of
the ordered run in the parent process (:func:`toolgym.synth.run.consume`): each batch of world
results is judged at once, every gate-passing candidate of it ``K`` times, just before the
batch's rows are committed. Its verdicts are written in the same transaction as the candidates,
so an interrupted run resumes after the last judged candidate, and ``count`` stays the number of
tasks shipped *after* the filter. A candidate's verdict depends only on the candidate and the
run's seed (every registered policy seeds a sample from ``(seed, task id, sample)``), never on
how candidates were batched, so the same seed and settings give the same rows.

Decision: how the filter reaches a policy. Synthesis is layer L5 and policies and their episode
runner are L6 (DESIGN.md "Layout and layers"), so this module defines what the filter needs, a
:class:`Solver` ``(tasks with their worlds, k) -> successes per task``, and the caller hands one
to :func:`toolgym.synth.run.synthesize`. ``toolgym synth`` builds it with
:func:`toolgym.policy.solvable.policy_solver` (``toolgym.POLICIES`` + the eval runner, so a
:class:`~toolgym.policy.batch.BatchPolicy` is batched across all the batch's tasks).
"""

from __future__ import annotations

from typing import Any, Protocol

from toolgym.spec import TaskSpec
from toolgym.synth import get_family
from toolgym.synth.candidate import WorldResult
from toolgym.synth.config import SynthConfig

#: The statuses the filter gives the candidates it drops.
UNSOLVED = "unsolved"
ALWAYS_SOLVED = "always_solved"


class Solver(Protocol):
    """Runs ``k`` samples of one policy on each task and counts those that scored 1."""

    def __call__(self, items: list[tuple[TaskSpec, Any]], k: int) -> list[int]:
        """Successes per task.

        Args:
            items: ``(task, world object)`` pairs.
            k: Samples per task (sample indices ``0 … k-1``, also the reset seeds).

        Returns:
            For each item, in order, how many of its ``k`` samples scored reward 1 (0 … k).
        """
        ...


#: A filter verdict: (status, reason) for a dropped candidate, keyed by ``(world index, task index)``.
Verdicts = dict[tuple[int, int], tuple[str, str]]


def verdict(successes: int, k: int, policy: str) -> tuple[str, str] | None:
    """The fate of one task after ``k`` samples: None (keep it) or ``(status, reason)`` (drop it).

    Raises:
        ValueError: ``successes`` outside ``0 … k`` (a broken solver).
    """
    if not 0 <= successes <= k:
        raise ValueError(f"a solver reported {successes} successes out of {k} samples")
    reason = f"{successes}/{k} samples of policy {policy!r} solved it"
    if successes == 0:
        return UNSOLVED, reason
    if successes == k:
        return ALWAYS_SOLVED, reason
    return None


def judge(results: list[WorldResult], config: SynthConfig, solver: Solver) -> Verdicts:
    """Run the filter on every candidate of ``results`` that passed the gates, in one solver call.

    Args:
        results: World results, in candidate order.
        config: The run's settings (``solvable_by`` set).
        solver: Runs the policy (see :class:`Solver`).

    Returns:
        The verdicts of the candidates the filter drops; a gate-passing candidate not in it ships.

    Raises:
        ValueError: The solver returned a wrong number of counts, or a count outside ``0 … k``.
    """
    family = get_family(config.family)
    keys: list[tuple[int, int]] = []
    items: list[tuple[TaskSpec, Any]] = []
    for res in results:
        world = None
        for o in res.outcomes:
            if o.task is None:
                continue
            if world is None:  # one world object per world, only for worlds with a task to judge
                world = family.load_world(res.world.data)
            keys.append((res.index, o.task_index))
            items.append((o.task, world))
    if not items:
        return {}
    k, policy = config.solvable_k, str(config.solvable_by)
    counts = solver(items, k)
    if len(counts) != len(items):
        raise ValueError(f"a solver returned {len(counts)} counts for {len(items)} tasks")
    out: Verdicts = {}
    for key, c in zip(keys, counts, strict=True):
        fate = verdict(c, k, policy)
        if fate is not None:
            out[key] = fate
    return out


__all__ = ["ALWAYS_SOLVED", "UNSOLVED", "Solver", "Verdicts", "judge", "verdict"]
