"""``toolgym bench synth``: synthesis throughput, and "hard to solve, easy to verify" measured.

Throughput: the same run (trip planning, difficulties 1–5, every gate on) with 1 worker and
with N workers, side by side in one invocation, as shipped tasks per second of wall time
(world generation, task proposal, the reference run through a real env, all gates, DuckDB
writes included).

Hardness, per difficulty, over the shipped tasks:

* ``log10 candidates`` — structurally plausible itineraries (distinct connected cities, real
  venues of the right kind in each day's city): the search space a solver faces;
* ``random pass`` — the fraction of random plausible plans the verifier accepts (Monte Carlo):
  how likely a guess is to be right;
* ``ref calls`` / ``ref turns`` — what the tool-only reference solution needed;
* ``verify µs`` — the verifier's time on the reference answer: checking is cheap.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from toolgym.synth import get_family
from toolgym.synth.dataset import Dataset
from toolgym.synth.pipeline import SynthConfig, SynthStats, synthesize
from toolgym.verifiers.verdict import verify


@dataclass
class ThroughputRow:
    """One synthesis run."""

    workers: int
    shipped: int
    seconds: float
    dropped: dict[str, int]

    @property
    def rate(self) -> float:
        """Shipped tasks per second."""
        return self.shipped / self.seconds


@dataclass
class HardnessRow:
    """Hardness figures of one difficulty."""

    difficulty: int
    tasks: int
    log10_candidates: float
    random_pass: float
    random_samples: int
    ref_calls: float
    ref_turns: float
    verify_us: float


def run_throughput(count: int, workers: int, seed: int = 0, family: str = "trip") -> tuple[ThroughputRow, Path]:
    """Synthesize ``count`` tasks into a temp dataset; returns the row and the dataset path."""
    out = Path(tempfile.mkdtemp(prefix="toolgym-bench-")) / "bench.duckdb"
    stats: SynthStats = synthesize(SynthConfig(family=family, count=count, workers=workers, seed=seed), out)
    return ThroughputRow(workers, stats.shipped, stats.seconds, stats.dropped), out


def hardness(dataset: Path, samples_per_task: int = 400, tasks_per_difficulty: int = 8) -> list[HardnessRow]:
    """The hardness table of a dataset (see the module docstring)."""
    rows = []
    with Dataset(dataset, read_only=True) as ds:
        ids = ds.task_ids()
        by_d: dict[int, list[str]] = {}
        for tid in ids:
            by_d.setdefault(ds.task(tid).difficulty, []).append(tid)
        for d in sorted(by_d):
            cands, calls, turns, vus = [], [], [], []
            passed = total = 0
            for j, tid in enumerate(by_d[d]):
                task = ds.task(tid)
                fam = get_family(task.family)
                traj = ds.trajectory(tid)
                cands.append(task.meta.get("log10_candidates", float("nan")))
                calls.append(traj.tool_calls)
                turns.append(traj.turns)
                if j >= tasks_per_difficulty:
                    continue
                world = fam.load_world(ds.world_data(task.world_id))
                t = time.perf_counter()
                for _ in range(20):
                    verify(task.verifier, traj.answer, world)
                vus.append((time.perf_counter() - t) / 20 * 1e6)
                rng = random.Random(j)
                for _ in range(samples_per_task):
                    passed += verify(task.verifier, fam.random_answer(world, task, rng), world).passed
                    total += 1
            rows.append(
                HardnessRow(
                    d,
                    len(by_d[d]),
                    statistics.median(cands),
                    passed / max(total, 1),
                    total,
                    statistics.median(calls),
                    statistics.median(turns),
                    statistics.median(vus),
                )
            )
    return rows
