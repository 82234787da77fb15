"""Evaluation: run a policy on tasks, n samples each, and report unbiased pass@k and pass^k.

* ``pass@k`` is the unbiased estimator of Chen et al. (2021): with ``n`` samples of which ``c``
  passed, ``1 - C(n-c, k) / C(n, k)``; averaging it over tasks estimates the probability that at
  least one of ``k`` fresh samples passes. (A bootstrap "best of k over n" is biased low, the
  complaint of verl PR #7240.)
* ``pass^k`` (tau-bench) is ``C(c, k) / C(n, k)``: the probability that all ``k`` pass.
* Both come with a 95% normal-approximation interval over tasks, since a mean over 20 tasks
  says little without one.

A registered policy (``toolgym.POLICIES``) is built by calling its entry with keyword options
(:func:`make_policy`; always ``seed``, others as the CLI got them), each entry validating them
with a pydantic model (``extra="forbid"``). It returns either a :data:`PolicyFactory`
``(task, world, sample_index) -> Policy`` (one fresh :class:`~toolgym.envs.rollout.Policy` per
episode, so no state leaks between samples) or a :class:`~toolgym.policy.batch.BatchPolicy`.
The scripted baselines live here (``reference``, ``null``, ``random``, ``bluff``; they take
``seed`` only). The score of an episode is the env's reward, so the eval metric is the RL reward;
:mod:`toolgym.policy.runner` runs the episodes.
Importing this module does not import torch.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from toolgym.envs.agents import NullAgent, RandomAgent, SubmitAgent
from toolgym.envs.rollout import Policy, ProgramPolicy
from toolgym.errors import ConfigError
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


class ScriptedOptions(BaseModel):
    """The options of a scripted baseline: the seed of its samples, nothing else."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, ge=0)


def reference_policy(**options: Any) -> PolicyFactory:
    """The family's reference program, replayed through the tools (the gates' upper bound)."""
    ScriptedOptions(**options)

    def make(task: TaskSpec, world: Any, i: int) -> Policy:
        return ProgramPolicy(get_family(task.family).reference(task.params, task.tool_config))

    return make


def null_policy(**options: Any) -> PolicyFactory:
    """Submits an empty answer at once."""
    ScriptedOptions(**options)
    return lambda task, world, i: NullAgent()


def random_policy(**options: Any) -> PolicyFactory:
    """Random schema-valid calls, then a random plausible answer drawn from the world."""
    seed = ScriptedOptions(**options).seed

    def make(task: TaskSpec, world: Any, i: int) -> Policy:
        rng = random.Random(_seed(seed, task.task_id, i))
        return RandomAgent(rng, get_family(task.family).random_answer(world, task, rng))

    return make


def bluff_policy(**options: Any) -> PolicyFactory:
    """A well-formed answer with invented names, without any tool use."""
    seed = ScriptedOptions(**options).seed

    def make(task: TaskSpec, world: Any, i: int) -> Policy:
        rng = random.Random(_seed(seed, task.task_id, i, "bluff"))
        return SubmitAgent(get_family(task.family).bluff_answer(task, rng))

    return make


for _entry in (reference_policy, null_policy, random_policy, bluff_policy):
    _entry.Options = ScriptedOptions  # type: ignore[attr-defined]  # what make_policy's errors list


def make_policy(name: str, **options: Any) -> Any:
    """The policy of the central table (``toolgym.POLICIES``) named ``name``, built with ``options``.

    Args:
        name: A registered policy id.
        **options: Keyword options (``seed``, and any of ``checkpoint``, ``device``, ``temperature``,
            ``top_p``, ``max_new_tokens``, ``base_url``, ``model``, ``api_key_env``, ``concurrency``,
            ``timeout`` the policy takes).

    Returns:
        A :data:`PolicyFactory` or a :class:`~toolgym.policy.batch.BatchPolicy`.

    An entry validates its options with a pydantic model (``extra="forbid"``) and may expose that
    model as its ``Options`` attribute, so an option it does not take is refused with the list of
    those it does take.

    Raises:
        UnknownNameError: An unregistered name (the message lists the known ones).
        ConfigError: An option the policy does not take, or an invalid value, as one line naming it.
    """
    from toolgym import POLICIES

    entry = POLICIES.get(name)
    try:
        return entry(**options)
    except ValidationError as exc:
        raise ConfigError(_options_line(name, exc, options, getattr(entry, "Options", None))) from None


