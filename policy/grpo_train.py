"""``toolgym train grpo``: GRPO with the DeepSeek-V3.2 stabilizers, one readable loop.

Each step: pick the step's tasks, roll out G episodes of each with the current weights
(``grpo_rollout``), filter, compute group advantages, then split the surviving groups into
``updates_per_step`` mini-batches, one optimizer step each, so every update after the first is
off-policy (what §4.4's masking and the ratio are for). The objective is ``grpo.grpo_loss``;
the reference model of the KL is a frozen copy of ``--init`` (reloaded from it on resume).

Layout of ``--out DIR`` (as ``train sft``)::

    DIR/checkpoint/   weights, tokenizer, optimizer state, meta {"kind": "grpo", step, settings}
    DIR/metrics.jsonl one JSON record per step (see ``_record``)
    DIR/grpo.png      reward / pass rate, KL, entropy, routing agreement and fractions by step

A run whose ``DIR/checkpoint`` holds a GRPO checkpoint resumes at its step with the recorded
settings (only ``steps``, ``checkpoint_every`` and ``device`` may change); metric records past its step are
dropped. Every random draw is a function of (seed, step): the step's tasks, and each episode's
sampling (seeded from (seed, step), task and sample), so a resumed run continues exactly.

Decisions:

* **Filters** (each a switch, each counted per step): zero-variance groups are dropped whole
  (advantage 0 everywhere: no signal, only KL); episodes with a void turn and truncated
  episodes are dropped from the loss but *kept in their group's baseline* mean(R): they are
  samples of the policy, and dropping them from the baseline would raise it for the rest.
  Truncated episodes are left out of the loss as DAPO's overlong filtering does: "ran out of
  turns or context" is not "answered wrong", and penalising it teaches the policy to submit
  early rather than correctly.
* Constant learning rate (no schedule: an RL run's length is open-ended), AdamW without weight
  decay by default, gradient clipping. No router-bias update and no balance loss in GRPO (the
  expert loads of forced routes say nothing about the router), and no indexer loss: the
  lightning indexer keeps what SFT gave it.
* A step whose loss or gradient norm is not finite raises ``TrainingDivergedError`` naming the
  step, before the optimizer step; nothing of that step is logged or saved, and the last
  checkpoint stays.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from toolgym.errors import ConfigError, TrainingDivergedError
from toolgym.policy.checkpoint import check_replaceable, load_checkpoint, load_optimizer_state, save_checkpoint
from toolgym.policy.generate import SamplingParams
from toolgym.policy.grpo import (
    Objective,
    action_logprobs,
    group_advantages,
    grpo_loss,
    make_train_batch,
    sequence_weights,
    zero_variance_groups,
)
from toolgym.policy.grpo_rollout import RolloutBatch, RolloutEpisode, rollout
from toolgym.policy.grpo_tasks import Curriculum, TaskPool
from toolgym.policy.model import Transformer
from toolgym.policy.results import metrics_log

CHECKPOINT, METRICS, PLOT = "checkpoint", "metrics.jsonl", "grpo.png"
RESUME_FREE = frozenset({"steps", "checkpoint_every", "device"})  # a run may resume on another device


class GRPOConfig(BaseModel):
    """One GRPO run's settings (validated; unknown keys are errors).

    Attributes:
        steps: rollout steps (each one rollout batch and its updates).
        tasks_per_step: tasks rolled out per step (groups).
        group_size: G, episodes per task.
        updates_per_step: optimizer steps per rollout batch (its groups split evenly).
        micro_batch: episodes per training forward (gradients accumulate; bounds memory).
        lr, weight_decay, grad_clip: AdamW and clipping.
        clip_eps, kl_coef, unbiased_kl, off_policy_mask, off_policy_delta: see ``grpo.Objective``.
        keep_routing, keep_sampling_mask: the §4.5 and §4.6 stabilizers.
        filter_zero_variance, filter_void_turns, filter_truncated: the filters (see the module docstring).
        temperature, top_p, max_new_tokens: sampling (V3.2 serves at 1.0 / 0.95).
        max_context: tokens per episode; max_turns: the env's turn limit (None: its default).
        curriculum, curriculum_threshold: start at the lowest difficulty, move up when a step's
            pass rate reaches the threshold, retire tasks whose whole group passed (``grpo_tasks``).
        checkpoint_every: steps between checkpoints (0: only at the end).
        seed: seeds tasks and sampling.
        device: cpu, cuda or auto.
    """

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(50, ge=1)
    tasks_per_step: int = Field(8, ge=1)
    group_size: int = Field(8, ge=2)
    updates_per_step: int = Field(2, ge=1)
    micro_batch: int = Field(4, ge=1)
    lr: float = Field(1e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    clip_eps: float = Field(0.2, gt=0, lt=1)
    kl_coef: float = Field(0.01, ge=0)
    unbiased_kl: bool = True
    off_policy_mask: bool = True
    off_policy_delta: float = Field(0.05, ge=0)
    keep_routing: bool = True
    keep_sampling_mask: bool = True
    filter_zero_variance: bool = True
    filter_void_turns: bool = True
    filter_truncated: bool = True
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(256, ge=1)
    max_context: int = Field(4096, ge=2)
    max_turns: int | None = Field(None, ge=1)
    curriculum: bool = False
    curriculum_threshold: float = Field(0.5, gt=0, le=1)
    checkpoint_every: int = Field(10, ge=0)
    seed: int = Field(0, ge=0, lt=2**63)
    device: Literal["cpu", "cuda", "auto"] = "auto"

    def objective(self) -> Objective:
        """The loss settings."""
        return Objective(self.clip_eps, self.kl_coef, self.unbiased_kl, self.off_policy_mask, self.off_policy_delta)


# ------------------------------------------------------------------------------ filters


@dataclass
class Selection:
    """The episodes a step trains on, with their advantages, and what the filters dropped.

    Attributes:
        episodes: kept episodes, grouped (groups in order).
        advantages: [n] per kept episode (baseline over its whole finished group).
        group: [n] dense group index (0..n_groups-1) of each kept episode.
        counts: {"zero_variance_groups", "void_episodes", "truncated_episodes"} dropped.
    """

    episodes: list[RolloutEpisode]
    advantages: torch.Tensor
    group: torch.Tensor
    counts: dict[str, int]


def select(batch: RolloutBatch, config: GRPOConfig) -> Selection:
    """Apply the filters and compute advantages (see the module docstring)."""
    eps = batch.episodes
    counts = {"zero_variance_groups": 0, "void_episodes": 0, "truncated_episodes": 0}
    if not eps:
        return Selection([], torch.zeros(0), torch.zeros(0, dtype=torch.long), counts)
    rewards = torch.tensor([e.reward for e in eps], dtype=torch.float64)
    raw = torch.tensor([e.group for e in eps])
    group = torch.unique(raw, return_inverse=True)[1]
    adv = group_advantages(rewards, group)
    flat = zero_variance_groups(rewards, group)
    counts["zero_variance_groups"] = len(set(group[flat].tolist()))
    keep = []
    for i, e in enumerate(eps):
        if config.filter_zero_variance and flat[i]:
            continue
        if config.filter_void_turns and e.void_turns:
            counts["void_episodes"] += 1
            continue
        if config.filter_truncated and e.truncated:
            counts["truncated_episodes"] += 1
            continue
        keep.append(i)
    idx = torch.tensor(keep, dtype=torch.long)
    kept_group = torch.unique(group[idx], return_inverse=True)[1] if keep else torch.zeros(0, dtype=torch.long)
    return Selection([eps[i] for i in keep], adv[idx].float(), kept_group, counts)


# --------------------------------------------------------------------------------- loop


@dataclass
class GRPOResult:
    """What a run did: the steps run and the logged history."""

    steps: int
    seconds: float
    history: list[dict[str, float]]


def _diverged(step: int, what: str, value: float, lr: float) -> TrainingDivergedError:
    return TrainingDivergedError(
        f"GRPO diverged at step {step}: {what} is {value}; nothing of this step was saved (the last "
        f"checkpoint, if any, is kept); lower --lr ({lr:g}, e.g. {lr / 10:g}) and resume or start again"
    )


_TOKEN_STATS = ("kl", "entropy", "clip_frac", "ratio")  # per-token means, weighted by tokens
_SEQ_STATS = ("masked_frac", "off_policy_kl")  # per-sequence means, weighted by sequences


def _update(
    model: Transformer,
    ref: Transformer | None,
    opt: torch.optim.Optimizer,
    sel: Selection,
    groups: list[int],
    config: GRPOConfig,
    pad_id: int,
    step: int,
) -> dict[str, float]:
    """One optimizer step on the episodes of ``groups`` (dense group indices of ``sel``).

    The episodes go through the model ``config.micro_batch`` at a time, their gradients
    accumulated (the loss is a weighted sum of per-sequence means; see ``grpo_loss``), so the
    memory of a forward is bounded whatever the number of groups.

    Raises:
        TrainingDivergedError: the loss or the gradient norm is not finite (before the update).
    """
    device = next(model.parameters()).device
    wanted = set(groups)
    rows = [i for i, g in enumerate(sel.group.tolist()) if g in wanted]
    weight = sequence_weights(torch.unique(sel.group[rows], return_inverse=True)[1])
    opt.zero_grad(set_to_none=True)
    loss, sums, n_tok, n_seq = 0.0, dict.fromkeys(_TOKEN_STATS + _SEQ_STATS, 0.0), 0, 0
    agreements: list[tuple[float, int]] = []
    for start in range(0, len(rows), config.micro_batch):
        part = rows[start : start + config.micro_batch]
        eps = [sel.episodes[i] for i in part]
        batch = make_train_batch(
            [e.ids for e in eps], [e.action for e in eps], [e.logprobs for e in eps], [e.keep for e in eps],
            [e.routing for e in eps], pad_id,
        ).to(device)  # fmt: skip
        ref_lp = None
        if ref is not None:
            with torch.no_grad():
                ref_lp = action_logprobs(
                    ref, batch, config.temperature, keep_routing=False, keep_sampling_mask=config.keep_sampling_mask
                ).logp
        mine = action_logprobs(
            model, batch, config.temperature,
            keep_routing=config.keep_routing, keep_sampling_mask=config.keep_sampling_mask,
        )  # fmt: skip
        adv, w = sel.advantages[part].to(device), weight[start : start + len(part)].to(device)
        parts = grpo_loss(mine.logp, batch.logp_old, ref_lp, adv, batch.seq, batch.seq, config.objective(), w)
        parts.loss.backward()  # gradients add up over micro-batches
        loss += parts.loss.item()
        t, n = len(batch.targets), len(part)
        stats = {**parts.__dict__, "entropy": float(mine.entropy.mean())}
        for key in _TOKEN_STATS:
            sums[key] += stats[key] * t
        for key in _SEQ_STATS:
            sums[key] += stats[key] * n
        n_tok, n_seq = n_tok + t, n_seq + n
        if mine.routing_agreement is not None:
            agreements.append((mine.routing_agreement, t))
    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    for what, value in (("loss", loss), ("grad_norm", gnorm.item())):
        if not math.isfinite(value):
            raise _diverged(step, what, value, config.lr)
    opt.step()
    record = {"loss": loss, "grad_norm": gnorm.item(), "train_tokens": float(n_tok)}
    record.update({k: sums[k] / max(1, n_tok) for k in _TOKEN_STATS})
    record.update({k: sums[k] / max(1, n_seq) for k in _SEQ_STATS})
    record["routing_agreement"] = (
        sum(a * t for a, t in agreements) / max(1, sum(t for _, t in agreements)) if agreements else float("nan")
    )
    return record


def _record(
    step: int, batch: RolloutBatch, sel: Selection, updates: list[dict[str, float]], t: dict[str, float]
) -> dict[str, float]:
    """The step's metrics: rollout numbers, filter counts, and the mean of the updates' numbers."""
    eps = batch.episodes
    n = max(1, len(eps))
    rec: dict[str, float] = {
        "step": step,
        "reward": sum(e.reward for e in eps) / n,
        "pass_rate": sum(e.reward >= 1.0 for e in eps) / n,
        "episodes": len(eps),
        "env_errors": len(batch.env_errors),
        **{k: float(v) for k, v in sel.counts.items()},
        "trained_episodes": len(sel.episodes),
        "episode_tokens": sum(len(e.ids) for e in eps) / n,
        "episode_turns": sum(e.turns for e in eps) / n,
        "generated_tokens": batch.generated,
        "rollout_tokens_per_s": batch.generated / max(t["generate"], 1e-9),
        "updates": len(updates),
        **{f"seconds_{k}": v for k, v in t.items()},
    }
    if updates:
        for key in updates[0]:
            vals = [u[key] for u in updates if not math.isnan(u[key])]
            if vals:
                rec[key] = sum(vals) / len(vals)
    return rec


def run_settings(config: GRPOConfig, init: Path, pool: TaskPool) -> dict[str, Any]:
    """What a resume must share (as JSON reads it back)."""
    settings = {"init": str(init.resolve()), **pool.describe(), **config.model_dump(exclude=set(RESUME_FREE))}
    return dict(json.loads(json.dumps(settings)))


def _step_seed(seed: int, step: int) -> int:
    """The sampling seed of one step's rollout."""
    return int.from_bytes(hashlib.sha256(f"grpo\x1f{seed}\x1f{step}".encode()).digest()[:8], "little") >> 1


