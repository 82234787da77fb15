"""The synthesis pipeline: candidates → reference run → gates → dataset, on a process pool.

Candidate ``(w, k)`` is task ``k`` of world ``w``; both are pure functions of
``(family, seed, w, k)`` (seeds derived with ``numpy.random.SeedSequence``), and world ``w`` has
difficulty ``lo + w mod (hi - lo + 1)`` so every difficulty is represented evenly. Worlds are
the unit of parallel work (a world is generated once for its tasks); results are consumed *in
candidate order* and written in batches, one transaction each, until ``count`` tasks have
shipped. So the shipped tasks are the first ``count`` candidates that pass, whatever the
number of workers, and an interrupted run resumes at the first unwritten candidate and ends
with the same rows as an uninterrupted one.

Every candidate runs its reference solution through a real ToolEnv (the same parse/dispatch
path a policy uses, so the stored trajectory is a real one) and must score 1; a reference that
fails is a :class:`~toolgym.errors.ReferenceSolutionError` that stops the run, never a warning.
Then the gates of :mod:`toolgym.synth.gates` run; a task that fails one is dropped and
counted under that gate's name. Splits are by world, so held-out worlds never appear in train.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from toolgym.data.dataset import Batch, Dataset
from toolgym.envs.markup import check_task_text
from toolgym.envs.replay import with_expected_state
from toolgym.envs.rollout import ProgramAgent, run_episode
from toolgym.envs.sources import MemorySource
from toolgym.envs.toolenv import ToolEnv, make_env, system_text
from toolgym.errors import ConfigError, ReferenceSolutionError
from toolgym.spec import DEFAULT_SPLIT_FRACTIONS, TaskSpec, Trajectory, WorldSpec, derive_seed, family_hash, world_split
from toolgym.synth import get_family
from toolgym.synth.family import Family
from toolgym.synth.gates import run_gates
from toolgym.verifiers.state import unfilled_state_checks


class SynthConfig(BaseModel):
    """Settings of one ``toolgym synth`` run (everything but ``count``/``workers`` must match to resume)."""

    model_config = ConfigDict(extra="forbid")

    family: str
    # Seeds and counts are stored as signed 64-bit integers (DuckDB BIGINT, numpy): checked here,
    # before synthesize creates the dataset file.
    count: int = Field(100, ge=1, lt=2**63, description="tasks to ship")
    difficulty: tuple[int, int] = Field((1, 5), description="inclusive difficulty range")
    seed: int = Field(0, ge=0, lt=2**63)
    tasks_per_world: int = Field(4, ge=1, le=64)
    split_fractions: tuple[float, float, float] = Field(
        DEFAULT_SPLIT_FRACTIONS, description="train, val, test by world"
    )
    holdout: bool = Field(False, description="hold the whole family out: every world goes to test")
    random_tries: int = Field(8, ge=0, lt=2**63)
    bluff_tries: int = Field(2, ge=0, lt=2**63)
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    max_candidates_per_task: int = Field(20, ge=1, description="give up if the drop rate is this bad")

    @model_validator(mode="after")
    def _check(self) -> SynthConfig:
        lo, hi = self.difficulty
        if not 1 <= lo <= hi <= 5:
            raise ValueError(f"difficulty range must satisfy 1 <= lo <= hi <= 5, got {lo}-{hi}")
        if abs(sum(self.split_fractions) - 1.0) > 1e-6 or min(self.split_fractions) < 0:
            raise ValueError(f"split fractions must be non-negative and sum to 1, got {self.split_fractions}")
        return self

    def resume_key(self) -> dict[str, Any]:
        """The settings that must match for a dataset to be resumed or extended."""
        return self.model_dump(mode="json", exclude={"count", "workers"})


def world_seed(config: SynthConfig, w: int) -> int:
    """The seed of world ``w``."""
    return derive_seed(config.seed, family_hash(config.family), w)


def on_the_fly_config(family_id: str, seed: int, difficulty: int = 1) -> SynthConfig:
    """The run an on-the-fly task comes from: world 0 of a one-world run with ``seed``."""
    return SynthConfig(family=family_id, seed=seed, difficulty=(difficulty, difficulty), tasks_per_world=8, workers=1)


def world_difficulty(config: SynthConfig, w: int) -> int:
    """Round-robin over the difficulty range."""
    lo, hi = config.difficulty
    return lo + w % (hi - lo + 1)


@dataclass
class Outcome:
    """The fate of one candidate."""

    task_index: int
    status: str  # shipped | infeasible | <gate name>
    reason: str = ""
    task: TaskSpec | None = None
    trajectory: Trajectory | None = None


@dataclass
class WorldResult:
    """A world and the outcomes of its candidates."""

    index: int
    world: WorldSpec
    outcomes: list[Outcome] = field(default_factory=list)


def build_task(family: Family, world_id: str, task_id: str, difficulty: int, split: str, draft: Any) -> TaskSpec:
    """Turn a draft into a full task spec (tool schemas and system text included).

    Raises:
        ValueError: The prompt holds a special string of the markup or the system text a role
            marker (:func:`toolgym.envs.markup.check_task_text`), naming the task.
    """
    from toolgym.envs.tools import Toolset

    schemas = Toolset(family.tools(draft.tool_config)).schemas
    task = TaskSpec(
        task_id=task_id,
        world_id=world_id,
        family=family.id,
        env_id=family.env_id,
        difficulty=difficulty,
        split=split,
        system=system_text(schemas),
        prompt=draft.prompt,
        tools=schemas,
        tool_config=draft.tool_config,
        params=draft.params,
        verifier=draft.verifier,
        meta=draft.meta,
    )
    check_task_text(task.task_id, task.prompt, task.system)
    return task


def task_env(family: Family, task: TaskSpec, world: Any) -> ToolEnv:
    """An env for synthesis episodes (no chat-view bookkeeping: trajectories are stored as text)."""
    return make_env(family.id, source=MemorySource([(task, world)]), messages=False)


def evaluate_candidate(
    family: Family, task: TaskSpec, world: Any, rng: random.Random, config: SynthConfig, env: ToolEnv | None = None
) -> Outcome:
    """Run the reference and the gates on one task.

    ``env`` may be shared by the tasks of one world (its source must hold this task); by default
    a fresh one is made.
    """
    if env is None:
        env = task_env(family, task, world)
    opts = {"task_id": task.task_id}
    agent = ProgramAgent(family.reference(task.params, task.tool_config))
    ref = run_episode(env, agent, options=opts)
    if unfilled_state_checks(task.verifier):  # fill the expected state by replay, then rerun (verifiers/state.py)
        task = with_expected_state(family, task, world, ref)
        env = task_env(family, task, world)
        agent = ProgramAgent(family.reference(task.params, task.tool_config))
        ref = run_episode(env, agent, options=opts)
    if ref.reward != 1.0:
        reason = ref.info.get("verdict", {}).get("reason", "the episode did not terminate")
        raise ReferenceSolutionError(f"task {task.task_id}: the reference solution scored {ref.reward}: {reason}")
    replay = (
        ref.actions[:-1]
        if any(t.kind == "write" for t in family.tools(task.tool_config) if t.name != "submit")
        else None
    )
    report = run_gates(
        lambda a: run_episode(env, a, options=opts),
        ref,
        random_answers=[family.random_answer(world, task, rng) for _ in range(config.random_tries)],
        bluff_answers=[family.bluff_answer(task, rng) for _ in range(config.bluff_tries)],
        perturbed_answers=family.perturb(world, task, agent.answer, rng),
        rng=rng,
        replay=replay,
    )
    if not report.shipped:
        return Outcome(0, report.failed or "?", report.reason)
    ref.answer = agent.answer
    return Outcome(0, "shipped", "", task, ref)


def synthesize_world(config: SynthConfig, w: int, skip: int = 0, first_only: bool = False) -> WorldResult:
    """Generate world ``w`` and evaluate its candidates ``skip…tasks_per_world-1``.

    With ``first_only`` it stops at the first candidate that ships (on-the-fly synthesis needs
    one task; candidates are independent, so the one it returns is the same either way).
    """
    family = get_family(config.family)
    difficulty, split = world_difficulty(config, w), world_split(config, w)
    seed = world_seed(config, w)
    world = family.make_world(seed, difficulty)
    world_id = f"{family.id}-s{config.seed}-w{w:06d}"
    spec = WorldSpec(
        world_id=world_id,
        family=family.id,
        family_version=family.version,
        seed=seed,
        difficulty=difficulty,
        split=split,
        data=world.to_json(),
    )
    result = WorldResult(w, spec)
    env: ToolEnv | None = None
    source: MemorySource | None = None
    for k in range(skip, config.tasks_per_world):
        rng = random.Random(derive_seed(config.seed, family_hash(family.id), w, k))
        draft = family.make_task(world, difficulty, rng)
        if draft is None:
            result.outcomes.append(Outcome(k, "infeasible", "no valid plan for this start"))
            continue
        task = build_task(family, world_id, f"{world_id}-t{k}", difficulty, split, draft)
        if source is None:  # one env per world: its tasks share the env and its toolset cache
            source = MemorySource([(task, world)])
            env = make_env(family.id, source=source, messages=False)
        else:
            source.add(task, world)
        out = evaluate_candidate(family, task, world, rng, config, env)
        out.task_index = k
        result.outcomes.append(out)
        if first_only and out.task is not None:
            break
    if env is not None:
        env.close()
    return result


def synthesize_on_the_fly(family: Family, seed: int, difficulty: int) -> tuple[TaskSpec, Any]:
    """One shippable task for an env without a dataset (``toolgym/<Family>-v<N>`` with no kwargs)."""
    res = synthesize_world(on_the_fly_config(family.id, seed, difficulty), 0, first_only=True)
    for out in res.outcomes:
        if out.task is not None:
            task = out.task.model_copy(update={"task_id": f"{family.id}-fly-s{seed}-d{difficulty}"})
            return task, family.load_world(res.world.data)
    raise ReferenceSolutionError(f"no shippable {family.id} task for seed {seed} at difficulty {difficulty}")


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
        config: The run's settings.
        out: Dataset path; created if missing, resumed if it holds the same family run.
        progress: Called as ``progress(shipped, count)`` after each written batch.

    Returns:
        Counts for this invocation.

    Raises:
        ConfigError: The dataset holds this family with different settings.
        ReferenceSolutionError: A reference solution failed (a synthesis bug).
    """
    import toolgym

    family = get_family(config.family)
    stats = SynthStats()
    t0 = time.perf_counter()
    # The pool is forked before DuckDB starts its threads: forking a multi-threaded process is unsafe.
    pool = mp.get_context("fork").Pool(config.workers) if config.workers > 1 else None
    try:
        with Dataset(out, create=True) as ds:
            prior = ds.manifest(family.id)
            if prior is not None and prior["config"] != config.resume_key():
                diff = sorted(k for k, v in config.resume_key().items() if prior["config"].get(k) != v)
                raise ConfigError(
                    f"{out} already holds family {family.id!r} synthesized with different settings "
                    f"({', '.join(diff)}); use another --out, or the same settings to resume"
                )
            ds.set_manifest(family.id, toolgym.__version__, family.version, config.seed, config.resume_key())
            last, shipped = ds.progress(family.id)
            stats.resumed_from, stats.existing = last, shipped
            if shipped >= config.count:
                stats.shipped = 0
                return stats
            start_w, skip = (
                (0, 0)
                if last is None
                else ((last[0], last[1] + 1) if last[1] + 1 < config.tasks_per_world else (last[0] + 1, 0))
            )
            ordinal = shipped
            limit = config.count * config.max_candidates_per_task
            results = _ordered_results(pool, config, start_w, skip)
            batch, last_write = Batch(), time.perf_counter()
            for res in results:
                world_written = False
                for o in res.outcomes:
                    if ordinal >= config.count:
                        break
                    stats.candidates += 1
                    batch.candidates.append((family.id, res.index, o.task_index, o.status, o.reason[:500]))
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
                done = ordinal >= config.count
                if done or len(batch.candidates) >= 64 or time.perf_counter() - last_write > 1.0:
                    ds.write_batch(batch)
                    batch, last_write = Batch(), time.perf_counter()
                    if progress:
                        progress(ordinal, config.count)
                if done:
                    break
                if stats.candidates > limit:
                    ds.write_batch(batch)
                    raise ConfigError(
                        f"only {stats.shipped} of {config.count} tasks shipped after {stats.candidates} candidates; "
                        f"drops: {stats.dropped}"
                    )
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    stats.seconds = time.perf_counter() - t0
    return stats


def _ordered_results(pool: Any, config: SynthConfig, start_w: int, skip: int) -> Iterator[WorldResult]:
    """World results in index order, keeping a bounded window of worlds in flight."""
    if pool is None:
        w = start_w
        while True:
            yield synthesize_world(config, w, skip if w == start_w else 0)
            w += 1
    window = 4 * config.workers
    pending: deque[Any] = deque()
    w = start_w
    while True:
        while len(pending) < window:
            pending.append(pool.apply_async(synthesize_world, (config, w, skip if w == start_w else 0)))
            w += 1
        yield pending.popleft().get()


__all__ = [
    "SynthConfig",
    "SynthStats",
    "synthesize",
    "synthesize_on_the_fly",
    "synthesize_world",
]
