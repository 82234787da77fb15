"""Offline text corpora for LM pre-training and tokenizer training.

Nothing is ever downloaded. The default corpus is the Python standard library's own source
files: present on every Python install, permissively licensed (PSF), deterministic for a given
interpreter, and close in kind to what the policy reads and writes (code, JSON-ish literals,
English docstrings). Files are taken in sorted path order and split into train and held-out by a
hash of their content, so the split is stable, file-level, independent of how many bytes are
asked for, and duplicated files (the stdlib has a few) always land on the same side, so no
held-out text leaks into training. Test suites, vendored site-packages
and generated files are skipped. Later, toolgym's own synthesized trajectories can be added with
``Corpus.from_texts`` (the trajectory text already carries the chat markup).

This module does not import torch.
"""

from __future__ import annotations

import functools
import hashlib
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from toolgym.errors import ConfigError

_SKIP_PARTS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__", "lib2to3"}


@dataclass(frozen=True)
class Corpus:
    """Documents split into training and held-out lists, plus where they came from."""

    train: list[str]
    val: list[str]
    source: str

    @classmethod
    def from_texts(cls, texts: list[str], source: str, val_fraction: float = 0.05) -> Corpus:
        """Split arbitrary documents by a hash of their content (stable across runs)."""
        train, val = [], []
        for text in texts:
            (val if _in_val(text, val_fraction) else train).append(text)
        return cls(train, val, source)

    def n_bytes(self) -> int:
        """UTF-8 size of all documents."""
        return sum(len(t.encode("utf-8")) for t in self.train + self.val)


def _in_val(key: str, val_fraction: float) -> bool:
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < val_fraction


def stdlib_source_files() -> list[Path]:
    """The standard library's ``.py`` files in sorted order, minus tests and vendored code."""
    return list(_stdlib_source_files())


@functools.cache
def _stdlib_source_files() -> tuple[Path, ...]:
    # The walk takes ~0.6 s and the interpreter's stdlib does not change while it runs.
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in root.rglob("*.py") if not _SKIP_PARTS & set(p.relative_to(root).parts)]
    return tuple(sorted(files, key=lambda p: p.relative_to(root).as_posix()))


def stdlib_corpus(max_bytes: int = 8_000_000, val_fraction: float = 0.05) -> Corpus:
    """Build the default corpus from the standard library's source files.

    Args:
        max_bytes: stop adding files once this many UTF-8 bytes are collected (train + held-out)
            and both sides have at least one file.
        val_fraction: share of files (by content hash) held out for evaluation.

    Returns:
        A ``Corpus`` whose ``source`` names the interpreter, so results can be traced to it.

    Raises:
        ConfigError: if the standard library cannot be found or yields no text.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    train, val, total = [], [], 0
    for path in stdlib_source_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if not text.strip():
            continue
        (val if _in_val(text, val_fraction) else train).append(text)
        total += len(text.encode("utf-8"))
        if total >= max_bytes and train and val:  # small budgets still get a held-out file
            break
    if not train or not val:
        raise ConfigError(
            f"The standard library at {root} gave too little text for a corpus "
            f"({len(train)} train / {len(val)} held-out files); raise max_bytes."
        )
    version = ".".join(map(str, sys.version_info[:3]))
    return Corpus(train, val, f"python {version} stdlib sources at {root} ({total} bytes)")


def dataset_corpus(
    dataset: Path, train_split: str = "train", val_split: str = "val", family: str | None = None
) -> Corpus:
    """The reference episodes of a synthesized dataset as documents: the gym's own text.

    One document per reference trajectory, its pieces joined (``obs0 act1 obs1 …``, chat markup
    included), train documents from ``train_split`` and held-out ones from ``val_split``: the
    split is the dataset's (by world), never a hash, so no held-out world's text is trained on.
    A tokenizer trained on these compresses the gym's JSON schemas, ids and markup far better
    than one trained on Python source (``toolgym bench learn``: median domains d1–2 episode
    838 vs 1,354 tokens at vocabulary 4,096, with GPT-2's pre-tokenizer; ~1,090 with the
    space-free words of ``tokenizer.PRE_TOKENIZE``), and an LM trained on them learns the
    format the policy acts in.

    Raises:
        DatasetError: the dataset cannot be opened.
        ConfigError: a split has no reference trajectory.
    """
    from toolgym.data.dataset import Dataset

    docs: dict[str, list[str]] = {}
    with Dataset(dataset, read_only=True) as ds:
        for split in (train_split, val_split):
            docs[split] = ["".join(ds.trajectory(t).pieces()) for t in ds.task_ids(family, split=split)]
    empty = [s for s, d in docs.items() if not d]
    if empty:
        raise ConfigError(f"{dataset} has no reference trajectory in split {', '.join(empty)}")
    return Corpus(docs[train_split], docs[val_split], f"reference episodes of {dataset} ({train_split}/{val_split})")
