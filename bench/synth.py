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
* ``ref calls`` / ``ref turns`` — what the tool-only reference solution needed; ``ref chars``
  the characters of its string arguments (for code, the length of the source it ran);
* ``verify µs`` — the verifier's time on the reference answer: checking is cheap;
* ``world`` — what a family reports of one world of the difficulty (``world_stats``, optional;
  search: its documents and the seconds its index took to build);
* ``heuristic`` — the share of sampled tasks a family's shallow heuristic agent solves through a
  real env (:meth:`toolgym.synth.family.Family.heuristic`; "–" for a family without one):
  it should fall as the difficulty rises.

Kind mix, per difficulty, over the shipped tasks (:func:`kind_mix`, printed by :func:`kind_table`):
how many tasks carry each constraint kind (trip: the README's list, see
:func:`toolgym.synth.trip.tasks.constraint_labels`) or are of each task kind (code), so a kind
the README claims but no task ships shows as a row of zeros. For trip it also counts how often
a kind **binds**: dropping that constraint changes the optimum into a plan the full task
rejects, so a policy that ignores the rule fails.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolgym.data.dataset import Dataset
from toolgym.envs.replay import replay_writes
from toolgym.envs.runtime import final_state
from toolgym.synth import get_family
from toolgym.synth.config import SynthConfig
from toolgym.synth.run import SynthStats, synthesize
from toolgym.verifiers.verdict import verify

#: Shipped tasks/s on 2 workers that the issues set for each family's ``toolgym synth`` (domains:
#: issue 11, sql and search: 13, code: 14; trip's is the first target); a family not listed has none.
SYNTH_TARGETS = {"trip": 100, "domains": 200, "sql": 100, "search": 50, "code": 30, "codeagent": 10}


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
    ref_writes: float = 0.0  # median write calls of the reference
    ref_tools: float = 0.0  # median distinct tools the reference called (submit included)
    heuristic: float | None = None  # share of sampled tasks the family's heuristic solves (None: no heuristic)
    heuristic_tasks: int = 0  # tasks the heuristic share is measured on
    world: dict[str, float] = field(default_factory=dict)  # Family.world_stats of one world (search: docs, index s)
    ref_chars: float = 0.0  # median characters of the reference's call arguments (code: the source it ran)


def heuristic_reward(family: Any, task: Any, world: Any) -> float | None:
    """The reward of the family's heuristic agent on one task, through a real env; None if it has none.

    Tool errors are observations (``ProgramPolicy(strict=False)``); the episode is the one RL
    sees, so a heuristic that never submits scores what the env gives at truncation.
    """
    from toolgym.envs.rollout import ProgramPolicy, run_episode
    from toolgym.synth.candidate import task_env

    program = family.heuristic(task)
    if program is None:
        return None
    with task_env(family, task, world) as env:
        return run_episode(env, ProgramPolicy(program, strict=False), options={"task_id": task.task_id}).reward


def run_throughput(count: int, workers: int, seed: int = 0, family: str = "trip") -> tuple[ThroughputRow, Path]:
    """Synthesize ``count`` tasks into a temp dataset; returns the row and the dataset path."""
    out = Path(tempfile.mkdtemp(prefix="toolgym-bench-")) / "bench.duckdb"
    config = SynthConfig(
        family=family, count=count, workers=workers, seed=seed, tasks_per_world=get_family(family).tasks_per_world
    )
    stats: SynthStats = synthesize(config, out)
    return ThroughputRow(workers, stats.shipped, stats.seconds, stats.dropped), out


