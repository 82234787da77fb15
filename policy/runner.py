"""The eval runner: episodes of any policy on (task, world, sample) jobs, one record per episode.

:func:`run_episodes` takes either kind of policy (:mod:`toolgym.policy.batch`):

* a :data:`~toolgym.policy.evaluate.PolicyFactory`: episodes one at a time (``concurrency`` 1, the
  default: the plain sequential loop), or ``concurrency`` at once in a thread pool, each thread
  with its own envs. ``concurrency`` defaults to the factory's ``concurrency`` attribute when it
  has one (an endpoint policy does), else 1;
* a :class:`~toolgym.policy.batch.BatchPolicy`: ``slots`` envs, one ``act`` call per round for all
  live slots, or, where the policy has ``step`` (the in-repo model), continuous batching: an env
  is stepped as soon as its action is done while the other rows keep decoding; a slot whose
  episode ends starts the next job at once (``begin`` + reset), so no slot idles while jobs remain.

Every episode starts with ``env.reset(seed=sample, options={"task_id": …})``, so an episode's
reward does not depend on the runner, the thread or the slot it ran in. Records are handed to
``on_episode`` in the caller's thread as episodes end (completion order, not job order), which is
where ``toolgym eval`` appends them to ``results.jsonl``.

Tokens: a BatchPolicy says how many it generated (``tokens(slot)``); an episode policy may expose
an int attribute ``tokens``; otherwise the record's ``tokens`` is None (the policy cannot tell).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any

from toolgym.envs.rollout import Policy, run_episode
from toolgym.envs.sources import MemorySource
from toolgym.envs.toolenv import ToolEnv, make_env
from toolgym.errors import EpisodeLost
from toolgym.policy.batch import BatchPolicy, is_batch_policy
from toolgym.spec import TaskSpec, Trajectory

#: One episode to run: the task, its world object, and the sample index (also the reset seed).
Job = tuple[TaskSpec, Any, int]


@dataclass
class EpisodeRecord:
    """One episode of an eval, as a line of ``results.jsonl``.

    ``reason`` is the verifier's reason, or ``"truncated"`` when the episode ran out of turns
    without a submit; ``turns`` counts actions; ``tokens`` is None when the policy cannot tell;
    ``text`` is the whole context ``obs0 + act1 + obs1 + …``.
    """

    task_id: str
    family: str
    difficulty: int
    sample: int
    reward: float
    reason: str
    turns: int
    tool_calls: int
    tokens: int | None
    text: str

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object (field order as above)."""
        return asdict(self)


def record_of(task: TaskSpec, sample: int, traj: Trajectory, tokens: int | None) -> EpisodeRecord:
    """The record of one finished episode."""
    verdict = traj.info.get("verdict")
    reason = verdict["reason"] if verdict else ("truncated" if traj.truncated else "")
    return EpisodeRecord(
        task_id=task.task_id,
        family=task.family,
        difficulty=task.difficulty,
        sample=sample,
        reward=traj.reward,
        reason=reason,
        turns=traj.turns,
        tool_calls=traj.tool_calls,
        tokens=tokens,
        text=traj.text,
    )


@dataclass
class _Envs:
    """One env per family for one thread or slot, serving every task it has been given."""

    env_kwargs: dict[str, Any]
    envs: dict[str, tuple[ToolEnv, MemorySource]] = field(default_factory=dict)
    maker: Callable[..., Any] = make_env  # (family, source=, **env_kwargs) -> env; a Ray pool's make_env

    def reset(self, task: TaskSpec, world: Any, sample: int) -> tuple[ToolEnv, str, dict[str, Any]]:
        """Start the episode of ``task`` (seed ``sample``) on this holder's env of its family."""
        hit = self.envs.get(task.family)
        if hit is None:
            source = MemorySource([(task, world)])
            hit = self.envs[task.family] = (self.maker(task.family, source=source, **self.env_kwargs), source)
        env, source = hit
        if task.task_id not in source.by_id:
            source.add(task, world)
        obs, info = env.reset(seed=sample, options={"task_id": task.task_id})
        return env, obs, info

    def close(self) -> None:
        """Close every env."""
        for env, _ in self.envs.values():
            env.close()
        self.envs.clear()


