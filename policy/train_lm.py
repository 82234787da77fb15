"""Next-token training of the policy on a token stream: one loop, three stages.

The loop (AdamW, linear warm-up then cosine decay, gradient clipping, periodic held-out eval,
atomic checkpoints with the optimizer state, a rich progress bar with tokens/s) is shared by LM
pre-training here and by the SFT cold start (``policy/sft.py``), which feeds it ``Batch``es with a
loss mask over action tokens and resumes with ``start_step`` and ``optimizer_state``.

Stages follow DeepSeek-V3.2-Exp's continued pre-training (deepseek_v32.md §2.5):

* ``"dense"``: dense attention; all parameters learn from the LM loss (+ MoE balance loss).
* ``"indexer_warmup"``: dense attention; every parameter except the lightning indexers is
  frozen; the loss is only the KL from the head-summed, L1-normalised main attention to the
  indexer's distribution over all causal tokens. The report uses a high LR (1e-3) here.
* ``"sparse"``: top-k attention; all parameters train on LM + balance + KL. Because the indexer
  reads detached inputs and top-k indices carry no gradient, the KL trains only the indexer and
  the LM loss trains only the rest, exactly the separation the report prescribes.

MoE router biases are updated after every optimizer step from the step's expert loads (not in
the warm-up, where the backbone is frozen). Every random draw (batch windows) comes from one
seeded ``torch.Generator``.

A diverged run stops: the first step whose loss or gradient norm (checked before the optimizer
step), held-out numbers, or weights (checked before each checkpoint) are NaN or infinite raises
``TrainingDivergedError`` naming the step; that step is neither logged nor checkpointed, so the
last good checkpoint stays and logged records stay strict JSON.

Run from the command line as ``toolgym train lm --out runs/lm`` (``policy/pretrain.py``: the
corpus, the tokenizer and resuming).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor

from toolgym.errors import ConfigError, TrainingDivergedError
from toolgym.policy.checkpoint import check_replaceable, save_checkpoint
from toolgym.policy.model import Transformer
from toolgym.policy.tokenizer import Tokenizer

if TYPE_CHECKING:
    from rich.progress import Progress


Stage = Literal["dense", "indexer_warmup", "sparse"]


class CopyMix(BaseModel):
    """Repeat rows mixed into a training loop, so the copying head (``policy.induction``) is kept.

    Every ``every``-th optimizer step (steps ``every``, ``2 * every``, … counted from 1) trains on
    a batch of ``induction.copy_batch`` rows instead of the loop's own: ``batch_size`` rows of
    ``seq_len`` inputs, each a window of ``min_len..max_len`` uniformly random non-special ids
    repeated after a random gap, the loss on the second copy only. Measured (issue 12, bench
    learn's model): 350 steps of LM pre-training on reference episodes took a head that copied
    random ids at 4.96 nats (a 32-token row) to 11.37, worse than chance (8.3): the episodes'
    loss alone does not keep it. The batch of a mixed step is a function of (seed, step), so a
    resumed run sees the same rows. Their loss is logged as ``copy_loss`` (the step has no
    ``loss``). 0: no mixing.

    ``cue`` > 0 makes the rows *cued* (``induction.cued_rows``): each copy of the window follows
    the same key token and 0..``cue`` filler tokens, drawn apart for each copy, and the loss covers
    the whole second copy, its first token too. Predicting that first token means finding the
    key's earlier occurrence and reading past its fillers: the lookup a call's argument value
    needs ("whose name is Garden Queen Studio" → ``"name":"Garden Queen Studio"``), which plain
    repeat rows (whose first copied token nothing predicts) never train.

    ``lookup`` makes them *lookup rows* instead (``policy.lookup.lookup_batches``, wrapped as a
    request and a ``find_<entity>s`` call, facts in prose only, rows of at most ``seq_len + 1``
    tokens; the sizes ``min_len``/``max_len`` do not apply): the loss is on the argument values
    a call copies from the request, the skill the lookup warm-up (``bench learn``) trains and SFT
    would otherwise wash out. Needs a tokenizer.
    """

    model_config = ConfigDict(extra="forbid")

    every: int = Field(0, ge=0)
    batch_size: int = Field(16, ge=1)
    seq_len: int = Field(255, ge=3)
    min_len: int = Field(4, ge=2)
    max_len: int = Field(32, ge=2)
    cue: int = Field(0, ge=0, le=8)
    lookup: bool = False

    @model_validator(mode="after")
    def _windows_fit(self) -> CopyMix:
        from toolgym.policy.lookup import MIN_ROW_TOKENS

        if (self.lookup or self.cue) and not self.every:
            raise ValueError("cued or lookup rows need every > 0 (the mixed steps), or they are never drawn")
        if self.lookup and self.cue:
            raise ValueError("copy rows are cued repeats (cue) or lookup rows (lookup), not both")
        if self.lookup:  # min_len and max_len size repeat windows only
            if self.seq_len + 1 < MIN_ROW_TOKENS:
                raise ValueError(f"lookup rows need seq_len >= {MIN_ROW_TOKENS - 1}, not {self.seq_len}")
            return self
        copy = self.max_len + (self.cue + 1 if self.cue else 0)  # the longest copy: key and fillers too
        if self.min_len > self.max_len or 2 * copy > self.seq_len + 1:
            raise ValueError(
                f"copy windows {self.min_len}..{self.max_len} (plus key and {self.cue} fillers when cued) must "
                f"satisfy min <= max and 2 * longest copy <= seq_len + 1 = {self.seq_len + 1}"
            )
        return self

    def is_copy_step(self, step: int) -> bool:
        """Whether 0-based optimizer step ``step`` trains on repeat rows."""
        return self.every > 0 and (step + 1) % self.every == 0

    def main_batches_before(self, step: int) -> int:
        """How many of the loop's own batches steps 0..step-1 consumed (where a resumed run's data starts)."""
        return step - (step // self.every if self.every else 0)


class LMTrainConfig(BaseModel):
    """One training run's settings (validated; unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")

    stage: Stage = "dense"
    steps: int = Field(300, ge=1)
    batch_size: int = Field(8, ge=1)
    seq_len: int = Field(512, ge=2)
    lr: float = Field(3e-3, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)  # cosine floor as a fraction of lr
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    eval_every: int = Field(100, ge=1)
    eval_batches: int = Field(8, ge=1)
    checkpoint_every: int = Field(0, ge=0)  # 0: only at the end (when an out dir is given)
    bias_update_speed: float = Field(1e-3, ge=0)  # gamma of the router-bias rule
    index_loss_weight: float = Field(1.0, ge=0)  # scales the KL (only the indexer sees it)
    seed: int = Field(0, ge=0, lt=2**63)  # torch seeds are 64-bit
    copy_mix: CopyMix = Field(default_factory=CopyMix)  # repeat rows mixed in (default: none)


