"""``toolgym bench ray``: synthesis throughput with the local pool vs Ray, at 1 and 2 workers, in one run.

The same run (a family's default tasks per world, difficulties 1–5, every gate on, one seed) is
synthesized four times into fresh datasets: the local pool at 1 and at 2 workers, then Ray at 1
and at 2 actors on one local Ray runtime of ``workers`` CPUs, started once before the Ray runs (its
start-up, seconds, is not a run's cost; the actors' start is, as the pool's fork is). The local
runs go first: the local pool forks, and forking a process that runs Ray's threads is unsafe.
Every run must ship the same task ids (the rows do not depend on the executor); the figure is
shipped tasks per second of wall time, and Ray's overhead is ``1 - ray rate / local rate`` at the
same worker count (the target: at most 15% at 2 workers).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from toolgym.data.dataset import Dataset
from toolgym.envs.raypool import connect, disconnect, import_ray
from toolgym.synth import get_family
from toolgym.synth.config import SynthConfig
from toolgym.synth.run import synthesize

#: The most overhead Ray may add over the local pool at 2 workers (issue 15).
OVERHEAD_TARGET = 0.15


@dataclass
class RayRow:
    """One synthesis run of the comparison."""

    executor: str
    workers: int
    shipped: int
    seconds: float

    @property
    def rate(self) -> float:
        """Shipped tasks per second."""
        return self.shipped / self.seconds if self.seconds else 0.0


def _run(config: SynthConfig, executor: str, workers: int, root: Path) -> tuple[RayRow, list[str]]:
    """One run into a fresh dataset: its row and its shipped task ids."""
    out = root / f"{executor}-{workers}.duckdb"
    stats = synthesize(config.model_copy(update={"executor": executor, "workers": workers}), out)
    with Dataset(out, read_only=True) as ds:
        ids = ds.task_ids()
    return RayRow(executor, workers, stats.shipped, stats.seconds), ids


def compare(count: int, family: str = "trip", seed: int = 0, workers: tuple[int, ...] = (1, 2)) -> list[RayRow]:
    """The local pool and Ray at each worker count, side by side (see the module docstring).

    Args:
        count: Tasks each run ships.
        family: The family synthesized.
        seed: The run seed (the same for every run).
        workers: Worker counts to compare.

    Returns:
        One row per (executor, workers): every local row, then every Ray row.

    Raises:
        ConfigError: Ray is not installed.
        RuntimeError: Two runs shipped different tasks (an executor changed the rows).
    """
    import_ray()
    config = SynthConfig(family=family, count=count, seed=seed, tasks_per_world=get_family(family).tasks_per_world)
    root = Path(tempfile.mkdtemp(prefix="toolgym-bench-ray-"))
    rows, shipped = [], []
    for w in workers:
        row, ids = _run(config, "local", w, root)
        rows.append(row)
        shipped.append(ids)
    joined = connect(num_cpus=max(workers))
    try:
        for w in workers:
            row, ids = _run(config, "ray", w, root)
            rows.append(row)
            shipped.append(ids)
    finally:
        if joined:
            disconnect()
    if any(ids != shipped[0] for ids in shipped):
        raise RuntimeError("the runs shipped different tasks: an executor changed the rows")
    return rows


def overhead(rows: list[RayRow], workers: int) -> float:
    """Ray's overhead at ``workers``: ``1 - ray rate / local rate`` (negative: Ray was faster)."""
    rate = {(r.executor, r.workers): r.rate for r in rows}
    return 1.0 - rate[("ray", workers)] / rate[("local", workers)]


__all__ = ["OVERHEAD_TARGET", "RayRow", "compare", "overhead"]
