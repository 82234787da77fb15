"""``toolgym train sft``: the SFT cold start on a dataset's reference trajectories.

The same loop as ``toolgym train lm`` (``train_lm.train_lm``), fed length-bucketed episode rows
whose loss mask covers only the action tokens (``sft_data``), so the loss is the masked mean
over the assistant's reasoning, calls and ``<|end|>``.

Layout of ``--out DIR``::

    DIR/checkpoint/   the policy checkpoint (atomic; with the optimizer state, for resuming)
    DIR/metrics.jsonl one JSON record per optimizer step (loss, lr, tokens, seconds, val_*)
    DIR/loss.png      train and held-out loss by step (rewritten at the end of every run)

A run whose ``DIR/checkpoint`` holds an SFT checkpoint resumes from it: weights, optimizer
state, step, and the batch order continue, and metric records past the checkpoint's step are
dropped before the new ones are appended. A resume must use the recorded settings
(``run_settings``: the dataset's resolved path and a digest of its encoded episodes, --init,
the val split, the fresh model's config and vocab size, and every loop setting); only --steps
(to extend the run) and the monitoring cadence and probes (eval_every, checkpoint_every,
action_prompts, max_new_tokens), which change no weight, may differ. Other settings are refused
with a ConfigError naming them, as ``toolgym synth`` and ``toolgym eval`` do. ``--out`` must be a
directory (or absent) whose ``checkpoint`` is absent or a checkpoint (``check_replaceable``).

Held-out numbers at every eval, on the val split: the masked loss, and on a few teacher-forced
val prompts (the reference context up to an assistant turn) the greedy first action's
``action_valid`` share (it parses without errors, ends with ``<|end|>``, makes at least one call
and every call validates against the task's toolset) and ``next_call_acc`` (its first call equals
the reference action's first call, name and arguments).
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from toolgym.envs import markup
from toolgym.errors import ConfigError
from toolgym.policy.model import ModelConfig, Transformer
from toolgym.policy.results import metrics_log
from toolgym.policy.sft_data import Episode, SFTData, load_episodes
from toolgym.policy.tokenizer import Tokenizer
from toolgym.policy.train_lm import RESUME_FREE, LMTrainConfig, TrainResult, check_resume, train_lm

if TYPE_CHECKING:
    from toolgym.data.dataset import Dataset

CHECKPOINT, METRICS, PLOT = "checkpoint", "metrics.jsonl", "loss.png"
RESUME_FREE_TEXT = "--steps and how often it evaluates, probes and saves"


def action_validity(
    model: Transformer,
    tokenizer: Tokenizer,
    prompts: list[tuple[list[int], str, Any]],
    max_new_tokens: int,
    batch_size: int = 8,
) -> dict[str, float]:
    """Greedy first actions on teacher-forced prompts: share valid and share with the right next call.

    Args:
        model: the policy (eval mode).
        tokenizer: its tokenizer.
        prompts: (context ids, reference action text, the task's ``Toolset``) triples.
        max_new_tokens: token budget of one generated action.
        batch_size: prompts per generation batch.

    Returns:
        {"action_valid": share in [0, 1], "next_call_acc": share in [0, 1]}.
    """
    from toolgym.policy.generate import SamplingParams, Session

    valid = right = 0
    params = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens)
    for i in range(0, len(prompts), batch_size):
        chunk = prompts[i : i + batch_size]
        session = Session(model, len(chunk), stop_ids=[tokenizer.end_id], pad_id=tokenizer.pad_id)
        session.append([ids for ids, _, _ in chunk])
        turns = session.generate(params, torch.Generator().manual_seed(0))
        for (_, ref, toolset), turn in zip(chunk, turns, strict=True):
            assert turn is not None
            got = markup.parse_action(tokenizer.decode(turn.tokens.tolist()))
            ok = got.ended and not got.errors and bool(got.tool_calls)
            valid += ok and all(not isinstance(toolset.validate(c.name, c.arguments), str) for c in got.tool_calls)
            want = markup.parse_action(ref).tool_calls
            right += bool(got.tool_calls and want and got.tool_calls[0] == want[0])
    n = max(1, len(prompts))
    return {"action_valid": valid / n, "next_call_acc": right / n}


def turn_prompts(episodes: list[Episode], tokenizer: Tokenizer, n: int) -> list[tuple[list[int], str, str]]:
    """Up to n evenly spaced (context ids, reference action, task id) over every turn of the episodes."""
    out = []
    for ep in episodes:
        i = 0
        while i < len(ep.ids):
            if ep.mask[i]:
                j = i
                while j < len(ep.ids) and ep.mask[j]:
                    j += 1
                out.append((ep.ids[:i], tokenizer.decode(ep.ids[i:j]), ep.task_id))
                i = j
            else:
                i += 1
    if len(out) <= n:
        return out
    return [out[round(k * (len(out) - 1) / max(1, n - 1))] for k in range(n)]


def plot_losses(metrics: Path, png: Path) -> None:
    """Train loss, held-out loss and (right axis) action validity / next-call accuracy by step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
    fig, ax = plt.subplots(figsize=(7, 4))
    main = [r for r in records if "loss" in r]
    ax.plot([r["step"] for r in main], [r["loss"] for r in main], label="train (action tokens)", lw=1)
    copy = [r for r in records if "copy_loss" in r]
    if copy:  # the repeat rows of LMTrainConfig.copy_mix
        ax.plot([r["step"] for r in copy], [r["copy_loss"] for r in copy], ".", ms=2, label="train (copy rows)")
    val = [r for r in records if "val_loss" in r]
    if val:
        ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="val")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title("SFT cold start")
    ax.legend(loc="upper center")
    shares = [r for r in val if "val_action_valid" in r]
    if shares:  # held-out action validity and next-call accuracy on a second axis
        ax2 = ax.twinx()
        steps = [r["step"] for r in shares]
        ax2.plot(steps, [r["val_action_valid"] for r in shares], "s--", color="tab:green", label="val action valid")
        ax2.plot(steps, [r["val_next_call_acc"] for r in shares], "^--", color="tab:red", label="val next-call acc")
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("share of val prompts")
        ax2.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def _start(
    out: Path,
    init: Path | None,
    model_config: ModelConfig | None,
    texts: Callable[[], list[str]],
    config: LMTrainConfig,
    vocab_size: int,
    device: str,
) -> tuple[Transformer, Tokenizer, int, dict[str, Any] | None, dict[str, Any] | None]:
    """(model on ``device``, tokenizer, step done, optimizer state, recorded settings): resume, --init, or fresh.

    The recorded settings are the resumed checkpoint's ``run_settings`` (None: not a resume, or a
    checkpoint written before settings were recorded). A fresh model is built on the CPU (seeded
    by ``config.seed``) and then moved, so its weights do not depend on the device.
    """
    from toolgym.policy.checkpoint import load_checkpoint, load_optimizer_state

    ck_dir = out / CHECKPOINT
    if ck_dir.exists():
        ck = load_checkpoint(ck_dir, device=device)
        if ck.meta.get("kind") != "sft":
            raise ConfigError(f"{ck_dir} holds a checkpoint that is not an SFT run's; pick another --out")
        step = int(ck.meta.get("step", 0))
        return ck.model, ck.tokenizer, step, load_optimizer_state(ck_dir), ck.meta.get("settings")
    if init is not None:
        ck = load_checkpoint(init, device=device)
        return ck.model, ck.tokenizer, 0, None, None
    tokenizer = Tokenizer.train(texts(), vocab_size)
    model = Transformer(replace(model_config or ModelConfig(), vocab_size=tokenizer.vocab_size), seed=config.seed)
    return model.to(device), tokenizer, 0, None, None