@dataclass
class Batch:
    """Inputs and targets for one step.

    Attributes:
        tokens: [B, S + 1] ids; inputs are tokens[:, :-1], targets tokens[:, 1:].
        loss_mask: optional [B, S] float weights on targets (SFT: 1 on assistant tokens).
        n_tokens: real (unpadded) input tokens, for tokens/s; None: all B * S.
        copy: repeat rows mixed in (``CopyMix``); the step's record names its loss ``copy_loss``.
    """

    tokens: Tensor
    loss_mask: Tensor | None = None
    n_tokens: int | None = None
    copy: bool = False  # repeat rows of ``CopyMix``: the record names the loss ``copy_loss``

    def to(self, device: torch.device) -> Batch:
        """This batch with its tensors on ``device`` (the model's; itself when they are there)."""
        if self.tokens.device == device:
            return self
        mask = self.loss_mask.to(device) if self.loss_mask is not None else None
        return replace(self, tokens=self.tokens.to(device), loss_mask=mask)


@dataclass
class TrainResult:
    """What a run produced: the final held-out numbers and the logged history."""

    val_loss: float
    val_index_loss: float | None
    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


#: ``LMTrainConfig`` fields a resumed run (``train lm``, ``train sft``) may change: the length of
#: the run and how often it is measured; the recorded settings leave them out.
RESUME_FREE = frozenset({"steps", "eval_every", "checkpoint_every"})


