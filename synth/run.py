"""The resumable ordered run: candidates → reference run → gates → [solvability filter] → dataset.

Worlds are the unit of parallel work (:mod:`toolgym.synth.candidate`); an executor from
``toolgym.EXECUTORS`` (:mod:`toolgym.synth.executors`) yields their results *in candidate
order*, and they are written in batches, one transaction each, until ``count`` tasks have
shipped. So the shipped tasks are the first ``count`` candidates that pass, whatever the
executor and its number of workers, and an interrupted run resumes at the first unwritten
candidate and ends with the same rows as an uninterrupted one. The optional solvability filter
(:mod:`toolgym.synth.solvable`) judges each batch in this process before it is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import toolgym
from toolgym.data.dataset import Batch, Dataset
from toolgym.errors import ConfigError
from toolgym.registry import unknown
from toolgym.synth import get_family
from toolgym.synth.candidate import WorldResult, synthesize_world
from toolgym.synth.config import SynthConfig, canonical_key
from toolgym.synth.executors import Executor
from toolgym.synth.family import Family
from toolgym.synth.solvable import ALWAYS_SOLVED, UNSOLVED, Solver, Verdicts, judge

#: A batch is written once it holds this many candidates, or after :data:`BATCH_SECONDS`. A commit
#: costs ~30 ms in DuckDB whatever its size: 512 candidates (not 64) cut the writer's CPU by a
#: fifth, and an interrupted run still loses at most 2 s of work (batches are atomic; resume redoes them).
BATCH_CANDIDATES = 512
BATCH_SECONDS = 2.0


@dataclass
class SynthStats:
    """What a run did."""

    shipped: int = 0
    candidates: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    resumed_from: tuple[int, int] | None = None
    existing: int = 0  # tasks of the family the dataset held before this run (>= count: already complete)


def check_archetypes(family: Family, names: list[str]) -> None:
    """Refuse held-out archetypes the family does not have (before any file is created).

    Raises:
        ConfigError: The family has no archetypes.
        UnknownNameError: A name is not one of them (the message names the closest).
    """
    known = list(family.archetypes())
    if names and not known:
        raise ConfigError(f"family {family.id!r} has no archetypes to hold out")
    for name in names:
        if name not in known:
            raise unknown(f"archetype of family {family.id!r}", name, known)


def synthesize(
    config: SynthConfig,
    out: Path,
    progress: Callable[[int, int], None] | None = None,
    solver: Solver | None = None,
) -> SynthStats:
    """Ship ``config.count`` tasks of ``config.family`` into the dataset at ``out`` (resumable).

    Args:
        config: The run's settings (``config.executor`` names the executor, ``config.workers``
            its size).
        out: Dataset path; created if missing, resumed if it holds the same family run.
        progress: Called as ``progress(shipped, count)`` after each written batch.
        solver: The solvability filter's judge, required exactly when ``config.solvable_by`` is
            set (:mod:`toolgym.synth.solvable`; ``toolgym.policy.solvable.policy_solver(config)``
            builds the one for the registered policy). The caller closes it.

    Returns:
        Counts for this invocation.

    Raises:
        UnknownNameError: ``config.executor`` is not in ``toolgym.EXECUTORS``,
            ``config.solvable_by`` not in ``toolgym.POLICIES``, or a held-out archetype not one
            of the family's (no file is created).
        ConfigError: Held-out archetypes for a family without any; a filter without a solver or
            a solver without a filter (no file is created);
            the dataset holds this family with different settings, or too many candidates were
            dropped (``max_candidates_per_task``).
        ReferenceSolutionError: A reference solution failed (a synthesis bug).
    """
    family = get_family(config.family)
    check_archetypes(family, config.holdout_archetypes)
    check_filter(config, solver)
    executor: Executor = toolgym.EXECUTORS.get(config.executor)(config.workers)
    stats = SynthStats()
    t0 = time.perf_counter()
    # The executor starts (the local pool forks) before DuckDB starts its threads: forking a
    # multi-threaded process is unsafe.
    with executor, Dataset(out, create=True) as ds:
        last, shipped = open_run(ds, config, out)
        stats.resumed_from, stats.existing = last, shipped
        if shipped >= config.count:
            return stats
        start_w, skip = resume_point(last, config.tasks_per_world)
        results = executor.map_ordered(synthesize_world, config, start_w, skip)
        try:
            consume(ds, results, config, family.id, shipped, stats, progress, solver)
        finally:
            results.close()
    stats.seconds = time.perf_counter() - t0
    return stats


def check_filter(config: SynthConfig, solver: Solver | None) -> None:
    """Refuse a solvability filter without a solver, a solver without a filter, or an unknown policy.

    Raises:
        UnknownNameError: ``config.solvable_by`` is not in ``toolgym.POLICIES`` (naming the known ones).
        ConfigError: Exactly one of ``config.solvable_by`` and ``solver`` is given.
    """
    if config.solvable_by is None:
        if solver is not None:
            raise ConfigError("a solver was given but config.solvable_by is not set (the manifest would not say so)")
        return
    toolgym.POLICIES.get(config.solvable_by)
    if solver is None:
        raise ConfigError(
            f"config.solvable_by={config.solvable_by!r} needs a solver: pass "
            "solver=toolgym.policy.solvable.policy_solver(config)"
        )


def open_run(ds: Dataset, config: SynthConfig, out: Path) -> tuple[tuple[int, int] | None, int]:
    """Check the dataset's manifest for this family against ``config`` and (re)write it.

    Returns:
        The last written candidate ``(w, k)`` (None: none yet) and the tasks already shipped.

    Raises:
        ConfigError: The dataset holds this family with different settings (the differing
            ones are named).
    """
    family = get_family(config.family)
    prior = ds.manifest(family.id)
    key = config.resume_key()
    stored = canonical_key(prior["config"]) if prior is not None else None
    if stored is not None and stored != key:
        # a setting only one side has (the solvability filter on in one run, off in the other) differs too
        diff = sorted(k for k in key.keys() | stored.keys() if stored.get(k) != key.get(k))
        raise ConfigError(
            f"{out} already holds family {family.id!r} synthesized with different settings "
            f"({', '.join(diff)}); use another --out, or the same settings to resume"
        )
    ds.set_manifest(family.id, toolgym.__version__, family.version, config.seed, key)
    return ds.progress(family.id)


def resume_point(last: tuple[int, int] | None, tasks_per_world: int) -> tuple[int, int]:
    """The first unwritten candidate after ``last`` as ``(world, candidates of it to skip)``."""
    if last is None:
        return 0, 0
    w, k = last
    return (w, k + 1) if k + 1 < tasks_per_world else (w + 1, 0)


def consume(
    ds: Dataset,
    results: Iterator[WorldResult],
    config: SynthConfig,
    family_id: str,
    ordinal: int,
    stats: SynthStats,
    progress: Callable[[int, int], None] | None,
    solver: Solver | None = None,
) -> None:
    """Write world results, in order, in batches until ``config.count`` tasks have shipped.

    World results are held until a batch is due (:data:`BATCH_CANDIDATES` candidates, or
    :data:`BATCH_SECONDS`, or as soon as the gate-passing ones could reach ``count`` or the
    candidates the limit); then the solvability filter, when on, judges the batch's gate-passing
    candidates in one solver call (:func:`toolgym.synth.solvable.judge`), and the batch is
    written up to the ``count``-th shipped task. Candidates after it are not written (a resume or
    an extension starts there).

    Args:
        ds: The open dataset.
        results: World results in candidate order (endless).
        config: The run's settings.
        family_id: The family (``config.family``).
        ordinal: Tasks already shipped (the next task's ordinal).
        stats: Updated in place.
        progress: Called as ``progress(shipped, count)`` after each written batch.
        solver: Runs the filter's policy; required when ``config.solvable_by`` is set.

    Raises:
        ConfigError: More than ``count * max_candidates_per_task`` candidates were needed (what
            was evaluated so far is written first, so a rerun resumes after it).
    """
    limit = config.count * config.max_candidates_per_task
    pending: list[WorldResult] = []
    candidates = passed = 0  # of the pending results: all, and those the gates shipped
    last_write = time.perf_counter()
    for res in results:
        pending.append(res)
        candidates += len(res.outcomes)
        passed += sum(o.task is not None for o in res.outcomes)
        if (
            ordinal + passed < config.count
            and stats.candidates + candidates <= limit
            and candidates < BATCH_CANDIDATES
            and time.perf_counter() - last_write <= BATCH_SECONDS
        ):
            continue
        verdicts = judge(pending, config, solver) if solver is not None else {}
        batch = Batch()
        for held in pending:
            ordinal = add_world(batch, held, config.count, family_id, ordinal, stats, verdicts)
        ds.write_batch(batch)
        pending, candidates, passed, last_write = [], 0, 0, time.perf_counter()
        if progress:
            progress(ordinal, config.count)
        if ordinal >= config.count:
            return
        if stats.candidates > limit:
            raise ConfigError(
                f"only {stats.shipped} of {config.count} tasks shipped after {stats.candidates} candidates "
                f"(max_candidates_per_task {config.max_candidates_per_task}); drops: {stats.dropped}"
                + filter_hint(config, stats)
            )


def filter_hint(config: SynthConfig, stats: SynthStats) -> str:
    """What to change when the solvability filter dropped most candidates ("" when it did not)."""
    unsolved, always = stats.dropped.get(UNSOLVED, 0), stats.dropped.get(ALWAYS_SOLVED, 0)
    if config.solvable_by is None or unsolved + always <= stats.candidates // 2:
        return ""
    what = "solved every" if always >= unsolved else "solved none"
    fix = "harder difficulties" if always >= unsolved else "easier difficulties, a larger --k"
    return (
        f"; the --solvable-by policy {config.solvable_by!r} mostly {what} of its {config.solvable_k} samples: "
        f"try {fix} or another policy"
    )


def add_world(
    batch: Batch,
    res: WorldResult,
    count: int,
    family_id: str,
    ordinal: int,
    stats: SynthStats,
    verdicts: Verdicts | None = None,
) -> int:
    """Add one world's outcomes to ``batch`` (its world row only if a task of it ships), up to ``count`` tasks.

    Args:
        batch: The batch to fill.
        res: One world's result.
        count: Tasks to ship in all.
        family_id: The family.
        ordinal: The next task's ordinal.
        stats: Updated in place.
        verdicts: The solvability filter's drops among the gate-passing candidates (None: no filter).

    Returns:
        The next task's ordinal.
    """
    world_written = False
    for o in res.outcomes:
        if ordinal >= count:
            break
        stats.candidates += 1
        status, reason = o.status, o.reason
        if o.task is not None and verdicts:
            status, reason = verdicts.get((res.index, o.task_index), (status, reason))
        batch.candidates.append((family_id, res.index, o.task_index, status, reason[:500]))
        if status == "shipped" and o.task is not None and o.trajectory is not None:
            if not world_written:
                batch.worlds.append(res.world)
                world_written = True
            batch.tasks.append((ordinal, o.task))
            batch.trajectories.append(o.trajectory)
            ordinal += 1
            stats.shipped += 1
        else:
            stats.dropped[status] = stats.dropped.get(status, 0) + 1
    return ordinal


__all__ = ["SynthStats", "synthesize"]