def _check_out(out: Path) -> None:
    """Refuse an ``--out`` that is a file, or whose ``checkpoint`` is not a checkpoint, before any work.

    Raises:
        ConfigError: ``out`` exists and is not a directory.
        CheckpointError: ``out/checkpoint`` holds something other than a checkpoint.
    """
    from toolgym.policy.checkpoint import check_replaceable

    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file, not an SFT run directory; pick another --out or move it away")
    check_replaceable(out / CHECKPOINT)


def episodes_digest(*splits: list[Episode]) -> str:
    """16 hex digits of the encoded episodes (task ids, token ids, masks): the data's content id."""
    h = hashlib.sha256()
    for episodes in splits:
        h.update(b"\x00split")
        for ep in episodes:
            h.update(ep.task_id.encode() + b"\x00")
            h.update(array("q", ep.ids).tobytes() + array("b", ep.mask).tobytes())
    return h.hexdigest()[:16]


def run_settings(
    dataset: Path,
    init: Path | None,
    val_split: str,
    config: LMTrainConfig,
    model_config: ModelConfig | None,
    vocab_size: int,
    digest: str,
) -> dict[str, Any]:
    """The settings a resume must share with the run it resumes (as JSON reads them back).

    ``model`` and ``vocab_size`` describe the fresh model (None with ``init``); the loop settings
    are all of ``config`` but ``RESUME_FREE``.
    """
    settings = {
        "dataset": str(dataset.resolve()),
        "data": digest,
        "init": str(init.resolve()) if init else None,
        "val_split": val_split,
        "model": None if init else (model_config or ModelConfig()).to_dict(),
        "vocab_size": None if init else vocab_size,
        **config.model_dump(exclude=set(RESUME_FREE)),
    }
    return dict(json.loads(json.dumps(settings)))  # tuples become lists, as in a loaded checkpoint