def check_resume(
    out: Path, kind: str, prior: dict[str, Any] | None, settings: dict[str, Any], steps: int, done: int, free: str
) -> None:
    """Refuse a resume that cannot go on (``train lm`` and ``train sft`` share the rule).

    Args:
        out: the run's output, named in the message.
        kind: the run's kind as the message says it ("an LM", "an SFT").
        prior: the resumed run's recorded settings (None: nothing recorded, nothing to compare).
        settings: this run's.
        steps: the steps asked for.
        done: the steps the resumed checkpoint holds.
        free: what the message says may change.

    Raises:
        ConfigError: ``steps`` below ``done`` (else a silent no-op that looked like success), or
            settings that differ from the recorded ones (named, sorted).
    """
    if done > steps:
        raise ConfigError(
            f"{out} holds {kind} run already at step {done}; --steps {steps} cannot shorten it "
            f"(--steps {done} or more resumes it), or use another --out"
        )
    if prior is not None:
        prior = _with_defaults(prior, LMTrainConfig().model_dump(mode="json", exclude=set(RESUME_FREE)))
    diff = [] if prior is None else sorted(k for k in prior.keys() | settings.keys() if prior.get(k) != settings.get(k))
    if diff:
        raise ConfigError(
            f"{out} holds {kind} run with different settings ({', '.join(diff)}); use another --out, "
            f"or the same settings to resume (only {free} may change)"
        )


def _with_defaults(prior: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``prior`` with the loop settings it lacks (nested ones too) set to their defaults.

    A checkpoint recorded before a setting existed ran with its default (``CopyMix.lookup`` was
    added after runs were recorded), so that is no difference to refuse a resume over.
    """
    out = dict(prior)
    for key, default in defaults.items():
        if key not in out:
            out[key] = default
        elif isinstance(default, dict) and isinstance(out[key], dict):
            out[key] = _with_defaults(out[key], default)
    return out


def encode_documents(tokenizer: Tokenizer, docs: Sequence[str]) -> Tensor:
    """One long [N] stream of documents, each preceded by ``<|bos|>``."""
    ids: list[int] = []
    for doc_ids in tokenizer.encode_batch(docs):
        ids.append(tokenizer.bos_id)
        ids.extend(doc_ids)
    return torch.tensor(ids, dtype=torch.long)


def random_windows(stream: Tensor, batch_size: int, seq_len: int, generator: torch.Generator) -> Iterator[Batch]:
    """Endless batches of random [seq_len + 1] windows of the stream."""
    if len(stream) < seq_len + 2:
        raise ConfigError(f"The token stream ({len(stream)} tokens) is shorter than one window ({seq_len + 1}).")
    while True:
        starts = torch.randint(0, len(stream) - seq_len - 1, (batch_size,), generator=generator)
        yield Batch(torch.stack([stream[s : s + seq_len + 1] for s in starts.tolist()]))


def fixed_windows(stream: Tensor, batch_size: int, seq_len: int, n_batches: int) -> list[Batch]:
    """Evenly spaced windows covering the stream: the same held-out batches every eval."""
    n = batch_size * n_batches
    if len(stream) < seq_len + 2:
        raise ConfigError(f"The held-out stream ({len(stream)} tokens) is shorter than one window ({seq_len + 1}).")
    starts = torch.linspace(0, len(stream) - seq_len - 1, n).long().tolist()
    rows = [stream[s : s + seq_len + 1] for s in starts]
    return [Batch(torch.stack(rows[i : i + batch_size])) for i in range(0, n, batch_size)]


def lm_loss(logits: Tensor, targets: Tensor, loss_mask: Tensor | None = None) -> Tensor:
    """Mean next-token cross-entropy over targets (weighted by loss_mask when given)."""
    nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    if loss_mask is None:
        return nll.mean()
    w = loss_mask.flatten().to(nll.dtype)
    return (nll * w).sum() / w.sum().clamp_min(1.0)


def _diverged(step: int, what: str, value: float, config: LMTrainConfig) -> TrainingDivergedError:
    """The error of a run whose ``what`` became ``value`` (NaN or infinite) at 1-based ``step``."""
    return TrainingDivergedError(
        f"training diverged at step {step}: {what} is {value}; nothing of this step was saved "
        f"(the last checkpoint, if any, is kept); lower --lr (peak {config.lr:g}, e.g. {config.lr / 10:g}) "
        "and start the run again"
    )


def _check_finite(step: int, values: dict[str, float | None], config: LMTrainConfig) -> None:
    """Raise ``TrainingDivergedError`` for the first NaN or infinite value (None: not computed)."""
    for what, value in values.items():
        if value is not None and not math.isfinite(value):
            raise _diverged(step, what, value, config)


def _check_finite_weights(model: Transformer, step: int, config: LMTrainConfig) -> None:
    """Raise ``TrainingDivergedError`` when a floating-point parameter or buffer holds NaN or inf."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise _diverged(step, f"weight {name}", float("nan"), config)


def _set_stage(model: Transformer, stage: Stage) -> list[torch.nn.Parameter]:
    """Switch attention mode and trainable set for a stage; return the parameters to optimise."""
    model.set_dense_attention(stage != "sparse")
    indexer = {id(p) for p in model.indexer_parameters()}
    for p in model.parameters():
        p.requires_grad_(stage != "indexer_warmup" or id(p) in indexer)
    return [p for p in model.parameters() if p.requires_grad]


@torch.no_grad()
def evaluate(model: Transformer, batches: Sequence[Batch], index_loss: bool = False) -> tuple[float, float | None]:
    """Mean held-out LM loss (and indexer KL when asked) over fixed batches (moved to the model's device)."""
    lm, kl, device = 0.0, 0.0, model.embed.weight.device
    for batch in (b.to(device) for b in batches):
        out = model(batch.tokens[:, :-1], index_loss=index_loss)
        lm += lm_loss(out.logits, batch.tokens[:, 1:], batch.loss_mask).item()
        kl += out.index_loss.item() if index_loss else 0.0
    return lm / len(batches), (kl / len(batches) if index_loss else None)


def _lr_at(step: int, config: LMTrainConfig) -> float:
    """The learning rate of optimizer step ``step`` (0-based): linear warm-up, then cosine decay to the floor."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    frac = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def _optimizer(params: list[torch.nn.Parameter], config: LMTrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (biases, norms and router biases are not decayed)."""
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        betas=(0.9, 0.95),
    )


