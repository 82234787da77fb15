"""``toolgym train lm``: LM pre-training on an offline corpus, checkpointed and resumable.

The loop is ``train_lm.train_lm``; this module owns the run around it: the corpus (the standard
library's source by default, or ``corpus.dataset_corpus``'s episodes), a fresh tokenizer and
model or ``init``'s, and resuming.

**Resuming** (the rule of ``toolgym train sft``): an ``out_dir`` that holds an LM run's checkpoint
(``meta["kind"] == "lm"``) continues it: weights, optimizer state, step, and the batch order
(the random windows of the steps already done are drawn and skipped, so an interrupted run and
an uninterrupted one see the same batches). The resumed run must have the recorded settings
(``lm_settings``: the corpus's source and a digest of its encoded tokens, ``init``, the fresh
model's config and vocabulary size, every loop setting but the free ones); only ``steps`` (to
extend the run), ``eval_every`` and ``checkpoint_every`` may differ. Other settings, or a
checkpoint that is not an LM run's (an SFT checkpoint, or one written before runs were
recorded), are refused with a ``ConfigError`` naming them: a checkpoint is never silently
replaced by an unrelated run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from toolgym.errors import ConfigError
from toolgym.policy.checkpoint import check_replaceable
from toolgym.policy.corpus import Corpus
from toolgym.policy.model import ModelConfig, Transformer
from toolgym.policy.results import metrics_log
from toolgym.policy.tokenizer import Tokenizer
from toolgym.policy.train_lm import (
    RESUME_FREE,
    LMTrainConfig,
    TrainResult,
    check_resume,
    encode_documents,
    fixed_windows,
    random_windows,
)

KIND = "lm"


def lm_settings(
    corpus: Corpus,
    tokens: tuple[Tensor, Tensor],
    init: Path | None,
    config: LMTrainConfig,
    model_config: ModelConfig | None,
    vocab_size: int,
) -> dict[str, Any]:
    """The settings a resume must share with the run it resumes (as JSON reads them back).

    ``tokens`` are the encoded (train, val) streams: their digest pins the corpus's content and
    the tokenizer together. ``model`` and ``vocab_size`` describe the fresh model (None with ``init``).
    """
    h = hashlib.sha256()
    for stream in tokens:
        h.update(b"\x00stream" + stream.numpy().tobytes())
    settings = {
        "corpus": corpus.source,
        "tokens": h.hexdigest()[:16],
        "init": str(init.resolve()) if init else None,
        "model": None if init else (model_config or ModelConfig()).to_dict(),
        "vocab_size": None if init else vocab_size,
        **config.model_dump(exclude=set(RESUME_FREE)),
    }
    return dict(json.loads(json.dumps(settings)))  # tuples become lists, as in a loaded checkpoint


def _start(
    out_dir: Path, init: Path | None, model_config: ModelConfig | None, corpus: Corpus, vocab_size: int, seed: int
) -> tuple[Transformer, Tokenizer, int, dict[str, Any] | None, dict[str, Any] | None]:
    """(model, tokenizer, step done, optimizer state, the resumed checkpoint's meta): resume, ``init``, or fresh.

    Raises:
        ConfigError: ``out_dir`` holds a checkpoint that is not a resumable LM run's.
    """
    from toolgym.policy.checkpoint import load_checkpoint, load_optimizer_state

    if out_dir.exists() and any(out_dir.iterdir()):
        ck = load_checkpoint(out_dir)
        if ck.meta.get("kind") != KIND:
            raise ConfigError(
                f"{out_dir} holds a checkpoint that is not a resumable LM run's (an SFT or GRPO checkpoint, or "
                "one written before runs were recorded); pick another --out, or remove it to start over"
            )
        return ck.model, ck.tokenizer, int(ck.meta["step"]), load_optimizer_state(out_dir), ck.meta
    if init is not None:
        ck = load_checkpoint(init)
        return ck.model, ck.tokenizer, 0, None, None
    tokenizer = Tokenizer.train(corpus.train, vocab_size)
    model = Transformer(replace(model_config or ModelConfig(), vocab_size=tokenizer.vocab_size), seed=seed)
    return model, tokenizer, 0, None, None


def pretrain(
    out_dir: Path,
    config: LMTrainConfig,
    *,
    init: Path | None = None,
    model_config: ModelConfig | None = None,
    corpus_bytes: int = 8_000_000,
    vocab_size: int = 4096,
    progress: bool = True,
    log: Callable[[dict[str, float]], None] | None = None,
    corpus: Corpus | None = None,
    metrics: Path | None = None,
    device: str = "cpu",
) -> TrainResult:
    """Train (or resume training) on an offline corpus, checkpointing to ``out_dir``.

    Args:
        out_dir: checkpoint directory (the final and periodic checkpoints replace each other);
            one that holds this run's checkpoint resumes it (module docstring).
        config: the run (its ``stage`` picks dense pre-training, indexer warm-up or sparse).
        init: start from this checkpoint (model and tokenizer); otherwise a tokenizer is
            trained on the corpus and a fresh model is built.
        model_config: config of a fresh model (default ``ModelConfig()``; its vocab_size is set
            to the tokenizer's).
        corpus_bytes: size of the standard-library corpus (see ``corpus.stdlib_corpus``).
        vocab_size: tokenizer size when training one.
        progress: show a progress bar.
        log: called with each logged record.
        corpus: the documents to train on (and to train a fresh tokenizer on), e.g.
            ``corpus.dataset_corpus``'s episodes; None: ``stdlib_corpus(corpus_bytes)``.
        metrics: a JSONL file that gets every record (``results.metrics_log``: on a resume,
            records past the checkpoint's step are dropped first).
        device: where the model trains (``cpu``, ``cuda``, ``cuda:1``; a fresh model is built
            on the CPU first, so its weights do not depend on it). A run may resume on another.

    Returns:
        The ``TrainResult`` of this call's steps (none when the checkpoint is already at ``steps``).

    Raises:
        CheckpointError: ``out_dir`` holds something other than a checkpoint (checked before
            any work), or ``init`` or the checkpoint to resume is not a valid checkpoint.
        ConfigError: ``out_dir`` holds another run (module docstring), or this run already past ``steps``.
        TrainingDivergedError: the run diverged (see ``train_lm``).
    """
    from toolgym.policy.corpus import stdlib_corpus
    from toolgym.policy.train_lm import train_lm

    check_replaceable(out_dir)
    corpus = corpus or stdlib_corpus(corpus_bytes)
    model, tokenizer, step, opt_state, prior = _start(out_dir, init, model_config, corpus, vocab_size, config.seed)
    model.to(device)
    train, val = encode_documents(tokenizer, corpus.train), encode_documents(tokenizer, corpus.val)
    settings = lm_settings(corpus, (train, val), init, config, model_config, vocab_size)
    free = "--steps and how often it evaluates and saves"
    check_resume(out_dir, "an LM", (prior or {}).get("settings"), settings, config.steps, step, free)
    if prior is not None and step == config.steps:  # finished: nothing to do; its held-out loss, not NaN
        return TrainResult(float(prior.get("val_loss", float("nan"))), None, 0, 0.0)
    batches = random_windows(train, config.batch_size, config.seq_len, torch.Generator().manual_seed(config.seed))
    for _ in range(config.copy_mix.main_batches_before(step)):
        next(batches)  # the windows of the steps already done
    if metrics is not None:
        log = metrics_log(metrics, step, log)
    return train_lm(
        model,
        batches,
        fixed_windows(val, config.batch_size, config.seq_len, config.eval_batches),
        config,
        tokenizer=tokenizer,
        out_dir=out_dir,
        progress=progress,
        meta={"kind": KIND, "settings": settings, "corpus": corpus.source, "init": str(init) if init else None},
        log=log,
        start_step=step,
        optimizer_state=opt_state,
    )