def _start(
    out: Path, init: Path, settings: dict[str, Any], device: str
) -> tuple[Any, int, dict[str, Any] | None, dict[str, Any] | None]:
    """(checkpoint to train, step done, optimizer state, curriculum state): a resume of ``out``, or ``init``.

    Raises:
        ConfigError: ``out`` holds another kind of run, or a GRPO run with other settings.
    """
    ck_dir = out / CHECKPOINT
    if ck_dir.exists():
        ck = load_checkpoint(ck_dir, device=device)
        if ck.meta.get("kind") != "grpo":
            raise ConfigError(f"{ck_dir} holds a checkpoint that is not a GRPO run's; pick another --out")
        prior = ck.meta.get("settings")
        if prior is not None:  # recorded before a setting became free: not a difference
            prior = {k: v for k, v in prior.items() if k not in RESUME_FREE}
        if prior != settings:
            diff = sorted(k for k in (prior or {}).keys() | settings.keys() if (prior or {}).get(k) != settings.get(k))
            raise ConfigError(
                f"{out} holds a GRPO run with different settings ({', '.join(diff)}); use another --out, "
                "or the same settings to resume (only --steps, --checkpoint-every and --device may change)"
            )
        return ck, int(ck.meta.get("step", 0)), load_optimizer_state(ck_dir), ck.meta.get("curriculum")
    return load_checkpoint(init, device=device), 0, None, None