class _ResetFirst:
    """Wraps an env whose episode :class:`_Envs` already reset, so ``run_episode`` reuses that reset."""

    def __init__(self, env: ToolEnv, obs: str, info: dict[str, Any]):
        self.env, self.first = env, (obs, info)

    def reset(self, **_: Any) -> tuple[str, dict[str, Any]]:
        return self.first

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        return self.env.step(action)


def _one_episode(envs: _Envs, factory: Callable[[TaskSpec, Any, int], Policy], job: Job) -> EpisodeRecord | None:
    """The episode's record, or None when its env was lost (:class:`~toolgym.errors.EpisodeLost`: dropped)."""
    task, world, sample = job
    policy = factory(task, world, sample)
    try:
        env, obs, info = envs.reset(task, world, sample)
        traj = run_episode(_ResetFirst(env, obs, info), policy)  # type: ignore[arg-type]
    except EpisodeLost:
        return None
    tokens = getattr(policy, "tokens", None)
    return record_of(task, sample, traj, tokens if isinstance(tokens, int) else None)


def run_episodes(
    jobs: Iterable[Job],
    policy: Any,
    on_episode: Callable[[EpisodeRecord], None] | None = None,
    concurrency: int | None = None,
    env_maker: Callable[..., Any] | None = None,
    **env_kwargs: Any,
) -> list[EpisodeRecord]:
    """Run every job's episode with ``policy`` and return the records in completion order.

    Args:
        jobs: ``(task, world, sample)`` triples; ``sample`` is the reset seed.
        policy: A :data:`~toolgym.policy.evaluate.PolicyFactory` or a
            :class:`~toolgym.policy.batch.BatchPolicy`.
        on_episode: Called with each record as its episode ends, in the calling thread.
        concurrency: Episodes at once for a factory (default: its ``concurrency`` attribute, else
            1); ignored for a BatchPolicy, whose ``slots`` say it.
        env_maker: Makes the envs, as :func:`~toolgym.envs.toolenv.make_env` (the default) does:
            ``RayRolloutPool.make_env`` runs the episodes on Ray actors. An episode whose env
            raises :class:`~toolgym.errors.EpisodeLost` is left out (the pool counts it).
        **env_kwargs: ToolEnv limits (``max_turns``, …).

    Returns:
        One :class:`EpisodeRecord` per job (but lost episodes).

    Raises:
        ValueError: ``concurrency`` or ``slots`` below 1, or a BatchPolicy returning a wrong number
            of actions. Whatever the policy or an env raises propagates (running threads finish
            their current episode first; nothing recorded is lost).
    """
    records: list[EpisodeRecord] = []

    def emit(record: EpisodeRecord | None) -> None:
        if record is None:  # a lost episode: dropped, never scored 0
            return
        records.append(record)
        if on_episode is not None:
            on_episode(record)

    maker = env_maker or make_env
    if is_batch_policy(policy):
        _run_batched(iter(jobs), policy, emit, env_kwargs, maker)
        return records
    n = concurrency if concurrency is not None else int(getattr(policy, "concurrency", 1) or 1)
    if n < 1:
        raise ValueError(f"concurrency must be at least 1, got {n}")
    if n == 1:
        envs = _Envs(env_kwargs, maker=maker)
        try:
            for job in jobs:
                emit(_one_episode(envs, policy, job))
        finally:
            envs.close()
    else:
        _run_threads(iter(jobs), policy, emit, n, env_kwargs, maker)
    return records