def _flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def _options_line(name: str, exc: ValidationError, options: dict[str, Any], model: Any) -> str:
    """A policy's refusal of its options as one line: the options it does not take, or what is wrong.

    ``model`` is the entry's ``Options`` attribute (its pydantic options model), when it has one:
    the line then lists the options the policy takes.
    """
    extra = [str(e["loc"][0]) for e in exc.errors() if e["type"] == "extra_forbidden" and e["loc"]]
    if extra:
        given = ", ".join(f"{_flag(x)} {options.get(x)}" for x in extra)
        takes = getattr(model, "model_fields", None)
        hint = f" (it takes {', '.join(map(_flag, takes))})" if takes else ""
        return f"policy {name!r} does not take {given}{hint}"
    parts = [f"{_flag('.'.join(map(str, e['loc'])))}: {e['msg']}" for e in exc.errors()[:3]]
    return f"policy {name!r}: " + "; ".join(parts)


def scripted_policy(name: str, seed: int = 0) -> PolicyFactory:
    """A policy of the central table (``toolgym.POLICIES``) by name, seeded (no other options).

    Raises:
        UnknownNameError: An unregistered name (the message names the closest ones).
    """
    factory: PolicyFactory = make_policy(name, seed=seed)
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


def task_results(records: Iterable[Any]) -> list[TaskResult]:
    """Group episode records (:class:`~toolgym.policy.runner.EpisodeRecord`) by task, samples in order.

    Returns:
        One :class:`TaskResult` per task, in the order tasks first appear; rewards by sample index.
    """
    by_task: dict[str, tuple[TaskResult, dict[int, float]]] = {}
    for r in records:
        hit = by_task.setdefault(r.task_id, (TaskResult(r.task_id, r.family, r.difficulty), {}))
        hit[1][r.sample] = r.reward
    out = []
    for res, rewards in by_task.values():
        res.rewards = [rewards[i] for i in sorted(rewards)]
        out.append(res)
    return out


def evaluate(
    items: Iterable[tuple[TaskSpec, Any]],
    policy: Any,
    samples: int,
    on_task: Callable[[TaskResult], None] | None = None,
    concurrency: int | None = None,
    **env_kwargs: Any,
) -> list[TaskResult]:
    """Run ``samples`` episodes of ``policy`` on each (task, world).

    Args:
        items: Tasks with their world objects (from a dataset or synthesized).
        policy: A :data:`PolicyFactory` ``(task, world, sample_index) -> Policy`` or a
            :class:`~toolgym.policy.batch.BatchPolicy`.
        samples: Episodes per task (n of pass@k).
        on_task: Called once per task when its last sample ends (progress bars).
        concurrency: Episodes at once for a factory (see :func:`toolgym.policy.runner.run_episodes`).
        **env_kwargs: ToolEnv limits (max_turns, …).

    Returns:
        One :class:`TaskResult` per task, in the order of ``items``.
    """
    from toolgym.policy.runner import run_episodes

    items = list(items)
    left = {task.task_id: samples for task, _ in items}
    done: dict[str, list[Any]] = {}

    def on_episode(record: Any) -> None:
        done.setdefault(record.task_id, []).append(record)
        left[record.task_id] -= 1
        if on_task is not None and left[record.task_id] == 0:
            on_task(task_results(done[record.task_id])[0])

    jobs = ((task, world, i) for task, world in items for i in range(samples))
    records = run_episodes(jobs, policy, on_episode, concurrency, **env_kwargs)
    order = {task.task_id: j for j, (task, _) in enumerate(items)}
    return sorted(task_results(records), key=lambda r: order[r.task_id])