def _check_splits(ds: Dataset, dataset: Path, val_split: str) -> None:
    """Raise ConfigError unless both the train split and ``val_split`` hold tasks."""
    for split in ("train", val_split):
        if not ds.task_ids(split=split):
            raise ConfigError(f"dataset {dataset} has no tasks in the {split!r} split")


def _run_meta(
    dataset: Path, init: Path | None, val_split: str, data: SFTData, settings: dict[str, Any]
) -> dict[str, Any]:
    """The facts an SFT run stores in its checkpoints (``kind`` "sft" marks it resumable)."""
    return {
        "kind": "sft",
        "settings": settings,
        "dataset": str(dataset),
        "init": str(init) if init else None,
        "val_split": val_split,
        "truncated": data.truncated,
        "dropped": data.dropped,
    }


def _episode_data(
    ds: Dataset, val_split: str, tokenizer: Tokenizer, config: LMTrainConfig
) -> tuple[SFTData, SFTData, list[Episode]]:
    """(train data, held-out data, the held-out episodes in dataset order) of the run.

    Raises:
        ConfigError: no episode of a split fits ``config.seq_len``.
    """
    train, cut, drop = load_episodes(ds, "train", tokenizer, config.seq_len)
    val_eps, vcut, vdrop = load_episodes(ds, val_split, tokenizer, config.seq_len)
    if not train or not val_eps:
        which = "train" if not train else val_split
        raise ConfigError(f"no {which} episode fits seq_len {config.seq_len}; raise --seq-len")
    data = SFTData(train, config.batch_size, config.seq_len, tokenizer.pad_id, cut, drop)
    held = SFTData(val_eps, config.batch_size, config.seq_len, tokenizer.pad_id, vcut, vdrop)
    return data, held, val_eps