def hardness(
    dataset: Path, samples_per_task: int = 400, tasks_per_difficulty: int = 8, heuristic_tasks: int = 100
) -> list[HardnessRow]:
    """The hardness table of a dataset (see the module docstring).

    ``heuristic_tasks``: this many shipped tasks of each difficulty, evenly spaced in task id order
    (so they span the run's worlds, not the first few), are played by the family's heuristic agent
    (:meth:`Family.heuristic`); 100 episodes give the share within about ±0.05 (one standard
    error at 0.5) in about a second at difficulty 5 (domains).
    """
    rows = []
    with Dataset(dataset, read_only=True) as ds:
        ids = ds.task_ids()
        by_d: dict[int, list[str]] = {}
        for tid in ids:
            by_d.setdefault(ds.task(tid).difficulty, []).append(tid)
        for d in sorted(by_d):
            cands, calls, turns, vus, writes, used, chars = [], [], [], [], [], [], []
            world_stats: dict[str, float] = {}
            passed = total = 0
            for j, tid in enumerate(by_d[d]):
                task = ds.task(tid)
                fam = get_family(task.family)
                traj = ds.trajectory(tid)
                cands.append(task.meta.get("log10_candidates", float("nan")))
                calls.append(traj.tool_calls)
                turns.append(traj.turns)
                n_writes, names = reference_calls(fam, task, traj.actions)
                chars.append(argument_chars(traj.actions))
                writes.append(n_writes)
                used.append(len(names))
                if j >= tasks_per_difficulty:
                    continue
                world = fam.load_world(ds.world_data(task.world_id))
                if not world_stats and hasattr(fam, "world_stats"):  # optional (search: corpus size, index build)
                    world_stats = fam.world_stats(world)
                context = replay_writes(fam, world, task, traj.actions)  # the state the reference left
                t = time.perf_counter()
                verify(task.verifier_spec, traj.answer, final_state(context))
                once = time.perf_counter() - t
                if once < 0.01:  # in-process checks: the mean of 20; a sandboxed judge (codeagent): one run
                    t = time.perf_counter()
                    for _ in range(20):
                        verify(task.verifier_spec, traj.answer, final_state(context))
                    once = (time.perf_counter() - t) / 20
                vus.append(once * 1e6)
                fam.close_context(context)
                rng = random.Random(j)
                fresh = replay_writes(fam, world, task, [])  # an episode's own context, nothing written
                for _ in range(samples_per_task):  # a random answer, submitted without a write
                    passed += verify(task.verifier_spec, fam.random_answer(world, task, rng), final_state(fresh)).passed
                    total += 1
                fam.close_context(fresh)
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
                    statistics.median(writes),
                    statistics.median(used),
                    *heuristic_share(ds, spread(by_d[d], heuristic_tasks)),
                    world=world_stats,
                    ref_chars=statistics.median(chars),
                )
            )
    return rows


