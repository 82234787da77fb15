"""``toolgym bench train``: SFT tokens/s vs ``train lm`` tokens/s, same model, same budget, one run.

Both rows run the one training loop (``train_lm.train_lm``) on a fresh model built from the same
config and seed, with the same tokenizer (a BPE trained on a slice of the standard library plus
the trajectories), the same ``batch_size`` x ``seq_len`` token budget per step and one intra-op
thread:

* ``lm``: random ``seq_len + 1`` windows of the standard-library stream (what ``toolgym train
  lm`` feeds), every token real and loss-bearing.
* ``sft``: the reference episodes of a small dataset synthesized in a temporary directory
  (``family`` at ``difficulty``), fed as ``policy.sft_data.SFTData`` builds them for
  ``toolgym train sft`` (one episode per row, length-bucketed, loss only on action tokens).

Timing: the wall clock between consecutive steps' log records (batch assembly, forward, backward,
optimizer and router-bias update; no eval), after ``warmup`` untimed steps. Reported per row:
real tokens/s (every non-pad input token fed), for SFT also the loss-bearing action tokens/s,
and the share of fed positions that are padding. The target (issue 10) is SFT ≥ 0.8x LM
tokens/s. The rows alternate ``rounds`` times (lm, sft, lm, sft, ...) and the sums are
compared, because this CPU is shared and its speed drifts.

Models: ``micro`` is ``ModelConfig.micro`` (3 layers, dim 64), ``default`` is ``ModelConfig()``
(the MoE policy SFT and GRPO use).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from toolgym.policy.model import ModelConfig, Transformer
from toolgym.policy.train_lm import Batch, LMTrainConfig, train_lm

Log = Callable[[str], None]
ModelName = Literal["micro", "default"]


class TrainBenchConfig(BaseModel):
    """What ``toolgym bench train`` measures (validated; unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")

    models: list[ModelName] = Field(default=["micro", "default"], min_length=1)
    steps: int = Field(6, ge=1)  # timed steps per row and round
    warmup: int = Field(1, ge=0)  # untimed steps before them
    rounds: int = Field(2, ge=1)  # lm, sft alternations
    batch_size: int = Field(4, ge=1)
    seq_len: int = Field(1024, ge=16)
    family: str = "code"
    difficulty: int = Field(1, ge=1)
    tasks: int = Field(16, ge=1)  # tasks synthesized for the SFT rows (all in the train split)
    corpus_bytes: int = Field(1_000_000, ge=10_000)
    vocab_size: int = Field(4096, ge=300)
    threads: int = Field(1, ge=1)  # intra-op threads (1 is steadiest on a shared CPU)
    seed: int = Field(0, ge=0)


@dataclass
class TrainRow:
    """One model's data kind, summed over the rounds.

    Attributes:
        model: "micro" or "default".
        kind: "lm" or "sft".
        steps: timed optimizer steps.
        tokens: real (non-pad) input tokens fed in those steps.
        action_tokens: loss-bearing target tokens (LM: every target).
        padded: input positions fed, pads included.
        seconds: wall clock of those steps.
    """

    model: str
    kind: str
    steps: int
    tokens: int
    action_tokens: int
    padded: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        """Real input tokens per second."""
        return self.tokens / self.seconds

    @property
    def action_tokens_per_s(self) -> float:
        """Loss-bearing tokens per second."""
        return self.action_tokens / self.seconds

    @property
    def pad_share(self) -> float:
        """Share of the fed positions that are ``<|pad|>``."""
        return 1 - self.tokens / max(1, self.padded)


def _counted(batches: Iterator[Batch], seen: list[Batch]) -> Iterator[Batch]:
    """Pass batches through, remembering each (to count its tokens after the run)."""
    for b in batches:
        seen.append(b)
        yield b


def time_steps(model: Transformer, batches: Iterator[Batch], config: LMTrainConfig, warmup: int) -> TrainRow:
    """Run ``config.steps`` steps of the loop, timing those after ``warmup`` (and before the last).

    The last step is left out because the loop evaluates after it; ``config.steps`` must be at
    least ``warmup + 2``.
    """
    stamps: list[float] = []
    seen: list[Batch] = []
    train_lm(
        model,
        _counted(batches, seen),
        [Batch(torch.zeros(1, 3, dtype=torch.long))],  # the end-of-run eval: one tiny batch
        config.model_copy(update={"eval_every": config.steps}),
        progress=False,
        log=lambda rec: stamps.append(time.perf_counter()),
    )
    timed = seen[warmup + 1 : config.steps - 1]  # steps whose records follow stamps[warmup]
    tokens = sum(b.n_tokens if b.n_tokens is not None else b.tokens[:, :-1].numel() for b in timed)
    action = sum(int(b.loss_mask.sum()) if b.loss_mask is not None else b.tokens[:, 1:].numel() for b in timed)
    padded = sum(b.tokens[:, :-1].numel() for b in timed)
    return TrainRow("", "", len(timed), tokens, action, padded, stamps[config.steps - 2] - stamps[warmup])


def _dataset(config: TrainBenchConfig, tmp: Path) -> Path:
    """A small dataset of ``config.tasks`` tasks, all in the train split."""
    from toolgym.synth.config import SynthConfig
    from toolgym.synth.run import synthesize

    path = tmp / f"{config.family}.duckdb"
    synth = SynthConfig(
        family=config.family,
        count=config.tasks,
        workers=1,
        seed=config.seed,
        split_fractions=(1.0, 0.0, 0.0),
        difficulty=(config.difficulty, config.difficulty),
    )
    synthesize(synth, path)
    return path


def _model_config(name: ModelName, vocab_size: int) -> ModelConfig:
    """The named model config at the tokenizer's vocabulary size."""
    if name == "micro":
        return ModelConfig.micro(vocab_size=vocab_size)
    return replace(ModelConfig(), vocab_size=vocab_size)


def run_train_bench(config: TrainBenchConfig, log: Log = lambda line: None) -> list[TrainRow]:
    """Time ``train lm`` and ``train sft`` steps side by side on each model of ``config.models``.

    Returns:
        Two rows per model, lm first then sft, each summed over the rounds.

    Raises:
        ConfigError: no episode fits ``seq_len`` (raise it), or the family is unknown.
    """
    from toolgym.data.dataset import Dataset
    from toolgym.errors import ConfigError
    from toolgym.policy.corpus import stdlib_corpus
    from toolgym.policy.sft_data import SFTData, load_episodes
    from toolgym.policy.tokenizer import Tokenizer
    from toolgym.policy.train_lm import encode_documents, random_windows

    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        with tempfile.TemporaryDirectory(prefix="toolgym-bench-train-") as tmp:
            log(f"synthesizing {config.tasks} {config.family} d{config.difficulty} tasks")
            with Dataset(_dataset(config, Path(tmp)), read_only=True) as ds:
                trajectories = [ds.trajectory(t) for t in ds.task_ids(split="train")]
                corpus = stdlib_corpus(config.corpus_bytes)
                tokenizer = Tokenizer.train(corpus.train + [t.text for t in trajectories], config.vocab_size)
                episodes, truncated, dropped = load_episodes(ds, "train", tokenizer, config.seq_len)
        if not episodes:
            raise ConfigError(f"no {config.family} episode fits seq_len {config.seq_len}; raise it")
        log(f"{len(episodes)} episodes ({truncated} cut at an action, {dropped} dropped)")
        stream = encode_documents(tokenizer, corpus.train)
        sft = SFTData(episodes, config.batch_size, config.seq_len, tokenizer.pad_id)
        loop = LMTrainConfig(
            steps=config.warmup + config.steps + 2,
            batch_size=config.batch_size,
            seq_len=config.seq_len,
            warmup_steps=0,
            seed=config.seed,
        )
        rows: list[TrainRow] = []
        for name in config.models:
            mc = _model_config(name, tokenizer.vocab_size)
            sums = {k: TrainRow(name, k, 0, 0, 0, 0, 0.0) for k in ("lm", "sft")}
            for r in range(config.rounds):
                for kind in ("lm", "sft"):
                    gen = torch.Generator().manual_seed(config.seed + r)
                    batches = (
                        random_windows(stream, config.batch_size, config.seq_len, gen)
                        if kind == "lm"
                        else sft.batches(config.seed, r * loop.steps)
                    )
                    got = time_steps(Transformer(mc, seed=config.seed), batches, loop, config.warmup)
                    s = sums[kind]
                    s.steps, s.tokens, s.padded = s.steps + got.steps, s.tokens + got.tokens, s.padded + got.padded
                    s.action_tokens, s.seconds = s.action_tokens + got.action_tokens, s.seconds + got.seconds
                    log(f"{name} {kind} round {r + 1}: {got.tokens / got.seconds:.0f} tok/s")
            rows += [sums["lm"], sums["sft"]]
        return rows
    finally:
        torch.set_num_threads(threads)
