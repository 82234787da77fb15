"""Export a dataset to JSONL or Parquet rows that Hugging Face ``datasets`` loads as is.

An export is a directory with one file per split, ``train``, ``validation`` and ``test`` (``.jsonl``
or ``.parquet``), so ``datasets.load_dataset(str(directory))`` yields those three splits.

One row per task::

    task_id, env_id, family, world_id, difficulty, split,
    prompt       list of {role, content}: the system and user messages (chat-template ready)
    reference    list of OpenAI-style messages: the reference trajectory after the prompt
                 (assistant turns with reasoning_content and tool_calls, tool results)
    tools        JSON text of the OpenAI function schemas
    reference_answer, verifier, meta   JSON text
    turns, tool_calls                  ints

Every message carries the same keys (``role, content, reasoning_content, tool_calls,
tool_call_id, name``, null where absent) so the Arrow schema is the same on every row. Tool
schemas, verifier specs and metadata differ in shape between tools and families, so they are
JSON text rather than nested columns: a nested column would need the union of every tool's
parameters, and a type clash between two tools would make the whole file unloadable.

Parquet is written by DuckDB from the JSONL with explicit column types (no pyarrow needed).
The directory is built beside its final name and renamed into place, so an interrupted export
never leaves a partial file under the final name.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import duckdb

from toolgym.data.dataset import Dataset
from toolgym.envs.chat import messages_from_text
from toolgym.errors import ConfigError
from toolgym.spec import check_split

HF_SPLITS = {"train": "train", "val": "validation", "test": "test"}
"""toolgym split -> Hugging Face split name (the file name of that split in an export)."""
_MSG_KEYS = ("role", "content", "reasoning_content", "tool_calls", "tool_call_id", "name")
_MSG_TYPE = (
    'STRUCT(role VARCHAR, content VARCHAR, reasoning_content VARCHAR, tool_calls STRUCT(id VARCHAR, "type" VARCHAR, '
    '"function" STRUCT(name VARCHAR, arguments VARCHAR))[], tool_call_id VARCHAR, name VARCHAR)[]'
)
COLUMNS: dict[str, str] = {
    "task_id": "VARCHAR",
    "env_id": "VARCHAR",
    "family": "VARCHAR",
    "world_id": "VARCHAR",
    "difficulty": "INTEGER",
    "split": "VARCHAR",
    "prompt": "STRUCT(role VARCHAR, content VARCHAR)[]",
    "reference": _MSG_TYPE,
    "tools": "VARCHAR",
    "reference_answer": "VARCHAR",
    "verifier": "VARCHAR",
    "meta": "VARCHAR",
    "turns": "INTEGER",
    "tool_calls": "INTEGER",
}


def _message(m: dict[str, Any]) -> dict[str, Any]:
    out = {k: m.get(k) for k in _MSG_KEYS}
    if out["role"] == "assistant" and not out["tool_calls"]:
        out["tool_calls"] = []
    return out


def export_row(r: dict[str, Any]) -> dict[str, Any]:
    """One dataset row (task joined with trajectory) as an export row."""
    messages = (
        messages_from_text(r["system"], r["prompt"], json.loads(r["actions"]), json.loads(r["observations"]))
        if r["actions"]
        else []
    )
    return {
        "task_id": r["task_id"],
        "env_id": r["env_id"],
        "family": r["family"],
        "world_id": r["world_id"],
        "difficulty": r["difficulty"],
        "split": r["split"],
        "prompt": [{"role": "system", "content": r["system"]}, {"role": "user", "content": r["prompt"]}],
        "reference": [_message(m) for m in messages[2:]],
        "tools": r["tools"],
        "reference_answer": r["answer"],
        "verifier": r["verifier"],
        "meta": r["meta"],
        "turns": r["turns"],
        "tool_calls": r["tool_calls"],
    }


def _check_out(out: Path, fmt: str) -> None:
    """Refuse an ``out`` that is a file, looks like one, or is a directory holding other files."""
    if out.suffix in (".jsonl", ".json", ".parquet"):
        raise ConfigError(
            f"export writes a directory (train.{fmt}, validation.{fmt}, test.{fmt}); {str(out)!r} looks like a "
            f"file name: pass a directory, e.g. {str(out.with_suffix(''))!r}"
        )
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; export writes a directory (one {fmt} file per split)")
    ours = {f"{s}.{ext}" for s in HF_SPLITS.values() for ext in ("jsonl", "parquet")}
    others = sorted(p.name for p in out.iterdir() if p.name not in ours) if out.is_dir() else []
    if others:
        raise ConfigError(
            f"{out} holds other files ({', '.join(others[:3])}); export into a new or empty directory, "
            "since the export replaces the directory as a whole"
        )


def _to_parquet(jsonl: Path, parquet: Path) -> None:
    """Convert one export JSONL file to Parquet with the explicit column types of :data:`COLUMNS`."""
    con = duckdb.connect()
    try:
        cols = ", ".join(f"'{k}': '{v}'" for k, v in COLUMNS.items())
        target = str(parquet).replace("'", "''")  # COPY TO takes no parameter for the file
        con.execute(
            f"COPY (SELECT * FROM read_json(?, format='newline_delimited', columns={{{cols}}})) "
            f"TO '{target}' (FORMAT parquet)",
            [str(jsonl)],
        )
    finally:
        con.close()


def export(dataset: Path, out: Path, fmt: str = "jsonl", split: str | None = None) -> dict[str, int]:
    """Write the tasks of ``dataset`` (optionally one split) into the directory ``out``, one file per split.

    Files are ``train.<fmt>``, ``validation.<fmt>`` and ``test.<fmt>`` (Hugging Face's split names:
    toolgym's ``val`` is written as ``validation``; the rows' ``split`` column keeps toolgym's
    name), so ``datasets.load_dataset(str(out))`` yields those splits. A split without tasks gets
    no file. The whole directory is built beside ``out`` and renamed into place, replacing an
    earlier export there, so it never mixes two exports or holds a partial file.

    Args:
        dataset: The dataset file.
        out: The output directory (created; an earlier export in it is replaced).
        fmt: ``jsonl`` or ``parquet``.
        split: Only this split (``train``, ``val`` or ``test``); None for all.

    Returns:
        Rows written per Hugging Face split name, in the order train, validation, test.

    Raises:
        ConfigError: A bad format, split or output directory, or no task to export.
        DatasetError: The dataset cannot be read (missing, locked, corrupt).
    """
    if fmt not in ("jsonl", "parquet"):
        raise ConfigError(f"format must be jsonl or parquet, got {fmt!r}")
    check_split(split)
    out = Path(out)
    _check_out(out, fmt)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the export is an ordinary directory
    try:
        counts = {s: 0 for s in HF_SPLITS.values()}
        files: dict[str, Any] = {}
        try:
            with Dataset(dataset, read_only=True) as ds:
                for r in ds.rows(split=split):
                    name = HF_SPLITS[r["split"]]
                    if name not in files:
                        files[name] = open(tmp / f"{name}.jsonl", "w", encoding="utf-8")
                    files[name].write(json.dumps(export_row(r), ensure_ascii=False) + "\n")
                    counts[name] += 1
        finally:
            for f in files.values():
                f.close()
        if not files:
            raise ConfigError(f"{dataset} has no tasks{'' if split is None else f' in split {split!r}'} to export")
        if fmt == "parquet":
            for name in files:
                _to_parquet(tmp / f"{name}.jsonl", tmp / f"{name}.parquet")
                (tmp / f"{name}.jsonl").unlink()
        old = None
        if out.exists():
            old = out.with_name(tmp.name + ".old")
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {name: n for name, n in counts.items() if n}