def _run_threads(
    jobs: Iterator[Job],
    factory: Callable[[TaskSpec, Any, int], Policy],
    emit: Callable[[EpisodeRecord], None],
    n: int,
    env_kwargs: dict[str, Any],
    maker: Callable[..., Any] = make_env,
) -> None:
    """At most ``n`` episodes in flight on ``n`` threads, each thread with its own envs."""
    local = threading.local()
    made: list[_Envs] = []
    lock = threading.Lock()

    def work(job: Job) -> EpisodeRecord | None:
        envs = getattr(local, "envs", None)
        if envs is None:
            envs = local.envs = _Envs(env_kwargs, maker=maker)
            with lock:
                made.append(envs)
        return _one_episode(envs, factory, job)

    pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="toolgym-eval")
    running: set[Future[EpisodeRecord | None]] = set()
    try:
        while True:
            while len(running) < n and (job := next(jobs, None)) is not None:
                running.add(pool.submit(work, job))
            if not running:
                break
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                emit(future.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for envs in made:
            envs.close()


@dataclass
class _Live:
    """The episode running in one slot of a BatchPolicy."""

    task: TaskSpec
    sample: int
    env: ToolEnv
    observations: list[str]
    actions: list[str] = field(default_factory=list)
    tool_calls: int = 0


def _run_batched(
    jobs: Iterator[Job],
    policy: BatchPolicy,
    emit: Callable[[EpisodeRecord], None],
    env_kwargs: dict[str, Any],
    maker: Callable[..., Any] = make_env,
) -> None:
    """Emit the record of each episode :func:`batched_trajectories` finishes."""
    for task, sample, traj, tokens in batched_trajectories(jobs, policy, env_kwargs, maker):
        emit(record_of(task, sample, traj, tokens))


def batched_trajectories(
    jobs: Iterable[Job], policy: BatchPolicy, env_kwargs: dict[str, Any], maker: Callable[..., Any] = make_env
) -> Iterator[tuple[TaskSpec, int, Trajectory, int]]:
    """Step ``policy.slots`` envs, refilling each slot from ``jobs`` as its episode ends.

    A policy with ``step`` (continuous batching) is handed each observation as soon as its env
    answered and returns whichever actions are done; otherwise the envs move in lockstep rounds,
    one ``act`` for every live slot. The one loop behind ``toolgym eval`` and ``toolgym bench eval``.

    ``maker`` makes the envs (:func:`~toolgym.envs.toolenv.make_env`, or a Ray pool's); an episode
    whose env raises :class:`~toolgym.errors.EpisodeLost` is left out and its slot takes the next job.

    Yields:
        ``(task, sample, trajectory, tokens generated)`` per episode, in completion order.

    Raises:
        ValueError: ``slots`` below 1, or a policy handing back a wrong number of actions.
    """
    jobs = iter(jobs)
    if policy.slots < 1:
        raise ValueError(f"a BatchPolicy needs at least 1 slot, got slots={policy.slots}")
    holders = [_Envs(env_kwargs, maker=maker) for _ in range(policy.slots)]
    live: list[_Live | None] = [None] * policy.slots

    def start(slot: int) -> None:
        live[slot] = None
        while live[slot] is None and (job := next(jobs, None)) is not None:
            task, world, sample = job
            policy.begin(slot, task, sample)
            try:
                env, obs, _ = holders[slot].reset(task, world, sample)
            except EpisodeLost:  # dropped (the pool counted it): the slot takes the next job
                continue
            live[slot] = _Live(task, sample, env, [obs])

    step = getattr(policy, "step", None)  # continuous batching, where the policy offers it
    try:
        for slot in range(policy.slots):
            start(slot)
        waiting = [s for s, ep in enumerate(live) if ep is not None]  # slots whose observation is not fed yet
        while any(ep is not None for ep in live):
            if callable(step):
                done = step({s: live[s].observations[-1] for s in waiting})  # type: ignore[union-attr]
                if not done and not waiting:
                    raise ValueError("BatchPolicy.step returned no action with no slot left to feed")
                active, actions = list(done), list(done.values())
            else:
                active = [s for s, ep in enumerate(live) if ep is not None]
                actions = policy.act(active, [live[s].observations[-1] for s in active])  # type: ignore[union-attr]
                if len(actions) != len(active):
                    raise ValueError(f"BatchPolicy.act returned {len(actions)} actions for {len(active)} slots")
            for slot, action in zip(active, actions, strict=True):
                ep = live[slot]
                assert ep is not None
                try:
                    obs, reward, terminated, truncated, info = ep.env.step(action)
                except EpisodeLost:  # dropped (the pool counted it), never scored 0
                    start(slot)
                    continue
                ep.actions.append(action)
                ep.observations.append(obs)
                ep.tool_calls += info.get("tool_calls", 0)
                if terminated or truncated:
                    traj = Trajectory(
                        task_id=ep.task.task_id,
                        observations=ep.observations,
                        actions=ep.actions,
                        tool_calls=ep.tool_calls,
                        reward=float(reward),
                        terminated=terminated,
                        truncated=truncated,
                        info=info,
                    )
                    yield ep.task, ep.sample, traj, policy.tokens(slot)
                    start(slot)
            waiting = [s for s in active if live[s] is not None]
    finally:
        for holder in holders:
            holder.close()