def spread(items: list[str], n: int) -> list[str]:
    """At most ``n`` of ``items``, evenly spaced (all of them when there are no more than ``n``)."""
    return items[:: max(1, len(items) // max(n, 1))][:n]


def heuristic_share(ds: Dataset, task_ids: list[str]) -> tuple[float | None, int]:
    """(share of ``task_ids`` the family's heuristic solves, tasks played); (None, 0) without a heuristic."""
    solved = played = 0
    worlds: dict[str, Any] = {}
    for tid in task_ids:
        task = ds.task(tid)
        fam = get_family(task.family)
        if fam.heuristic(task) is None:  # a generator object: nothing runs yet
            continue
        if task.world_id not in worlds:
            worlds[task.world_id] = fam.load_world(ds.world_data(task.world_id))
        reward = heuristic_reward(fam, task, worlds[task.world_id])
        if reward is None:
            continue
        solved += reward == 1.0
        played += 1
    return (solved / played if played else None), played


def reference_calls(family: Any, task: Any, actions: list[str]) -> tuple[int, set[str]]:
    """(write calls, distinct tool names) of a reference's actions, parsed as the env parses them."""
    from toolgym.envs import markup as mk

    kinds = {t.name: t.kind for t in family.tools(task.tool_config)}
    names = [c.name for a in actions for c in mk.parse_action(a).tool_calls]
    return sum(kinds.get(n) == "write" for n in names), set(names)


def argument_chars(actions: list[str]) -> int:
    """Characters of the string arguments of a reference's calls (code: the source it ran), submit excluded."""
    from toolgym.envs import markup as mk

    calls = [c for a in actions for c in mk.parse_action(a).tool_calls if c.name != "submit"]
    return sum(len(v) for c in calls for v in c.arguments.values() if isinstance(v, str))


@dataclass
class DistinctRow:
    """How distinct a run's shipped environments are, and its yield."""

    worlds: int
    toolsets: int
    schemas: int
    archetypes: int
    max_worlds_per_toolset: int
    candidates: int
    shipped: int
    dropped: dict[str, int]

    @property
    def yield_(self) -> float:
        """Shipped / candidates."""
        return self.shipped / max(self.candidates, 1)


def distinctness(dataset: Path, family: str) -> DistinctRow:
    """Distinct toolsets, schemas and archetypes of a family's shipped tasks, and the run's yield."""
    with Dataset(dataset, read_only=True) as ds:
        d = ds.distinctness(family)
        gates = ds.gate_counts(family).get(family, {})
    dropped = {k: v for k, v in gates.items() if k != "shipped"}
    return DistinctRow(
        d["worlds"],
        d["toolsets"],
        d["schemas"],
        d["archetypes"],
        d["max_worlds_per_toolset"],
        sum(gates.values()),
        gates.get("shipped", 0),
        dropped,
    )


@dataclass
class KindRow:
    """How often each kind ships at one difficulty."""

    difficulty: int
    tasks: int
    counts: Counter[str] = field(default_factory=Counter)
    binds: Counter[str] = field(default_factory=Counter)


def task_labels(task: Any) -> list[str]:
    """The kinds a shipped task exercises: trip constraint kinds, or the code task's kind."""
    if task.family == "trip":
        from toolgym.synth.trip.tasks import constraint_labels

        return constraint_labels(task.params["constraints"])
    if "kinds" in task.meta:  # codeagent: the mutation kinds of its bugs, each counted once per task
        return sorted({str(k) for k in task.meta["kinds"]})
    kind = task.meta.get("kind")
    return [str(kind)] if kind is not None else []


def trip_binds(world: Any, constraints: list[dict[str, Any]], label: str) -> bool:
    """Whether the constraints behind ``label`` bind: without them, the optimum breaks the task.

    The budget is left out of the search (as the generator does) and the plan found without
    the labelled rule is checked by the verifier against every constraint of the task.
    """
    from toolgym.synth.trip.solver import cheapest_plan, view_of_world
    from toolgym.synth.trip.tasks import constraint_labels

    rest = [c for c in constraints if constraint_labels([c]) != [label]]
    if label == "modes":
        rest.append({"kind": "connected", "modes": None, "max_hours": None})
    view = getattr(world, "_view", None)
    if view is None:
        view = world._view = view_of_world(world)  # the family caches it on the world the same way
    found = cheapest_plan(view, rest, world.cities)
    if found is None:
        return True
    return not verify({"kind": "itinerary", "constraints": constraints}, found[1], world).passed


def kind_mix(dataset: Path, family: str | None = None, binds: bool = True) -> dict[str, list[KindRow]]:
    """Per family, per difficulty: shipped tasks carrying each kind (and, for trip, binding).

    Args:
        dataset: A synthesized dataset.
        family: Only this family (None: every family in the dataset).
        binds: Also measure binding for trip tasks (one search per optional constraint).

    Returns:
        ``{family: [KindRow, …]}``, rows in difficulty order; every kind seen anywhere in a
        family appears in each of its rows' counters (0 where it never ships).
    """
    out: dict[str, dict[int, KindRow]] = {}
    with Dataset(dataset, read_only=True) as ds:
        worlds: dict[str, Any] = {}
        for tid in ds.task_ids(family):
            task = ds.task(tid)
            row = out.setdefault(task.family, {}).setdefault(task.difficulty, KindRow(task.difficulty, 0))
            row.tasks += 1
            labels = task_labels(task)
            row.counts.update(labels)
            if binds and task.family == "trip":
                if task.world_id not in worlds:
                    worlds[task.world_id] = get_family("trip").load_world(ds.world_data(task.world_id))
                constraints = task.params["constraints"]
                row.binds.update(
                    k for k in labels if k != "budget" and trip_binds(worlds[task.world_id], constraints, k)
                )
    result: dict[str, list[KindRow]] = {}
    for fam, rows in out.items():
        kinds = {k for r in rows.values() for k in r.counts}
        for r in rows.values():
            r.counts.update(dict.fromkeys(kinds, 0))
        result[fam] = [rows[d] for d in sorted(rows)]
    return result


def kind_table(dataset: Path, family: str | None = None) -> Any:
    """The kind mix as a ``rich`` table: one row per kind, one column per difficulty.

    A cell reads ``shipped/tasks`` and, for trip kinds other than the budget, ``· binds n``.
    """
    from rich.table import Table

    mix = kind_mix(dataset, family)
    fams = sorted(mix)
    diffs = sorted({r.difficulty for f in fams for r in mix[f]})
    table = Table(
        "family", "kind", *(f"d{d}" for d in diffs), title="kinds in shipped tasks (tasks carrying it / tasks)"
    )
    for fam in fams:
        rows = {r.difficulty: r for r in mix[fam]}
        for kind in sorted({k for r in mix[fam] for k in r.counts}):
            cells = []
            for d in diffs:
                r = rows.get(d)
                if r is None:
                    cells.append("-")
                    continue
                cell = f"{r.counts[kind]}/{r.tasks}"
                if fam == "trip" and kind != "budget" and r.counts[kind]:
                    cell += f" · binds {r.binds[kind]}"
                cells.append(cell)
            table.add_row(fam, kind, *cells)
    return table