def _progress_bar(stage: Stage, steps: int, done: int = 0) -> Progress:
    """A started rich progress bar of ``steps`` steps, ``done`` of them done (stop it with ``bar.stop()``)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn(f"{stage}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        transient=True,
    )
    bar.start()
    bar.add_task("train", total=steps, completed=done, info="")
    return bar


def _train_step(
    model: Transformer,
    opt: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    batch: Batch,
    config: LMTrainConfig,
    step: int,
) -> dict[str, float]:
    """One optimizer step of the stage (loss, backward, clip, update, router-bias rule).

    Raises:
        TrainingDivergedError: the loss or gradient norm is NaN or infinite (the weights are
            left as they were: the check comes before the optimizer step).

    Returns:
        The step's record: step (1-based), lr, loss (the LM loss, a masked mean under a loss
        mask), grad_norm, tokens (real input tokens), seconds (of the step), and index_kl when
        the stage computes the indexer KL (every stage but ``"dense"``).
    """
    t0 = time.perf_counter()
    warm = config.stage == "indexer_warmup"
    want_kl = config.stage != "dense"
    lr = _lr_at(step, config)
    for group in opt.param_groups:
        group["lr"] = lr
    out = model(batch.tokens[:, :-1], index_loss=want_kl)
    loss_lm = lm_loss(out.logits, batch.tokens[:, 1:], batch.loss_mask)
    kl = out.index_loss if want_kl else None
    if warm:
        assert kl is not None  # the warm-up stage computes the KL (want_kl)
        loss = kl
    else:
        loss = loss_lm + out.balance_loss + (config.index_loss_weight * kl if kl is not None else 0.0)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
    _check_finite(step + 1, {"loss": loss_lm.item(), "total loss": loss.item(), "grad_norm": gnorm.item()}, config)
    opt.step()
    if out.expert_load is not None and not warm and config.bias_update_speed > 0:
        model.update_router_bias(out.expert_load, config.bias_update_speed)
    record = {"step": step + 1, "lr": lr, "copy_loss" if batch.copy else "loss": loss_lm.item()}
    record["grad_norm"] = gnorm.item()
    n_tok = batch.n_tokens if batch.n_tokens is not None else batch.tokens[:, :-1].numel()
    record.update(tokens=float(n_tok), seconds=time.perf_counter() - t0)
    if kl is not None:
        record["index_kl"] = kl.item()
    return record


def _held_out_eval(
    model: Transformer,
    val: Sequence[Batch],
    index_loss: bool,
    extra_eval: Callable[[Transformer], dict[str, float]] | None,
    record: dict[str, float],
    config: LMTrainConfig,
) -> tuple[float, float | None]:
    """Evaluate in eval mode (back to train mode after) and add the numbers to the step's record.

    The record gains ``val_<k>`` for each of ``extra_eval``'s numbers, then ``val_loss``, then
    ``val_index_kl`` when ``index_loss``.

    Returns:
        (held-out LM loss, held-out indexer KL or None), as ``evaluate``.

    Raises:
        TrainingDivergedError: a held-out number is NaN or infinite (named with the step).
    """
    model.eval()
    val_loss, val_kl = evaluate(model, val, index_loss=index_loss)
    _check_finite(int(record["step"]), {"held-out loss": val_loss, "held-out indexer KL": val_kl}, config)
    if extra_eval is not None:
        record.update({f"val_{k}": v for k, v in extra_eval(model).items()})
    model.train()
    record["val_loss"] = val_loss
    if val_kl is not None:
        record["val_index_kl"] = val_kl
    return val_loss, val_kl


def _advance_bar(bar: Progress, record: dict[str, float], val_loss: float) -> None:
    """Advance the bar one step, showing tokens/s, the step's losses and the last held-out loss (if any)."""
    name = "loss" if "loss" in record else "copy_loss"
    info = f"{record['tokens'] / record['seconds']:.0f} tok/s {name} {record[name]:.3f}" + (
        f" kl {record['index_kl']:.3f}" if "index_kl" in record else ""
    )
    bar.update(bar.task_ids[0], advance=1, info=info + (f" val {val_loss:.3f}" if val_loss == val_loss else ""))