def _with_toolsets(ds: Dataset, prompts: list[tuple[list[int], str, str]]) -> list[tuple[list[int], str, Any]]:
    """Replace each prompt's task id by its task's ``Toolset`` (one per family and tool config)."""
    import toolgym
    from toolgym.envs.tools import Toolset

    toolsets: dict[str, Any] = {}
    out = []
    for ids, ref, task_id in prompts:
        task = ds.task(task_id)
        key = task.family + repr(sorted(task.tool_config.items()))
        if key not in toolsets:
            toolsets[key] = Toolset(toolgym.family(task.family).tools(task.tool_config))
        out.append((ids, ref, toolsets[key]))
    return out


def train_sft(
    dataset: Path,
    out: Path,
    config: LMTrainConfig,
    *,
    init: Path | None = None,
    model_config: ModelConfig | None = None,
    vocab_size: int = 4096,
    val_split: str = "val",
    action_prompts: int = 16,
    max_new_tokens: int = 256,
    progress: bool = True,
    log: Callable[[dict[str, float]], None] | None = None,
    device: str = "cpu",
) -> tuple[TrainResult, SFTData]:
    """Run (or resume) the SFT cold start; see the module docstring for the layout of ``out``.

    Args:
        dataset: a synthesized dataset (``toolgym synth``).
        out: the run directory.
        config: the loop's settings (``batch_size`` rows and ``seq_len`` tokens per row at most).
        init: an LM checkpoint to start from; None: a fresh model, its tokenizer trained on the train split.
        model_config: config of a fresh model (default ``ModelConfig()``).
        vocab_size: tokenizer size of a fresh model.
        val_split: the held-out split.
        action_prompts: teacher-forced val prompts for the action-validity numbers (0: none).
        max_new_tokens: token budget of each of those generated actions.
        progress: show a progress bar.
        log: called with each record (after it is appended to metrics.jsonl).
        device: where the model trains (as ``pretrain``'s; a run may resume on another).

    Returns:
        The loop's result and the training data (its counts of truncated and dropped episodes).

    Raises:
        DatasetError: the dataset cannot be opened.
        ConfigError: a split has no reference trajectories, ``out`` is a file or holds another
            kind of run, or one with other settings (``run_settings``) or past ``config.steps``.
        CheckpointError: ``out/checkpoint`` holds something other than a checkpoint.
        TrainingDivergedError: the run diverged (``train_lm``); the last checkpoint is kept.
    """
    from toolgym.data.dataset import Dataset

    _check_out(out)
    with Dataset(dataset, read_only=True) as ds:
        _check_splits(ds, dataset, val_split)

        def texts() -> list[str]:
            return [ds.trajectory(t).text for t in ds.task_ids(split="train")]

        model, tokenizer, start, opt_state, prior = _start(out, init, model_config, texts, config, vocab_size, device)
        data, held, val_eps = _episode_data(ds, val_split, tokenizer, config)
        digest = episodes_digest(data.episodes, held.episodes)
        settings = run_settings(dataset, init, val_split, config, model_config, vocab_size, digest)
        check_resume(out, "an SFT", prior, settings, config.steps, start, RESUME_FREE_TEXT)
        prompts = _with_toolsets(ds, turn_prompts(val_eps, tokenizer, action_prompts))

    out.mkdir(parents=True, exist_ok=True)
    metrics, held_batches = out / METRICS, [held.batch(g) for g in range(len(held.groups))][: config.eval_batches]

    def extra(m: Transformer) -> dict[str, float]:
        return action_validity(m, tokenizer, prompts, max_new_tokens) if prompts else {}

    result = train_lm(
        model,
        data.batches(config.seed, config.copy_mix.main_batches_before(start)),
        held_batches,
        config,
        tokenizer=tokenizer,
        out_dir=out / CHECKPOINT,
        progress=progress,
        meta=_run_meta(dataset, init, val_split, data, settings),
        log=metrics_log(metrics, start, log),
        start_step=start,
        optimizer_state=opt_state,
        extra_eval=extra,
    )
    if metrics.read_text(encoding="utf-8").strip():
        plot_losses(metrics, out / PLOT)
    return result, data
