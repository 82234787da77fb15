"""``toolgym bench eval``: the model policy's eval throughput at 1 slot vs many, on the same episodes.

Both runs play the same episodes (tasks synthesized on the fly, ``samples`` each, the same
per-episode seeds) through :class:`~toolgym.policy.model_policy.ModelPolicy` with the loop of
``toolgym eval`` (:func:`drive` over :func:`toolgym.policy.runner.batched_trajectories`): each env
is stepped as soon as the policy's batched decoding finished its action (``ModelPolicy.step``:
continuous batching, the other rows keep decoding), and a slot whose episode ended takes the next
one. Reported per run: episodes/s and generated tokens/s (wall clock, prefill and env steps
included), and the ratio of the batched run to the single-slot one.

Without ``--checkpoint`` a micro checkpoint is built in a temporary directory: a byte-level BPE
(4096 ids) trained on a slice of the standard library plus markup, and a random-init 3-layer MLA + DSA + MoE
model. Its actions are noise that rarely emits ``<|end|>``, so every action spends its
``max_new_tokens``: the measurement is of generation, not of the model's skill. With a trained
checkpoint (``--checkpoint``, ``--family`` of its tasks) actions end at different lengths, which
is where continuous batching matters: without it a round waits for its longest action.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from toolgym.policy.batch import BatchPolicy
from toolgym.spec import TaskSpec

Log = Callable[[str], None]


@dataclass
class EpisodeLog:
    """One episode played by :func:`drive`.

    Attributes:
        task_id: the task.
        sample: the sample index (also the env's reset seed).
        reward: the env's final reward.
        actions: the action texts, in order.
        observations: obs0 and the observation after each action.
        tokens: tokens the policy generated in the episode.
        terminated: True when the episode ended by submit, False when truncated at max_turns.
    """

    task_id: str
    sample: int
    reward: float = 0.0
    actions: list[str] = field(default_factory=list)
    observations: list[str] = field(default_factory=list)
    tokens: int = 0
    terminated: bool = False


def drive(policy: BatchPolicy, episodes: Sequence[tuple[TaskSpec, Any, int]], **env_kwargs: Any) -> list[EpisodeLog]:
    """Play episodes through a batched policy with the eval runner's loop (``batched_trajectories``).

    Args:
        policy: the batched policy.
        episodes: (task, world, sample) per episode, each (task, sample) once.
        **env_kwargs: ToolEnv options (max_turns, …).

    Returns:
        One log per episode, in the order given.
    """
    from toolgym.policy.runner import batched_trajectories

    logs = {(task.task_id, sample): EpisodeLog(task.task_id, sample) for task, _, sample in episodes}
    for task, sample, traj, tokens in batched_trajectories(episodes, policy, env_kwargs):
        log = logs[(task.task_id, sample)]
        log.reward, log.terminated, log.tokens = traj.reward, traj.terminated, tokens
        log.actions, log.observations = list(traj.actions), list(traj.observations)
    return [logs[(task.task_id, sample)] for task, _, sample in episodes]


class EvalBenchConfig(BaseModel):
    """What ``toolgym bench eval`` measures (validated; unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: Path | None = None  # None: build the micro checkpoint
    family: str = "trip"
    difficulty: int = Field(1, ge=1)
    tasks: int = Field(8, ge=1)
    samples: int = Field(2, ge=1)  # episodes per task
    slots: list[int] = Field(default_factory=lambda: [1, 16])
    max_new_tokens: int = Field(32, ge=1)
    max_turns: int = Field(4, ge=1)
    temperature: float = Field(1.0, ge=0)
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    threads: int = Field(1, ge=1)  # intra-op threads (1 is steadiest on a shared CPU)


@dataclass
class EvalRun:
    """One run of the same episodes at one slot count."""

    slots: int
    episodes: int
    tokens: int
    seconds: float
    append_s: float = 0.0  # prefill of prompts and observations (the same work at every slot count)
    generate_s: float = 0.0  # sampling and decode (what batching shares)

    @property
    def episodes_per_s(self) -> float:
        """Episodes finished per wall-clock second."""
        return self.episodes / self.seconds

    @property
    def tokens_per_s(self) -> float:
        """Generated tokens per wall-clock second."""
        return self.tokens / self.seconds


def micro_checkpoint(path: Path) -> Path:
    """Write a micro checkpoint (4096-id BPE as ``train lm`` builds, 3-layer random-init model) to ``path``."""
    from toolgym.envs import markup as mk
    from toolgym.policy.checkpoint import save_checkpoint
    from toolgym.policy.corpus import stdlib_corpus
    from toolgym.policy.model import ModelConfig, Transformer
    from toolgym.policy.tokenizer import Tokenizer

    corpus = stdlib_corpus(max_bytes=1_000_000, val_fraction=0.05)  # ~1 s; a trip prompt is ~2.3k tokens
    chat = f'{mk.USER}Plan a trip{mk.END}{mk.ASSISTANT}{mk.THINK_OPEN}hmm{mk.THINK_CLOSE}{mk.CALL_OPEN}{{"name": "f"}}'
    tokenizer = Tokenizer.train(corpus.train + [chat] * 20, vocab_size=4096)
    config = ModelConfig.micro(vocab_size=tokenizer.vocab_size, n_shared_experts=2, index_topk=64)
    return save_checkpoint(path, Transformer(config, seed=0).eval(), tokenizer, {"micro": True})


def bench_episodes(family: str, difficulty: int, tasks: int, samples: int) -> list[tuple[TaskSpec, Any, int]]:
    """``samples`` episodes of each of ``tasks`` tasks, synthesized from world seeds 0, 1, and so on."""
    from toolgym.synth import get_family
    from toolgym.synth.fly import SynthSource

    fam = get_family(family)
    source = SynthSource(fam, [difficulty], None)
    items = [source.get(f"{fam.id}-fly-s{s}-d{difficulty}") for s in range(tasks)]
    return [(task, world, i) for task, world in items for i in range(samples)]


@contextmanager
def bench_checkpoint(checkpoint: Path | None, threads: int, log: Log) -> Iterator[Path]:
    """The given checkpoint, or a micro one built in a temporary directory (removed after).

    torch runs at ``threads`` intra-op threads meanwhile (restored after).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory(prefix="toolgym-bench-") as tmp:
            if checkpoint is None:
                log("building the micro checkpoint")
                checkpoint = micro_checkpoint(Path(tmp) / "micro")
            yield checkpoint
    finally:
        torch.set_num_threads(before)


def run_eval_bench(config: EvalBenchConfig, log: Log = lambda line: None) -> list[EvalRun]:
    """Time the model policy on the same episodes at each slot count.

    Returns:
        One :class:`EvalRun` per entry of ``config.slots``, in order.
    """
    from toolgym.policy.model_policy import model_policy

    with bench_checkpoint(config.checkpoint, config.threads, log) as checkpoint:
        episodes = bench_episodes(config.family, config.difficulty, config.tasks, config.samples)
        runs = []
        for slots in config.slots:
            policy = model_policy(
                checkpoint=checkpoint,
                device=config.device,
                temperature=config.temperature,
                max_new_tokens=config.max_new_tokens,
                slots=slots,
            )
            start = time.perf_counter()
            logs = drive(policy, episodes, max_turns=config.max_turns)
            seconds = time.perf_counter() - start
            spent = dict(policy.session.seconds)
            policy.close()
            tokens = sum(e.tokens for e in logs)
            runs.append(EvalRun(slots, len(logs), tokens, seconds, spent["append"], spent["generate"]))
            log(f"slots={slots}: {len(logs)} episodes, {runs[-1].tokens} tokens in {seconds:.1f} s")
        return runs