def _prepare(
    model: Transformer,
    config: LMTrainConfig,
    out_dir: Path | None,
    tokenizer: Tokenizer | None,
    optimizer_state: dict[str, Any] | None,
) -> tuple[list[torch.nn.Parameter], torch.optim.AdamW]:
    """Check the output, set the stage's trainable parameters, build (or restore) the optimizer.

    Raises:
        ConfigError: ``out_dir`` without a tokenizer; lookup rows (``CopyMix.lookup``) without a
            tokenizer or with one too small for them.
        CheckpointError: ``out_dir`` holds something other than a checkpoint.
    """
    if out_dir is not None and tokenizer is None:
        raise ConfigError("Saving checkpoints needs the tokenizer: pass tokenizer=... with out_dir.")
    if config.copy_mix.lookup and config.copy_mix.every:  # before the first step, not at the first mixed one
        from toolgym.policy.lookup import lookup_words

        if tokenizer is None:
            raise ConfigError("copy_mix.lookup needs a tokenizer (lookup rows are text)")
        lookup_words(tokenizer)
    if out_dir is not None:
        check_replaceable(out_dir)
    params = _set_stage(model, config.stage)
    model.train()
    opt = _optimizer(params, config)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
    return params, opt


def _next_batch(
    train: Iterator[Batch], config: LMTrainConfig, model: Transformer, tokenizer: Tokenizer | None, step: int
) -> Batch:
    """The batch of 0-based ``step``: repeat or lookup rows at a mixed step (``CopyMix``), else ``train``'s next."""
    mix = config.copy_mix
    if not mix.is_copy_step(step):
        return next(train)
    if mix.lookup:
        from toolgym.policy.lookup import lookup_batches

        assert tokenizer is not None  # _prepare refused lookup rows without one
        rows = lookup_batches(
            tokenizer, mix.batch_size, config.seed, json_share=0.0, json_decay_steps=0, wrap=True, start=step,
            max_tokens=mix.seq_len + 1,
        )  # fmt: skip
        return replace(next(rows), copy=True)
    from toolgym.policy.induction import copy_batch

    low = tokenizer.first_plain_id if tokenizer is not None else 0
    return copy_batch(config.copy_mix, low, model.config.vocab_size, config.seed, step)