def _grpo_step(
    model: Transformer,
    ref: Transformer | None,
    opt: torch.optim.Optimizer,
    tokenizer: Any,
    pool: TaskPool,
    curriculum: Curriculum,
    config: GRPOConfig,
    step: int,
    env_maker: Callable[..., Any] | None = None,
) -> dict[str, float]:
    """One step (0-based ``step``): roll out, filter, update ``updates_per_step`` times; its record.

    The step's tasks are the next the curriculum accepts, and the curriculum is updated after.
    """
    t0 = time.perf_counter()
    model.eval()
    params = SamplingParams(config.temperature, config.top_p, config.max_new_tokens)
    env_kwargs = {"max_turns": config.max_turns} if config.max_turns is not None else {}
    batch = rollout(
        model, tokenizer, pool.draw(config.tasks_per_step, curriculum), config.group_size, params,
        seed=_step_seed(config.seed, step), max_context=config.max_context, env_kwargs=env_kwargs,
        env_maker=env_maker,
    )  # fmt: skip
    t_roll = time.perf_counter() - t0
    sel = select(batch, config)
    t1 = time.perf_counter()
    model.train()
    n_groups = int(sel.group.max()) + 1 if len(sel.group) else 0
    chunks = [list(range(n_groups))[u :: config.updates_per_step] for u in range(config.updates_per_step)]
    updates = [_update(model, ref, opt, sel, c, config, tokenizer.pad_id, step + 1) for c in chunks if c]
    times = {
        "generate": batch.seconds.get("generate", 0.0),
        "prefill": batch.seconds.get("append", 0.0),
        "env": batch.seconds.get("env", 0.0),
        "train": time.perf_counter() - t1,
    }
    times["other"] = max(0.0, t_roll - times["generate"] - times["prefill"] - times["env"])
    record = _record(step + 1, batch, sel, updates, times)
    if curriculum.level is not None:
        record["difficulty"] = float(curriculum.level)
    if config.curriculum:
        solved = [e.task_id for e in batch.episodes if e.reward >= 1.0]
        whole = [t for t in set(solved) if solved.count(t) == config.group_size]
        curriculum.update(record["pass_rate"], whole, config.curriculum_threshold, max(pool.difficulties))
        record["retired_tasks"] = len(curriculum.retired)
    return record


