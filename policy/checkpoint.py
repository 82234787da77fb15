"""Policy checkpoints: a directory with safetensors weights, config JSON and the tokenizer.

Layout of ``<dir>/``::

    model.safetensors   every parameter and persistent buffer (router biases included)
    config.json         {"format", "model": ModelConfig fields, "weights_sha256", "meta": {...}}
    tokenizer.json      the tokenizers-library serialisation

Writes are atomic: everything goes into a hidden temporary sibling directory, is flushed, and
the directory is swapped with the old one in one step (``renameat2(RENAME_EXCHANGE)``; a plain
rename where there is none yet), so a crash leaves either the old checkpoint or the new one at the
path, never a mix and never nothing. What a killed save leaves beside it is swept by the next
writer (``check_replaceable``). Only a toolgym checkpoint (or an empty directory) is ever replaced:
``check_replaceable`` refuses any other file or directory at the target, so a mistyped
``--out`` cannot delete a user's files. Loading checks, in order, that the files exist, that
the config parses and matches this code's ``ModelConfig``, that the weights' SHA-256 matches
(catches truncation and corruption), that tensor names and shapes match the model the config
builds, and that the tokenizer fits the vocabulary; each failure raises ``CheckpointError`` with a sentence naming it.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from toolgym.errors import CheckpointError, ToolgymError
from toolgym.policy.model import ModelConfig, Transformer
from toolgym.policy.tokenizer import Tokenizer

FORMAT = "toolgym-policy/1"
WEIGHTS, CONFIG, TOKENIZER = "model.safetensors", "config.json", "tokenizer.json"
OPTIMIZER = "optimizer.pt"  # optional: the optimizer state a resumed training run continues from
FILES = frozenset({WEIGHTS, CONFIG, TOKENIZER, OPTIMIZER})  # everything a checkpoint directory holds


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (eval mode), its tokenizer, and free-form metadata."""

    model: Transformer
    tokenizer: Tokenizer
    meta: dict[str, Any] = field(default_factory=dict)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _has_checkpoint_config(path: Path) -> bool:
    """Whether ``path/config.json`` is JSON of this module's checkpoint format."""
    try:
        config = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(config, dict) and config.get("format") == FORMAT


