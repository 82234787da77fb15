"""An eval's output directory: ``results.jsonl``, ``summary.json``, and resuming an interrupted eval.

Layout of ``--out DIR`` (``toolgym eval``)::

    results.jsonl   one JSON line per episode (:class:`~toolgym.policy.runner.EpisodeRecord`),
                    appended and flushed as each episode ends
    summary.json    toolgym version, family ids and versions, the policy (name, options, version),
                    the settings, and, once the eval is complete, the pass@k / pass^k table
    report.md       the report, with its PNG plots (:mod:`toolgym.policy.report`)

Resume: :func:`open_run` on a directory that already holds an eval checks that its settings are
the ones asked for (else one :class:`~toolgym.errors.ConfigError` naming each that differs) and
returns the episodes it holds, keyed by ``(task_id, sample)``, so the caller skips them. A last
line cut short (the process killed mid-write: no newline, or not JSON) is dropped from the file and
its episode is run again; a bad line anywhere else is corruption, refused with its line number.

The default directory is ``runs/eval/<policy>-<8 hex digits of the settings' hash>``: the same
command always lands in the same place (and so resumes), other settings in another one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import orjson

from toolgym.errors import ConfigError
from toolgym.policy.runner import EpisodeRecord

RESULTS = "results.jsonl"
SUMMARY = "summary.json"
REPORT = "report.md"

T = TypeVar("T")


def settings_digest(settings: dict[str, Any]) -> str:
    """8 hex digits naming ``settings`` (stable across processes and key order)."""
    return hashlib.sha256(orjson.dumps(settings, option=orjson.OPT_SORT_KEYS)).hexdigest()[:8]


def default_out(policy: str, settings: dict[str, Any]) -> Path:
    """``runs/eval/<policy>-<settings digest>``, relative to the working directory."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in policy) or "policy"
    return Path("runs") / "eval" / f"{safe}-{settings_digest(settings)}"


def read_jsonl(path: Path, what: str, make: Callable[[dict[str, Any]], T]) -> list[T]:
    """The records of a log written one whole line per write; a last line without its newline is cut from the file.

    The one rule for toolgym's append-only logs (``results.jsonl``, ``train sft``'s
    ``metrics.jsonl``): each line is written with its newline in one write, so a line lacking it is
    one the process was killed writing (even if it happens to parse) and is dropped, while a bad
    line that has its newline was written whole and is corruption. The file is cut only once
    every whole line has been read, so a corrupt file is refused untouched.

    Args:
        path: the log (missing: no records).
        what: what a line holds, for the error ("an episode record").
        make: builds a record from a line's JSON object; a TypeError means the line is not one.

    Raises:
        ConfigError: A line other than the last is not a record (naming the file and line).
    """
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline, else a line cut short
    records, good_end = [], 0
    for i, line in enumerate(lines, 1):
        try:
            obj = orjson.loads(line)
            if not isinstance(obj, dict):
                raise TypeError("not a JSON object")
            records.append(make(obj))
        except (orjson.JSONDecodeError, TypeError) as exc:  # a line with its newline was written whole
            raise ConfigError(f"{path}: line {i} is not {what} ({exc}); move the file away to start over") from None
        good_end += len(line) + 1
    if tail:
        with path.open("r+b") as f:
            f.truncate(good_end)
    return records


def read_results(path: Path) -> list[EpisodeRecord]:
    """The episodes of a ``results.jsonl`` (:func:`read_jsonl`'s rule: a torn last line is cut, its episode runs again).

    Raises:
        ConfigError: A line other than the last is not a valid record (naming the file and line).
    """
    return read_jsonl(path, "an episode record", lambda obj: EpisodeRecord(**obj))


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k} ({old.get(k)!r} there, {new.get(k)!r} here)" for k in keys if old.get(k) != new.get(k)]


def open_run(out: Path, settings: dict[str, Any], header: dict[str, Any]) -> list[EpisodeRecord]:
    """Create ``out`` for an eval with ``settings``, or reopen it to resume.

    Args:
        out: The output directory.
        settings: What decides the episodes (policy, options, tasks, samples, seed); a rerun must match.
        header: The rest of ``summary.json`` known before the eval (versions, the policy).

    Returns:
        The episodes already in ``out/results.jsonl`` (none for a new directory).

    Raises:
        ConfigError: ``out`` holds an eval with other settings (naming each difference), results
            without a summary, or a corrupt results file.
    """
    summary_path, results_path = out / SUMMARY, out / RESULTS
    if summary_path.exists():
        try:
            old = orjson.loads(summary_path.read_bytes()).get("settings")
        except (orjson.JSONDecodeError, AttributeError):
            raise ConfigError(f"--out {out}: {SUMMARY} is not an eval summary; choose another --out") from None
        if old != settings:
            diff = "; ".join(_differences(old or {}, settings))
            raise ConfigError(
                f"--out {out} holds an eval with other settings: {diff}; rerun with those or choose another --out"
            )
    elif results_path.exists() and results_path.stat().st_size:
        raise ConfigError(f"--out {out} holds {RESULTS} but no {SUMMARY}; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    records = read_results(results_path)
    if not summary_path.exists():
        write_json(summary_path, {**header, "settings": settings, "complete": False})
    return records


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically (a temporary file renamed over ``path``)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(
        orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS) + b"\n"
    )
    os.replace(tmp, path)


class ResultsLog:
    """``results.jsonl`` open for appending: one line per episode, flushed as it is written."""

    def __init__(self, out: Path):
        self._f: IO[bytes] = (out / RESULTS).open("ab")

    def append(self, record: EpisodeRecord) -> None:
        """Write one episode's line and flush it (a kill loses at most the line being written)."""
        self._f.write(orjson.dumps(record.to_json()) + b"\n")
        self._f.flush()

    def close(self) -> None:
        """Close the file."""
        self._f.close()

    def __enter__(self) -> ResultsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _metrics_record(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` if it is a metrics record (an integer ``step``).

    Raises:
        TypeError: it has no integer ``step``.
    """
    step = obj.get("step")
    if not isinstance(step, int) or isinstance(step, bool):
        raise TypeError(f"no integer step: {step!r}")
    return obj


def metrics_log(
    metrics: Path, start: int, log: Callable[[dict[str, float]], None] | None
) -> Callable[[dict[str, float]], None]:
    """The metrics log of a (resumed) run: the appender of one record to ``metrics`` (JSONL).

    Records past step ``start`` are dropped first (a fresh run, ``start`` 0, keeps none), and so
    is a last line torn by an interrupted write (disk full, power loss), whose step was past the
    checkpoint, as a record is logged before its step's checkpoint (``results.read_jsonl``, the
    rule of every toolgym log). The kept records replace the file atomically. Each appended record
    is then passed to ``log``.

    Raises:
        ConfigError: a line other than the last is not a JSON object with an integer ``step``
            (corruption, named; the file is left as it is rather than the line silently dropped).
    """
    records = read_jsonl(metrics, "a metrics record", _metrics_record)
    kept = [r for r in records if r["step"] <= start]
    part = metrics.with_name(metrics.name + ".part")
    with part.open("w", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in kept))
        f.flush()
        os.fsync(f.fileno())  # else a power loss after the rename can leave an empty log, not the old one
    part.replace(metrics)

    def record(rec: dict[str, float]) -> None:
        with metrics.open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec, allow_nan=False) + "\n")  # strict JSON: train_lm never logs NaN
        if log is not None:
            log(rec)

    return record