def train_lm(
    model: Transformer,
    train: Iterator[Batch],
    val: Sequence[Batch],
    config: LMTrainConfig,
    *,
    tokenizer: Tokenizer | None = None,
    out_dir: Path | None = None,
    progress: bool = True,
    meta: dict[str, Any] | None = None,
    log: Callable[[dict[str, float]], None] | None = None,
    start_step: int = 0,
    optimizer_state: dict[str, Any] | None = None,
    extra_eval: Callable[[Transformer], dict[str, float]] | None = None,
) -> TrainResult:
    """Train ``model`` in place up to ``config.steps`` optimizer steps of the given stage.

    Args:
        model: the policy, trained on its weights' device (batches go there as they are drawn);
            its attention mode is set for the stage and left that way.
        train: endless batches (LM windows, SFT episodes) from ``copy_mix.main_batches_before(start_step)`` on.
        val: fixed held-out batches, evaluated every ``eval_every`` steps and at the end.
        config: the run's settings.
        tokenizer: saved with each checkpoint (required when ``out_dir`` is given).
        out_dir: checkpoint directory (written atomically; the latest replaces the previous).
        progress: show a rich progress bar.
        meta: extra JSON-able facts stored in checkpoints (e.g. the corpus source).
        log: called with each logged record (step, lr, losses).
        start_step: steps already done (a resumed run: ``model`` holds that checkpoint's
            weights and ``train`` starts at that step); the learning-rate schedule continues.
        optimizer_state: the resumed checkpoint's optimizer state (``load_optimizer_state``).
        extra_eval: called (in eval mode) at every held-out eval; its numbers join the record
            with a ``val_`` prefix (SFT: action validity and next-call accuracy).

    Returns:
        A ``TrainResult`` with the final held-out loss and the history (of this call's steps).

    Raises:
        CheckpointError: ``out_dir`` holds something other than a checkpoint (checked first).
        TrainingDivergedError: a step's loss, gradient norm, held-out numbers or weights became
            NaN or infinite; that step is not logged and no checkpoint is written for it.
    """
    params, opt = _prepare(model, config, out_dir, tokenizer, optimizer_state)
    start = start_step

    want_kl = config.stage != "dense"
    history: list[dict[str, float]] = []
    t_start = time.perf_counter()

    def checkpoint(step: int, val_loss: float) -> None:
        if out_dir is not None and tokenizer is not None:
            _check_finite_weights(model, step, config)
            facts = {"stage": config.stage, "step": step, "val_loss": val_loss, "train_config": config.model_dump()}
            save_checkpoint(out_dir, model, tokenizer, {**(meta or {}), **facts}, opt.state_dict())

    bar = _progress_bar(config.stage, config.steps, start) if progress else None
    try:
        val_loss, val_kl = float("nan"), None
        for step in range(start, config.steps):
            batch = _next_batch(train, config, model, tokenizer, step).to(model.embed.weight.device)
            record = _train_step(model, opt, params, batch, config, step)
            last = step + 1 == config.steps
            if (step + 1) % config.eval_every == 0 or last:
                val_loss, val_kl = _held_out_eval(model, val, want_kl, extra_eval, record, config)
            history.append(record)
            if log is not None:
                log(record)
            if bar is not None:
                _advance_bar(bar, record, val_loss)
            if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0 and not last:
                checkpoint(step + 1, val_loss)
        if start < config.steps:
            checkpoint(config.steps, val_loss)
    finally:
        if bar is not None:
            bar.stop()
        for p in model.parameters():
            p.requires_grad_(True)
        model.eval()
    return TrainResult(val_loss, val_kl, max(0, config.steps - start), time.perf_counter() - t_start, history)
