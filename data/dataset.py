"""The dataset: one DuckDB file holding worlds, tasks, reference trajectories and a manifest.

Tables (JSON payloads are stored as VARCHAR text so no extension is needed to read them):

* ``info``: key/value, ``format = toolgym-dataset/3``: how a file proves it is ours;
* ``manifest``: one row per family run: toolgym and family versions, the seed and the full
  synthesis config (so a run can be resumed, or refused if the settings changed);
* ``worlds``, ``tasks``, ``trajectories``: the specs and the reference runs; a world's
  ``schema_hash`` is the content hash of its family's ``world_schema`` and ``archetype`` its
  archetype (both NULL where a family has none), so distinct schemas are counted in SQL;
* ``toolsets``: system text and tool schemas, stored once per distinct toolset (every task with
  the same tool config shares them; ~10 KB a task saved), with ``tools_hash`` (:func:`tools_hash`:
  the tools' names and parameter schemas, the system text left out), so distinct toolsets are
  counted in SQL (:meth:`Dataset.distinctness`).
* ``candidates``: one row per candidate (world index, task index) with its fate (``shipped``,
  ``infeasible`` or the name of the gate that dropped it) and why: the gate counts of the
  manifest are computed from it, and resuming starts after its last row.

Writes go through :meth:`Dataset.write_batch`, one transaction per batch: an interrupted run
(even a SIGKILL) leaves the file at the last committed batch, and a rerun with the same
settings continues from there without duplicates. No timestamps or host names are stored, so
the same seed and config give identical rows.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import orjson

from toolgym.envs.markup import check_task_text
from toolgym.errors import DatasetError, UnknownNameError
from toolgym.spec import TaskSpec, Trajectory, WorldSpec, check_split, dump_world_data

FORMAT = "toolgym-dataset/3"  # 3: worlds.schema_hash and archetype, toolsets.tools_hash
SCHEMA = """
CREATE TABLE IF NOT EXISTS info (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS manifest (
    family VARCHAR PRIMARY KEY, toolgym_version VARCHAR, family_version INTEGER, seed BIGINT, config VARCHAR);
CREATE TABLE IF NOT EXISTS worlds (
    world_id VARCHAR PRIMARY KEY, family VARCHAR, family_version INTEGER, seed BIGINT,
    difficulty INTEGER, split VARCHAR, data VARCHAR, schema_hash VARCHAR, archetype VARCHAR);
CREATE TABLE IF NOT EXISTS toolsets (toolset_id VARCHAR PRIMARY KEY, system VARCHAR, tools VARCHAR, tools_hash VARCHAR);
CREATE TABLE IF NOT EXISTS tasks (
    task_id VARCHAR PRIMARY KEY, ordinal BIGINT, world_id VARCHAR, family VARCHAR, env_id VARCHAR,
    difficulty INTEGER, split VARCHAR, toolset_id VARCHAR, prompt VARCHAR,
    tool_config VARCHAR, params VARCHAR, verifier VARCHAR, meta VARCHAR);
CREATE TABLE IF NOT EXISTS trajectories (
    task_id VARCHAR PRIMARY KEY, actions VARCHAR, observations VARCHAR,
    answer VARCHAR, turns INTEGER, tool_calls INTEGER, reward DOUBLE);
CREATE TABLE IF NOT EXISTS candidates (
    family VARCHAR, world_index BIGINT, task_index INTEGER, status VARCHAR, reason VARCHAR,
    PRIMARY KEY (family, world_index, task_index));
"""
_JSON_TASK_FIELDS = ("tool_config", "params", "verifier_spec", "meta")  # column "verifier" holds verifier_spec
_TASK_SELECT = (
    "SELECT t.task_id, t.world_id, t.family, t.env_id, t.difficulty, t.split, s.system, t.prompt, s.tools, "
    "t.tool_config, t.params, t.verifier, t.meta FROM tasks t JOIN toolsets s USING (toolset_id)"
)


@dataclass
class Batch:
    """Everything one transaction writes."""

    worlds: list[WorldSpec] = field(default_factory=list)
    tasks: list[tuple[int, TaskSpec]] = field(default_factory=list)  # (ordinal, task)
    trajectories: list[Trajectory] = field(default_factory=list)
    candidates: list[tuple[str, int, int, str, str]] = field(default_factory=list)


#: WAL size at which DuckDB checkpoints (its default is 16 MB). A checkpoint rewrites the primary-key
#: indices whole, so at ~500 MB of dataset each one took ~0.3 s, and a 100k-task synthesis spent a
#: quarter of its writer's time in them: the WAL now grows to this before one (and is checkpointed on
#: close). A killed run loses nothing: reopening replays the WAL's committed batches.
CHECKPOINT_THRESHOLD = "1GB"


def _dump(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[tuple[Any, ...]], suffix: str = "") -> None:
    """Insert rows by letting DuckDB scan them as numpy columns.

    Vectorized: measured ~2.4x cheaper than multi-row VALUES and ~10x cheaper than one statement
    per row, for trajectory-sized strings.
    """
    if not rows:
        return
    columns = {}
    for i, values in enumerate(zip(*rows, strict=True)):
        kind = type(values[0])
        dtype = np.int64 if kind is int else np.float64 if kind is float else object
        columns[f"c{i}"] = np.array(values, dtype=dtype)
    con.register("_batch", columns)
    try:
        con.execute(f"INSERT INTO {table} SELECT * FROM _batch{suffix}")
    finally:
        con.unregister("_batch")


def _open_error(path: Path, exc: duckdb.Error) -> DatasetError:
    """The error for a file DuckDB cannot open: locked by another process, or not a dataset.

    DuckDB lets one process open a file read-write or several open it read-only, never both at
    once, so a lock error goes both ways: a writer (``toolgym synth``, a default ``Dataset(path)``)
    locks out readers, and any reader (an env, ``toolgym eval``/``tasks``/``show``) locks out a
    writer. DuckDB reports it as an ``IOException`` ("Could not set lock on file …: Conflicting
    lock is held in <program> (PID <n>)"); the PID is named when DuckDB gives one.
    """
    text = " ".join(str(exc).split())
    if isinstance(exc, duckdb.IOException) and "lock" in text.lower():
        pid = re.search(r"\(PID (\d+)\)", text)
        holder = f"process {pid.group(1)}" if pid else "another process"
        return DatasetError(
            f"{path} is locked by {holder}, which has it open (a `toolgym synth` run, or a reader such as an "
            "env, `toolgym eval` or `toolgym tasks`); DuckDB allows one writer or many readers at a time, "
            "not both: close it there or wait for that process to finish, then retry"
        )
    return DatasetError(f"{path} is not a readable toolgym dataset (DuckDB says: {text})")


def toolset_id(system: str, tools: list[dict[str, Any]]) -> str:
    """Content id of a toolset (system text + schemas), shared by every task that uses it."""
    return hashlib.sha256((system + "\0" + _dump(tools)).encode()).hexdigest()[:16]


def tools_hash(tools: list[dict[str, Any]]) -> str:
    """Content hash of a toolset's interface: each tool's name and parameter schema, in name order.

    Tool descriptions and the system text are left out, so two worlds count as one toolset
    when an agent would call them the same way (issue 11's distinctness measure).
    """
    interface = sorted([t["function"]["name"], t["function"].get("parameters", {})] for t in tools)
    return hashlib.sha256(orjson.dumps(interface, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


class Dataset:
    """A toolgym dataset file (use as a context manager).

    Args:
        path: The DuckDB file.
        read_only: Open for reading only; several read-only openers may share a file, a
            read-write opener excludes every other process (DuckDB's rule).
        create: Create the file (and its parent directory) if missing, with an empty schema.

    Raises:
        DatasetError: If ``path`` does not exist and ``create`` is false (nothing is created), if
            another process holds a conflicting lock on it (named by PID), or if it is not a
            toolgym dataset of this format.
    """

    def __init__(self, path: str | Path, read_only: bool = False, create: bool = False):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise DatasetError(
                f"no dataset at {self.path}: the file does not exist (make one with `toolgym synth --out "
                f"{self.path}`; in Python, Dataset(path, create=True) starts an empty one)"
            )
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
            if not read_only:  # see CHECKPOINT_THRESHOLD
                self.con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
        except duckdb.Error as exc:
            raise _open_error(self.path, exc) from exc
        try:
            tables = {r[0] for r in self.con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
            if create and not tables:
                self.con.execute(SCHEMA)
                self.con.execute("INSERT INTO info VALUES ('format', ?)", [FORMAT])
                tables = {"info"}
            fmt = (
                self.con.execute("SELECT value FROM info WHERE key = 'format'").fetchone() if "info" in tables else None
            )
        except duckdb.Error as exc:
            self.con.close()
            raise DatasetError(f"{self.path} is corrupt or not a toolgym dataset: {exc}") from exc
        if fmt is None or fmt[0] != FORMAT:
            self.con.close()
            if fmt is not None and str(fmt[0]).startswith("toolgym-dataset/"):
                raise DatasetError(
                    f"{self.path} is a {fmt[0]} dataset; this toolgym reads {FORMAT} (synthesize it again)"
                )
            raise DatasetError(f"{self.path} is a DuckDB file but not a toolgym dataset (no '{FORMAT}' marker)")

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self.con.close()

    # ------------------------------------------------------------------ writing
    def manifest(self, family: str) -> dict[str, Any] | None:
        """The manifest row of a family run, or None."""
        row = self.con.execute(
            "SELECT toolgym_version, family_version, seed, config FROM manifest WHERE family = ?", [family]
        ).fetchone()
        if row is None:
            return None
        return {"toolgym_version": row[0], "family_version": row[1], "seed": row[2], "config": orjson.loads(row[3])}

    def set_manifest(
        self, family: str, toolgym_version: str, family_version: int, seed: int, config: dict[str, Any]
    ) -> None:
        """Create or update a family's manifest row."""
        self.con.execute(
            "INSERT OR REPLACE INTO manifest VALUES (?, ?, ?, ?, ?)",
            [family, toolgym_version, family_version, seed, _dump(config)],
        )

    def progress(self, family: str) -> tuple[tuple[int, int] | None, int]:
        """(last candidate written as (world, task) or None, number of tasks shipped)."""
        last = self.con.execute(
            "SELECT world_index, task_index FROM candidates WHERE family = ? "
            "ORDER BY world_index DESC, task_index DESC LIMIT 1",
            [family],
        ).fetchone()
        shipped = self.con.execute("SELECT count(*) FROM tasks WHERE family = ?", [family]).fetchone()
        return (None if last is None else (int(last[0]), int(last[1]))), int(shipped[0]) if shipped else 0

    def write_batch(self, batch: Batch) -> None:
        """Write one batch atomically: all of it or none of it.

        Raises:
            WorldDataError: A world's data is not JSON (:func:`toolgym.spec.dump_world_data`;
                synthesis refuses such worlds, NaN included, before their first candidate).
        """
        con = self.con
        worlds = [
            (
                w.world_id,
                w.family,
                w.family_version,
                w.seed,
                w.difficulty,
                w.split,
                dump_world_data(w.family, w.data).decode(),
                w.schema_hash,
                w.archetype,
            )
            for w in batch.worlds
        ]
        toolsets: dict[str, tuple[str, str, str, str]] = {}
        tasks = []
        for ordinal, t in batch.tasks:
            tid = toolset_id(t.system, t.tools)
            if tid not in toolsets:
                toolsets[tid] = (tid, t.system, _dump(t.tools), tools_hash(t.tools))
            fields = (_dump(getattr(t, f)) for f in _JSON_TASK_FIELDS)
            tasks.append(
                (t.task_id, ordinal, t.world_id, t.family, t.env_id, t.difficulty, t.split, tid, t.prompt, *fields)
            )
        trajectories = [
            (
                r.task_id,
                _dump(r.actions),
                _dump(r.observations),
                _dump(r.answer),
                r.turns,
                r.tool_calls,
                r.reward,
            )
            for r in batch.trajectories
        ]
        con.execute("BEGIN TRANSACTION")
        try:
            _insert(con, "worlds", worlds, " ON CONFLICT DO NOTHING")
            _insert(con, "toolsets", list(toolsets.values()), " ON CONFLICT DO NOTHING")
            _insert(con, "tasks", tasks)
            _insert(con, "trajectories", trajectories)
            _insert(con, "candidates", batch.candidates)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ reading
    def families(self) -> list[str]:
        """Families present in the dataset."""
        return [r[0] for r in self.con.execute("SELECT family FROM manifest ORDER BY family").fetchall()]

    def task_ids(
        self, family: str | None = None, split: str | None = None, difficulties: list[int] | None = None
    ) -> list[str]:
        """Task ids in dataset order, filtered.

        Raises:
            ConfigError: ``split`` is not one of :data:`toolgym.spec.SPLITS`.
        """
        return [r[0] for r in self.task_rows(family, split, difficulties)]

    def task_rows(
        self,
        family: str | None = None,
        split: str | None = None,
        difficulties: list[int] | None = None,
    ) -> list[tuple[str, str, str, int]]:
        """``(task_id, family, split, difficulty)`` rows in dataset order, filtered.

        Raises:
            ConfigError: ``split`` is not one of :data:`toolgym.spec.SPLITS`.
        """
        check_split(split)
        sql, args = "SELECT task_id, family, split, difficulty FROM tasks WHERE 1=1", list[Any]()
        if family:
            sql += " AND family = ?"
            args.append(family)
        if split:
            sql += " AND split = ?"
            args.append(split)
        if difficulties:
            sql += f" AND difficulty IN ({', '.join('?' * len(difficulties))})"
            args += difficulties
        rows = self.con.execute(sql + " ORDER BY family, ordinal", args).fetchall()
        return [(r[0], r[1], r[2], int(r[3])) for r in rows]

    def task(self, task_id: str) -> TaskSpec:
        """One task by id.

        Raises:
            UnknownNameError: No task has this id (the message names the closest ones).
            DatasetError: The row's prompt or system text holds markup it may not
                (:func:`toolgym.envs.markup.check_task_text`): the file is corrupt.
        """
        row = self.con.execute(_TASK_SELECT + " WHERE t.task_id = ?", [task_id]).fetchone()
        if row is None:
            from toolgym.registry import unknown

            near = [
                r[0]
                for r in self.con.execute(
                    "SELECT task_id FROM tasks ORDER BY jaro_winkler_similarity(task_id, ?) DESC LIMIT 5", [task_id]
                ).fetchall()
            ]
            raise unknown("task id", task_id, near) if near else UnknownNameError(f"dataset {self.path} has no tasks")
        keys = ("task_id", "world_id", "family", "env_id", "difficulty", "split", "system", "prompt", "tools")
        data: dict[str, Any] = dict(zip(keys, row[:9], strict=True))
        data["tools"] = orjson.loads(data["tools"])
        data.update({f: orjson.loads(v) for f, v in zip(_JSON_TASK_FIELDS, row[9:], strict=True)})
        task = TaskSpec(**data)
        try:
            check_task_text(task.task_id, task.prompt, task.system)
        except ValueError as exc:  # tampered with, or written before env v1 (its system text said <|end|>)
            raise DatasetError(
                f"{self.path} cannot be served: {exc}; the row was tampered with or written by a toolgym older "
                "than env v1 (family version 1): synthesize the dataset again"
            ) from None
        return task

    def world_data(self, world_id: str) -> dict[str, Any]:
        """The JSON data of one world."""
        row = self.con.execute("SELECT data FROM worlds WHERE world_id = ?", [world_id]).fetchone()
        if row is None:
            raise DatasetError(f"dataset {self.path} is missing world {world_id!r} (corrupt dataset)")
        return orjson.loads(row[0])

    def trajectory(self, task_id: str) -> Trajectory:
        """The reference run of a task (it scored 1, so it terminated; ``turns`` is ``len(actions)``)."""
        row = self.con.execute(
            "SELECT actions, observations, answer, tool_calls, reward FROM trajectories WHERE task_id = ?",
            [task_id],
        ).fetchone()
        if row is None:
            raise DatasetError(f"dataset {self.path} has no reference trajectory for {task_id!r}")
        actions, observations, answer = (orjson.loads(x) for x in row[:3])
        return Trajectory(
            task_id=task_id,
            actions=actions,
            observations=observations,
            answer=answer,
            tool_calls=row[3],
            reward=row[4],
            terminated=True,
        )

    def gate_counts(self, family: str | None = None) -> dict[str, dict[str, int]]:
        """{family: {status: count}} over every candidate."""
        sql = "SELECT family, status, count(*) FROM candidates"
        args: list[Any] = []
        if family:
            sql += " WHERE family = ?"
            args.append(family)
        out: dict[str, dict[str, int]] = {}
        for fam, status, n in self.con.execute(
            sql + " GROUP BY family, status ORDER BY family, status", args
        ).fetchall():
            out.setdefault(fam, {})[status] = int(n)
        return out

    def distinctness(self, family: str) -> dict[str, int]:
        """How distinct a family's shipped environments are.

        Returns:
            ``worlds`` (with a shipped task), ``toolsets`` (distinct :func:`tools_hash` over the
            shipped tasks), ``schemas`` (distinct ``schema_hash``; 0 for a family without
            world schemas), ``archetypes`` (distinct archetypes; 0 without) and
            ``max_worlds_per_toolset`` (the most worlds sharing one toolset).
        """
        row = self.con.execute(
            "WITH used AS (SELECT DISTINCT t.world_id, s.tools_hash FROM tasks t JOIN toolsets s USING (toolset_id) "
            "WHERE t.family = ?) SELECT (SELECT count(DISTINCT world_id) FROM used), "
            "(SELECT count(DISTINCT tools_hash) FROM used), "
            "(SELECT count(DISTINCT w.schema_hash) FROM worlds w WHERE w.world_id IN (SELECT world_id FROM used)), "
            "(SELECT count(DISTINCT w.archetype) FROM worlds w WHERE w.world_id IN (SELECT world_id FROM used)), "
            "(SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM used GROUP BY tools_hash))",
            [family],
        ).fetchone()
        assert row is not None
        keys = ("worlds", "toolsets", "schemas", "archetypes", "max_worlds_per_toolset")
        return {k: int(v) for k, v in zip(keys, row, strict=True)}

    def summary(self) -> dict[str, Any]:
        """Counts per family, split and difficulty, plus gate counts."""
        rows = self.con.execute(
            "SELECT family, split, difficulty, count(*) FROM tasks GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        return {
            "tasks": [{"family": f, "split": s, "difficulty": d, "count": n} for f, s, d, n in rows],
            "gates": self.gate_counts(),
            "manifests": {f: self.manifest(f) for f in self.families()},
        }

    def rows(self, split: str | None = None) -> Iterator[dict[str, Any]]:
        """Every task joined with its trajectory (for exports), in dataset order.

        Raises:
            ConfigError: ``split`` is not one of :data:`toolgym.spec.SPLITS`.
        """
        check_split(split)
        sql = (
            "SELECT t.task_id, t.env_id, t.family, t.world_id, t.difficulty, t.split, s.system, t.prompt, s.tools, "
            "t.verifier, t.meta, r.actions, r.observations, r.answer, r.turns, r.tool_calls FROM tasks t "
            "JOIN toolsets s USING (toolset_id) LEFT JOIN trajectories r USING (task_id)"
        )
        args: list[Any] = []
        if split:
            sql += " WHERE t.split = ?"
            args.append(split)
        cur = self.con.execute(sql + " ORDER BY t.family, t.ordinal", args)
        cols = [d[0] for d in cur.description]
        while True:
            chunk = cur.fetchmany(256)
            if not chunk:
                return
            for r in chunk:
                yield dict(zip(cols, r, strict=True))
