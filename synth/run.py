"""The resumable ordered run: candidates → reference run → gates → dataset, on an executor.

Worlds are the unit of parallel work (:mod:`toolgym.synth.candidate`); an executor from
``toolgym.EXECUTORS`` (:mod:`toolgym.synth.executors`) yields their results *in candidate
order*, and they are written in batches, one transaction each, until ``count`` tasks have
shipped. So the shipped tasks are the first ``count`` candidates that pass, whatever the
executor and its number of workers, and an interrupted run resumes at the first unwritten
candidate and ends with the same rows as an uninterrupted one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import toolgym
from toolgym.data.dataset import Batch, Dataset
from toolgym.errors import ConfigError
from toolgym.synth import get_family
from toolgym.synth.candidate import WorldResult, synthesize_world
from toolgym.synth.config import SynthConfig
from toolgym.synth.executors import Executor

#: A batch is written once it holds this many candidates, or after :data:`BATCH_SECONDS`.
BATCH_CANDIDATES = 64
BATCH_SECONDS = 1.0


@dataclass
class SynthStats:
    """What a run did."""

    shipped: int = 0
    candidates: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    resumed_from: tuple[int, int] | None = None
    existing: int = 0  # tasks of the family the dataset held before this run (>= count: already complete)


def synthesize(config: SynthConfig, out: Path, progress: Callable[[int, int], None] | None = None) -> SynthStats:
    """Ship ``config.count`` tasks of ``config.family`` into the dataset at ``out`` (resumable).

    Args:
        config: The run's settings (``config.executor`` names the executor, ``config.workers``
            its size).
        out: Dataset path; created if missing, resumed if it holds the same family run.
        progress: Called as ``progress(shipped, count)`` after each written batch.

    Returns:
        Counts for this invocation.

    Raises:
        UnknownNameError: ``config.executor`` is not in ``toolgym.EXECUTORS`` (no file is created).
        ConfigError: The dataset holds this family with different settings, or too many
            candidates were dropped (``max_candidates_per_task``).
        ReferenceSolutionError: A reference solution failed (a synthesis bug).
    """
    family = get_family(config.family)
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
            consume(ds, results, config, family.id, shipped, stats, progress)
        finally:
            results.close()
    stats.seconds = time.perf_counter() - t0
    return stats


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
    if prior is not None and prior["config"] != config.resume_key():
        diff = sorted(k for k, v in config.resume_key().items() if prior["config"].get(k) != v)
        raise ConfigError(
            f"{out} already holds family {family.id!r} synthesized with different settings "
            f"({', '.join(diff)}); use another --out, or the same settings to resume"
        )
    ds.set_manifest(family.id, toolgym.__version__, family.version, config.seed, config.resume_key())
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
) -> None:
    """Write world results, in order, in batches until ``config.count`` tasks have shipped.

    Args:
        ds: The open dataset.
        results: World results in candidate order (endless).
        config: The run's settings.
        family_id: The family (``config.family``).
        ordinal: Tasks already shipped (the next task's ordinal).
        stats: Updated in place.
        progress: Called as ``progress(shipped, count)`` after each written batch.

    Raises:
        ConfigError: More than ``count * max_candidates_per_task`` candidates were needed (what
            was evaluated so far is written first, so a rerun resumes after it).
    """
    limit = config.count * config.max_candidates_per_task
    batch, last_write = Batch(), time.perf_counter()
    for res in results:
        ordinal = add_world(batch, res, config.count, family_id, ordinal, stats)
        done = ordinal >= config.count
        if done or len(batch.candidates) >= BATCH_CANDIDATES or time.perf_counter() - last_write > BATCH_SECONDS:
            ds.write_batch(batch)
            batch, last_write = Batch(), time.perf_counter()
            if progress:
                progress(ordinal, config.count)
        if done:
            return
        if stats.candidates > limit:
            ds.write_batch(batch)
            raise ConfigError(
                f"only {stats.shipped} of {config.count} tasks shipped after {stats.candidates} candidates; "
                f"drops: {stats.dropped}"
            )


def add_world(batch: Batch, res: WorldResult, count: int, family_id: str, ordinal: int, stats: SynthStats) -> int:
    """Add one world's outcomes to ``batch`` (its world row only if a task of it ships), up to ``count`` tasks.

    Returns:
        The next task's ordinal.
    """
    world_written = False
    for o in res.outcomes:
        if ordinal >= count:
            break
        stats.candidates += 1
        batch.candidates.append((family_id, res.index, o.task_index, o.status, o.reason[:500]))
        if o.task is not None and o.trajectory is not None:
            if not world_written:
                batch.worlds.append(res.world)
                world_written = True
            batch.tasks.append((ordinal, o.task))
            batch.trajectories.append(o.trajectory)
            ordinal += 1
            stats.shipped += 1
        else:
            stats.dropped[o.status] = stats.dropped.get(o.status, 0) + 1
    return ordinal


__all__ = ["SynthStats", "synthesize"]