def train_grpo(
    out: Path,
    config: GRPOConfig,
    *,
    init: Path,
    pool: TaskPool,
    progress: bool = True,
    log: Callable[[dict[str, float]], None] | None = None,
    env_maker: Callable[..., Any] | None = None,
) -> GRPOResult:
    """Run (or resume) GRPO from ``init``; see the module docstring for the layout of ``out``.

    Args:
        out: the run directory.
        config: the run's settings.
        init: the checkpoint to start from (SFT), also the KL's reference.
        pool: where each step's tasks come from.
        progress: show a progress line.
        log: called with each step's record (after it is appended to metrics.jsonl).
        env_maker: makes the rollouts' envs (None: ``make_env``; a Ray pool's ``make_env`` runs them
            on actors, a lost episode counted in the record's ``env_errors``).

    Raises:
        ConfigError: ``out`` is a file, or holds another run (kind or settings).
        CheckpointError: ``init`` or the resumed checkpoint is invalid, or ``out/checkpoint``
            holds something other than a checkpoint.
        TrainingDivergedError: a step's loss or gradient norm is not finite (the last checkpoint is kept).
    """
    from toolgym.policy.model_policy import resolve_device

    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file, not a GRPO run directory; pick another --out or move it away")
    check_replaceable(out / CHECKPOINT)
    device = resolve_device(config.device)
    settings = run_settings(config, init, pool)
    ck, start, opt_state, state = _start(out, init, settings, device)
    first = min(pool.difficulties) if config.curriculum else None
    curriculum = Curriculum(**state) if state is not None else Curriculum(level=first)
    model, tokenizer = ck.model, ck.tokenizer
    ref = load_checkpoint(init, device=device).model.eval().requires_grad_(False) if config.kl_coef > 0 else None
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.95))
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    out.mkdir(parents=True, exist_ok=True)
    record = metrics_log(out / METRICS, start, log)
    meta = {"kind": "grpo", "settings": settings, "init": str(init)}
    history: list[dict[str, float]] = []
    t_start = time.perf_counter()
    bar = _bar(config.steps, start) if progress else None
    try:
        for step in range(start, config.steps):
            rec = _grpo_step(model, ref, opt, tokenizer, pool, curriculum, config, step, env_maker)
            history.append(rec)
            record(rec)
            if bar is not None:
                bar.update(bar.task_ids[0], advance=1, info=_info(rec))
            last = step + 1 == config.steps
            if last or (config.checkpoint_every and (step + 1) % config.checkpoint_every == 0):
                _save(out, model, tokenizer, {**meta, "curriculum": curriculum.to_json()}, step + 1, opt)
    finally:
        if bar is not None:
            bar.stop()
        model.eval()
    if (out / METRICS).read_text(encoding="utf-8").strip():
        plot_grpo(out / METRICS, out / PLOT)
    return GRPOResult(max(0, config.steps - start), time.perf_counter() - t_start, history)


