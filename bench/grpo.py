"""``toolgym bench grpo``: rollout tokens/s at batch 1 vs batch 16, and where a GRPO step's time goes.

Both measurements use the code ``toolgym train grpo`` runs, on ``tasks`` tasks of ``family`` at
``difficulty`` synthesized on the fly (train-split world seeds, as a GRPO run without a dataset
draws them), ``group_size`` samples each:

* **Rollout tokens/s** (:func:`~toolgym.policy.grpo_rollout.rollout`): the same episodes run
  one at a time (batch 1: ``rollout`` per (task, sample), G = 1) and all at once (batch
  ``tasks x group_size``, 16 by default: one lockstep ``Session``). Sampling is seeded per
  episode from (seed, task id, sample), so both ways generate the same tokens and the ratio is
  the speed-up of batched, KV-cached generation alone. The two alternate ``rounds`` times and
  the sums are compared, because this CPU is shared and its speed drifts. Reported: generated
  tokens per wall second of the whole rollout (prefill, env and tokenization included).
* **Step time shares**: one GRPO step (``grpo_train._grpo_step``: the batched rollout, the
  filters, ``updates_per_step`` optimizer steps, each a Keep-Routing training forward over the
  whole contexts and a backward) split into generation (sampling and decode), prefill (prompts
  and observations appended to the cache), env (resets and steps, tokenization included),
  training, and other. The filters are off here: a fresh model's groups all score 0, and its
  turns are void, so every episode would be filtered and no training be left to time; with them
  off every episode trains (with advantage 0), which costs the same forward and backward.

Without ``--checkpoint`` a fresh default-config policy (the MoE of ``bench learn``'s default
profile) is built with a tokenizer trained on the tasks' reference episodes: untrained, its
actions run to the ``max_new_tokens`` budget and the env answers them with errors, which is
the worst case for generation and a fair one for throughput.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

Log = Callable[[str], None]


class GRPOBenchConfig(BaseModel):
    """Settings of ``toolgym bench grpo`` (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: Path | None = Field(None, description="policy checkpoint; None: a fresh default-config model")
    family: str = "domains"
    difficulty: int = Field(1, ge=1, le=5)
    tasks: int = Field(2, ge=1, description="tasks (GRPO groups)")
    group_size: int = Field(8, ge=2, description="G, samples per task; batch = tasks x G")
    max_new_tokens: int = Field(48, ge=1)
    max_turns: int = Field(3, ge=1)
    rounds: int = Field(2, ge=1, description="batch-1 / batched alternations")
    updates_per_step: int = Field(2, ge=1)
    threads: int = Field(2, ge=1, description="torch intra-op threads")
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    seed: int = Field(0, ge=0, lt=2**63)


@dataclass
class RolloutRow:
    """One way of rolling out the same episodes.

    Attributes:
        batch: episodes decoded together.
        episodes: episodes run (per round).
        generated: tokens sampled over all rounds.
        seconds: wall seconds over all rounds.
    """

    batch: int
    episodes: int
    generated: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        """Generated tokens per wall second."""
        return self.generated / self.seconds if self.seconds > 0 else 0.0


def _policy(config: GRPOBenchConfig, items: list[tuple[Any, Any]], log: Log) -> tuple[Any, Any]:
    """(model, tokenizer): the checkpoint's, or a fresh default-config one (see the module docstring)."""
    from toolgym.bench.learn_config import LMStage
    from toolgym.envs.sources import MemorySource
    from toolgym.envs.toolenv import make_env
    from toolgym.policy.checkpoint import load_checkpoint
    from toolgym.policy.model import Transformer
    from toolgym.policy.model_policy import resolve_device
    from toolgym.policy.tokenizer import Tokenizer

    device = resolve_device(config.device)
    if config.checkpoint is not None:
        ck = load_checkpoint(config.checkpoint, device=device)
        return ck.model.eval(), ck.tokenizer
    log("building a fresh default-config policy")
    texts = []
    for task, world in items:  # the prompts the policy reads: a tokenizer fitted to them
        env = make_env(task.family, source=MemorySource([(task, world)]))
        try:
            texts.append(env.reset(seed=0, options={"task_id": task.task_id})[0])
        finally:
            env.close()
    tokenizer = Tokenizer.train(texts * 4, vocab_size=1024)
    model_config = replace(LMStage().fresh_model_config(), vocab_size=tokenizer.vocab_size)
    return Transformer(model_config, seed=config.seed).to(device).eval(), tokenizer


def run_grpo_bench(config: GRPOBenchConfig, log: Log = lambda line: None) -> tuple[list[RolloutRow], dict[str, float]]:
    """Measure both (see the module docstring).

    Returns:
        (the batch-1 and the batched row, the step's seconds by part: generate, prefill, env,
        train, other; and ``total``).

    Raises:
        UnknownNameError: an unknown family.
        CheckpointError: the checkpoint cannot be loaded.
    """
    from toolgym.policy.generate import SamplingParams
    from toolgym.policy.grpo_rollout import rollout
    from toolgym.policy.grpo_tasks import Curriculum, TaskPool

    before = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        pool = TaskPool(family=config.family, difficulties=[config.difficulty], seed=config.seed)
        items = pool.draw(config.tasks, Curriculum())
        model, tokenizer = _policy(config, items, log)
        params = SamplingParams(1.0, 0.95, config.max_new_tokens)
        env = {"max_turns": config.max_turns}
        n = len(items) * config.group_size
        rows = {1: RolloutRow(1, n, 0, 0.0), n: RolloutRow(n, n, 0, 0.0)}
        for r in range(config.rounds):
            for batch in (1, n) if r % 2 == 0 else (n, 1):
                log(f"round {r + 1}: batch {batch}")
                t0 = time.perf_counter()
                if batch == 1:
                    runs = [
                        rollout(model, tokenizer, [item], 1, params, seed=config.seed, env_kwargs=env, first_sample=s)
                        for item in items
                        for s in range(config.group_size)
                    ]
                else:
                    runs = [
                        rollout(model, tokenizer, items, config.group_size, params, seed=config.seed, env_kwargs=env)
                    ]
                rows[batch].seconds += time.perf_counter() - t0
                rows[batch].generated += sum(b.generated for b in runs)
        log("one GRPO step")
        shares = _step_seconds(model, tokenizer, config, pool)
    finally:
        torch.set_num_threads(before)
    return [rows[1], rows[n]], shares


def _step_seconds(model: Any, tokenizer: Any, config: GRPOBenchConfig, pool: Any) -> dict[str, float]:
    """One ``_grpo_step`` on the pool's first tasks (those rolled out above); its seconds by part and in total."""
    import copy

    from toolgym.policy.grpo_tasks import Curriculum
    from toolgym.policy.grpo_train import GRPOConfig, _grpo_step

    grpo = GRPOConfig(
        steps=1, tasks_per_step=config.tasks, group_size=config.group_size, updates_per_step=config.updates_per_step,
        max_new_tokens=config.max_new_tokens, max_turns=config.max_turns,
        filter_zero_variance=False, filter_void_turns=False, filter_truncated=False,
        device=config.device, seed=config.seed,
    )  # fmt: skip
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=grpo.lr)
    t0 = time.perf_counter()
    rec = _grpo_step(model, ref, opt, tokenizer, pool, Curriculum(), grpo, 0)
    total = time.perf_counter() - t0
    parts = {k: float(rec[f"seconds_{k}"]) for k in ("generate", "prefill", "env", "train", "other")}
    return parts | {"total": total}
