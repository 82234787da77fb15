"""Evaluation: run a policy on tasks, n samples each, and report unbiased pass@k and pass^k.

* ``pass@k`` is the unbiased estimator of Chen et al. (2021): with ``n`` samples of which ``c``
  passed, ``1 - C(n-c, k) / C(n, k)``; averaging it over tasks estimates the probability that at
  least one of ``k`` fresh samples passes. (A bootstrap "best of k over n" is biased low, the
  complaint of verl PR #7240.)
* ``pass^k`` (tau-bench) is ``C(c, k) / C(n, k)``: the probability that all ``k`` pass.
* Both come with a 95% normal-approximation interval over tasks, since a mean over 20 tasks
  says little without one.

A registered policy (``toolgym.POLICIES``) is built from a seed into a :data:`PolicyFactory`
``(task, world, sample_index) -> Policy``: one fresh :class:`~toolgym.envs.rollout.Policy` per
episode, so no state leaks between samples. The scripted baselines live here (``reference``,
``null``, ``random``, ``bluff``); the in-repo model plugs in the same way. The score of an
episode is the env's reward, so the eval metric is the RL reward.
Importing this module does not import torch.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from toolgym.envs.agents import NullAgent, RandomAgent, SubmitAgent
from toolgym.envs.rollout import Policy, ProgramPolicy, run_episode
from toolgym.envs.sources import MemorySource
from toolgym.envs.toolenv import make_env
from toolgym.spec import TaskSpec
from toolgym.synth import get_family

PolicyFactory = Callable[[TaskSpec, Any, int], Policy]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (k ≤ n)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """pass^k: the chance that k samples drawn without replacement all pass."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    return math.comb(c, k) / math.comb(n, k)


def _seed(*parts: Any) -> int:
    """A stable seed from any parts (Python's ``hash`` of str is salted per process)."""
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "little") >> 1


def reference_policy(seed: int = 0) -> PolicyFactory:
    """The family's reference program, replayed through the tools (the gates' upper bound)."""

    def make(task: TaskSpec, world: Any, i: int) -> Policy:
        return ProgramPolicy(get_family(task.family).reference(task.params, task.tool_config))

    return make


def null_policy(seed: int = 0) -> PolicyFactory:
    """Submits an empty answer at once."""
    return lambda task, world, i: NullAgent()


def random_policy(seed: int = 0) -> PolicyFactory:
    """Random schema-valid calls, then a random plausible answer drawn from the world."""

    def make(task: TaskSpec, world: Any, i: int) -> Policy:
        rng = random.Random(_seed(seed, task.task_id, i))
        return RandomAgent(rng, get_family(task.family).random_answer(world, task, rng))

    return make


def bluff_policy(seed: int = 0) -> PolicyFactory:
    """A well-formed answer with invented names, without any tool use."""

    def make(task: TaskSpec, world: Any, i: int) -> Policy:
        rng = random.Random(_seed(seed, task.task_id, i, "bluff"))
        return SubmitAgent(get_family(task.family).bluff_answer(task, rng))

    return make


def scripted_policy(name: str, seed: int = 0) -> PolicyFactory:
    """A policy of the central table (``toolgym.POLICIES``) by name, seeded.

    Raises:
        UnknownNameError: An unregistered name (the message names the closest ones).
    """
    from toolgym import POLICIES

    factory: PolicyFactory = POLICIES.get(name)(seed)
    return factory


@dataclass
class TaskResult:
    """n samples of one task."""

    task_id: str
    family: str
    difficulty: int
    rewards: list[float] = field(default_factory=list)

    @property
    def correct(self) -> int:
        """Samples with reward 1."""
        return sum(r >= 1.0 for r in self.rewards)


@dataclass
class Row:
    """pass@k and pass^k of one group (a family at one difficulty, or everything)."""

    family: str
    difficulty: str
    tasks: int
    pass_at: dict[int, tuple[float, float]]  # k -> (mean, 95% half-width)
    pass_hat: dict[int, tuple[float, float]]
    mean_reward: float


def _mean_ci(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, float("nan")
    var = sum((x - m) ** 2 for x in xs) / (len(xs) - 1)
    return m, 1.96 * math.sqrt(var / len(xs))


def summarize(results: list[TaskResult], ks: Iterable[int]) -> list[Row]:
    """Group results by (family, difficulty), plus one row per family and one overall.

    Args:
        results: One :class:`TaskResult` per task, each with n >= 1 rewards.
        ks: The k of pass@k and pass^k; each must satisfy ``1 <= k <= n``, n being the fewest
            samples of any task (every row then has every k).

    Returns:
        The rows, family by family (difficulties, then the family's ``all``), the overall row last.

    Raises:
        ValueError: If a k is below 1 or above n (naming k and n), rather than leaving it out.
    """
    ks = sorted(set(ks))
    if results:
        n = min(len(r.rewards) for r in results)
        bad = [k for k in ks if not 1 <= k <= n]
        if bad:
            raise ValueError(
                f"pass@k needs 1 <= k <= n (the samples per task; the fewest here is n={n}), got k={bad[0]}"
                + (f" (all out of range: {bad})" if len(bad) > 1 else "")
            )
    groups: dict[tuple[str, str], list[TaskResult]] = {}
    for r in results:
        for key in ((r.family, str(r.difficulty)), (r.family, "all"), ("all", "all")):
            groups.setdefault(key, []).append(r)
    rows = []
    for (fam, diff), rs in sorted(
        groups.items(), key=lambda kv: (kv[0][0] == "all", kv[0][0], kv[0][1] == "all", kv[0][1])
    ):
        rows.append(
            Row(
                family=fam,
                difficulty=diff,
                tasks=len(rs),
                pass_at={k: _mean_ci([pass_at_k(len(r.rewards), r.correct, k) for r in rs]) for k in ks},
                pass_hat={k: _mean_ci([pass_hat_k(len(r.rewards), r.correct, k) for r in rs]) for k in ks},
                mean_reward=sum(sum(r.rewards) / len(r.rewards) for r in rs) / len(rs),
            )
        )
    return rows


def evaluate(
    items: Iterable[tuple[TaskSpec, Any]],
    policy: PolicyFactory,
    samples: int,
    on_task: Callable[[TaskResult], None] | None = None,
    **env_kwargs: Any,
) -> list[TaskResult]:
    """Run ``samples`` episodes of ``policy`` on each (task, world).

    Args:
        items: Tasks with their world objects (from a dataset or synthesized).
        policy: Policy factory ``(task, world, sample_index) -> Policy``.
        samples: Episodes per task (n of pass@k).
        on_task: Called after each task (progress bars).
        **env_kwargs: ToolEnv limits (max_turns, …).

    Returns:
        One :class:`TaskResult` per task.
    """
    out = []
    for task, world in items:
        env = make_env(task.family, source=MemorySource([(task, world)]), **env_kwargs)
        res = TaskResult(task.task_id, task.family, task.difficulty)
        for i in range(samples):
            res.rewards.append(run_episode(env, policy(task, world, i), seed=i).reward)
        env.close()
        out.append(res)
        if on_task:
            on_task(res)
    return out