def _save(
    out: Path, model: Transformer, tokenizer: Any, meta: dict[str, Any], step: int, opt: torch.optim.Optimizer
) -> None:
    """Checkpoint the step (atomic), after checking every weight is finite.

    Raises:
        TrainingDivergedError: a weight is NaN or infinite (the previous checkpoint stays).
    """
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise TrainingDivergedError(f"GRPO diverged at step {step}: weight {name} is not finite; not saved")
    save_checkpoint(out / CHECKPOINT, model, tokenizer, {**meta, "step": step}, opt.state_dict())


def _info(rec: dict[str, float]) -> str:
    """The progress line's text."""
    return (
        f"reward {rec['reward']:.3f} pass {rec['pass_rate']:.0%} kl {rec.get('kl', 0.0):.4f} "
        f"ent {rec.get('entropy', float('nan')):.2f} {rec['rollout_tokens_per_s']:.0f} tok/s"
    )


def _bar(steps: int, start: int) -> Any:
    """A started rich progress line (stop it with ``bar.stop()``)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("grpo"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"), transient=True,
    )  # fmt: skip
    bar.start()
    bar.add_task("grpo", total=steps, completed=start, info="")
    return bar


def plot_grpo(metrics: Path, png: Path) -> None:
    """Reward and pass rate, KL, entropy, and routing agreement / clip / masked fractions by step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
    steps = [r["step"] for r in recs]

    def series(key: str) -> list[float]:
        return [r.get(key, float("nan")) for r in recs]

    fig, axes = plt.subplots(2, 2, figsize=(9, 6))
    panels = [
        ("reward", ["reward", "pass_rate"]),
        ("KL to reference", ["kl"]),
        ("entropy (nats/token)", ["entropy"]),
        ("share", ["routing_agreement", "clip_frac", "masked_frac"]),
    ]
    for ax, (title, keys) in zip(axes.flat, panels, strict=True):
        for key in keys:
            ax.plot(steps, series(key), marker=".", label=key)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