def check_replaceable(path: Path | str) -> None:
    """Refuse a checkpoint target that holds anything but a toolgym checkpoint.

    Replaceable: nothing at ``path``, an empty directory, or a directory holding only checkpoint
    files whose ``config.json`` has this format (weights may be corrupt: a broken checkpoint is
    still ours to replace). Anything else (a plain file, a symbolic link, a directory with other
    files or without a checkpoint config) would be deleted by the atomic replace, so it is refused.
    Every writer calls this before any work, so it first finishes what a killed save to ``path``
    left behind (``_sweep``): a resume then finds the last checkpoint where it belongs.

    Raises:
        CheckpointError: naming the path and what is there.
    """
    path = Path(path)
    refuse = "refusing to replace it; pick another path or move it away"
    if path.is_symlink():
        raise CheckpointError(f"{path} is a symbolic link, not a checkpoint directory; {refuse}.")
    if path.parent.is_dir():
        _sweep(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise CheckpointError(f"{path} is a file, not a checkpoint directory; {refuse}.")
    names = sorted(p.name for p in path.iterdir())
    if not names:
        return
    foreign = [n for n in names if n not in FILES]
    if foreign:
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise CheckpointError(f"{path} holds files that are not a checkpoint's ({shown}); {refuse}.")
    if not _has_checkpoint_config(path):
        raise CheckpointError(f"{path} is not a toolgym checkpoint (no {CONFIG} of format {FORMAT!r}); {refuse}.")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``, glibc >= 2.28).

    Returns False, having done nothing, where the C library, kernel or filesystem lacks it.

    Raises:
        OSError: the swap failed for another reason.
    """
    rename2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if rename2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if rename2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(err, os.strerror(err), str(a))


def _sweep(path: Path) -> None:
    """Delete what killed saves to ``path`` left; a lone previous checkpoint goes back in place.

    The leftovers are ``.NAME.tmp-*`` siblings (a new checkpoint unfinished, or the old one swapped
    out) and ``.NAME.old-*`` ones (the fallback swap's old checkpoint). Only one process may write
    a checkpoint path at a time (as before: two would replace each other).
    """
    name = glob.escape(path.name)
    olds = sorted(path.parent.glob(f".{name}.old-*"), key=lambda p: p.stat().st_mtime)
    if olds and not path.exists() and _has_checkpoint_config(olds[-1]):
        olds.pop().rename(path)  # killed between the two renames of the fallback swap
    for junk in [*olds, *path.parent.glob(f".{name}.tmp-*")]:
        shutil.rmtree(junk, ignore_errors=True)


def save_checkpoint(
    path: Path | str,
    model: Transformer,
    tokenizer: Tokenizer,
    meta: dict[str, Any] | None = None,
    optimizer_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory atomically (replacing a checkpoint already there, nothing else).

    Args:
        path: the checkpoint directory.
        model: the policy; its config (including the current dense/sparse switch) is recorded.
        tokenizer: saved alongside, so a checkpoint is self-contained.
        meta: JSON-able extras (training step, losses, corpus description, ...).
        optimizer_state: an optimizer's ``state_dict()``, written as ``optimizer.pt`` in the
            same atomic move (read back with ``load_optimizer_state``).

    Returns:
        The checkpoint directory.

    Raises:
        CheckpointError: something other than a checkpoint is at ``path`` (``check_replaceable``).
    """
    path = Path(path)
    check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS), metadata={"format": FORMAT})
        tokenizer.save(tmp / TOKENIZER)
        shutil.copymode(tmp / TOKENIZER, tmp / WEIGHTS)  # safetensors writes 0600; the others follow the umask
        config = {
            "format": FORMAT,
            "model": model.config.to_dict(),
            "weights_sha256": _sha256(tmp / WEIGHTS),
            "meta": meta or {},
        }
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
        names = [WEIGHTS, TOKENIZER, CONFIG]
        if optimizer_state is not None:
            torch.save(optimizer_state, tmp / OPTIMIZER)
            names.append(OPTIMIZER)
        for name in names:
            with (tmp / name).open("rb") as f:
                os.fsync(f.fileno())
        old = None
        if path.exists() and _exchange(tmp, path):  # no moment without a checkpoint at path
            old = tmp
        else:
            if path.exists():  # fallback: a kill between these renames is undone by the next _sweep
                old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
                path.rename(old)
            tmp.rename(path)
        _fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_checkpoint(path: Path | str, device: torch.device | str = "cpu") -> Checkpoint:
    """Load and validate a checkpoint directory.

    Raises:
        CheckpointError: naming the missing file, unreadable config, config mismatch, checksum
            mismatch (truncated or corrupt weights), missing/unexpected/mis-shaped tensors, or a
            tokenizer that does not fit the vocabulary.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"No checkpoint directory at {path}.")
    missing = [n for n in (WEIGHTS, CONFIG, TOKENIZER) if not (path / n).is_file()]
    if missing:
        raise CheckpointError(f"Checkpoint {path} is incomplete: missing {', '.join(missing)}.")
    try:
        config = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"Checkpoint {path}: {CONFIG} is not valid JSON ({exc}).") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        got = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise CheckpointError(f"Checkpoint {path}: {CONFIG} has format {got!r}, expected {FORMAT!r}.")
    try:
        model_config = ModelConfig.from_dict(config.get("model", {}))
    except (ToolgymError, TypeError) as exc:
        raise CheckpointError(f"Checkpoint {path}: {CONFIG} does not describe a valid model: {exc}") from exc

    digest = _sha256(path / WEIGHTS)
    if config.get("weights_sha256") not in (None, digest):
        size = (path / WEIGHTS).stat().st_size
        raise CheckpointError(
            f"Checkpoint {path}: {WEIGHTS} ({size} bytes) does not match the checksum in "
            f"{CONFIG}; the file is truncated or corrupt."
        )
    try:
        state = load_file(str(path / WEIGHTS), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"Checkpoint {path}: {WEIGHTS} is unreadable (truncated or corrupt): {exc}") from exc

    model = Transformer(model_config, device=device)
    expected = model.state_dict()
    problems = []
    if absent := sorted(set(expected) - set(state)):
        problems.append(f"missing tensors {absent[:5]}{' ...' if len(absent) > 5 else ''}")
    if extra := sorted(set(state) - set(expected)):
        problems.append(f"unexpected tensors {extra[:5]}{' ...' if len(extra) > 5 else ''}")
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs config {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if shapes:
        problems.append(f"shape mismatches {shapes[:5]}{' ...' if len(shapes) > 5 else ''}")
    if problems:
        raise CheckpointError(f"Checkpoint {path}: weights do not match {CONFIG}: " + "; ".join(problems) + ".")
    model.load_state_dict(state)
    model.eval()

    tokenizer = Tokenizer.load(path / TOKENIZER)
    if tokenizer.vocab_size > model_config.vocab_size:
        raise CheckpointError(
            f"Checkpoint {path}: tokenizer has {tokenizer.vocab_size} ids but the model's "
            f"vocab_size is {model_config.vocab_size}."
        )
    return Checkpoint(model, tokenizer, dict(config.get("meta", {})))


def load_optimizer_state(path: Path | str) -> dict[str, Any] | None:
    """The optimizer state saved with a checkpoint, or None when it has none.

    Raises:
        CheckpointError: the file exists but is unreadable.
    """
    file = Path(path) / OPTIMIZER
    if not file.is_file():
        return None
    try:
        return dict(torch.load(file, map_location="cpu", weights_only=True))
    except Exception as exc:  # torch raises RuntimeError, pickle errors, EOFError on truncation
        raise CheckpointError(f"Checkpoint {path}: {OPTIMIZER} is unreadable (truncated or corrupt): {exc}") from exc
