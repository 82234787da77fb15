"""Export a dataset to JSONL or Parquet rows that Hugging Face ``datasets`` loads as is.

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

Parquet is written by DuckDB from the JSONL with explicit column types (no pyarrow needed),
through a temporary file renamed into place, so an interrupted export never leaves a partial
file under the final name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import duckdb

from toolgym.envs.markup import messages_from_text
from toolgym.errors import ConfigError
from toolgym.synth.dataset import Dataset

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


def export(dataset: Path, out: Path, fmt: str = "jsonl", split: str | None = None) -> int:
    """Write every task of ``dataset`` (optionally one split) to ``out``; returns the row count."""
    if fmt not in ("jsonl", "parquet"):
        raise ConfigError(f"format must be jsonl or parquet, got {fmt!r}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_jsonl = out.with_name(out.name + ".tmp.jsonl")
    n = 0
    with Dataset(dataset, read_only=True) as ds, open(tmp_jsonl, "w", encoding="utf-8") as f:
        for r in ds.rows(split=split):
            f.write(json.dumps(export_row(r), ensure_ascii=False) + "\n")
            n += 1
    if n == 0:
        tmp_jsonl.unlink()
        raise ConfigError(f"{dataset} has no tasks{'' if split is None else f' in split {split!r}'} to export")
    if fmt == "jsonl":
        os.replace(tmp_jsonl, out)
        return n
    tmp_parquet = out.with_name(out.name + ".tmp.parquet")
    try:
        con = duckdb.connect()
        cols = ", ".join(f"'{k}': '{v}'" for k, v in COLUMNS.items())
        target = str(tmp_parquet).replace("'", "''")  # COPY TO takes no parameter for the file
        con.execute(
            f"COPY (SELECT * FROM read_json(?, format='newline_delimited', columns={{{cols}}})) "
            f"TO '{target}' (FORMAT parquet)",
            [str(tmp_jsonl)],
        )
        con.close()
        os.replace(tmp_parquet, out)
    finally:
        tmp_jsonl.unlink(missing_ok=True)
        tmp_parquet.unlink(missing_ok=True)
    return n
