"""SQL worlds: a ``domains`` world's tables, with a layer of missing values, in a read-only DuckDB file.

A world is a pure function of (seed, difficulty): the seed picks a domain archetype
(:func:`toolgym.synth.domains.family.pick_archetype`) and the domains generator samples its
schema and rows (:func:`toolgym.synth.domains.world.generate`, unchanged: the same seed gives the
``domains`` world its rows). This module adds what analysis questions need and the domain data
lacks:

* **Missing values.** In every *fact* table (one with a reference to another table) each
  measure column (money, counts, ratings, durations) that the archetype never leaves empty has
  :data:`NULL_SHARE` of its values set to NULL, drawn from a stream of its own (seed, table,
  column), so ``AVG``, ``COUNT(col)`` and ``SUM`` differ from their naive readings and
  questions can ask how missing values count. The domains world's rows are not modified:
  the layer applies to the exported columns.
* **Tables.** One table per entity, named by its chosen plural (``id`` the key, references as
  ``VARCHAR`` keys of the other table, types by kind: see :data:`SQL_TYPES`), one per
  many-to-many link (``<entity>_id`` columns), as :func:`toolgym.synth.domains.world.to_duckdb`
  exports them.

The database is built on first use (:meth:`SqlWorld.database`): columns go in as Arrow tables
(a difficulty-5 world in ~20 ms, against ~0.5 s for row inserts) through one builder instance
per process, into a file under a private temp directory (``/dev/shm`` where there is one),
which is then opened read-only with the sandbox settings of :mod:`toolgym.synth.sql.engine` and
unlinked at once (the open database keeps its data; nothing is left behind by a process that is
killed). Pickling keeps the world's inputs only; a copy (another process, a fork) builds its own
database on first use, so no connection crosses a process boundary.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import random
import shutil
import tempfile
import threading
import weakref
from dataclasses import dataclass
from typing import Any

from toolgym.errors import WorldDataError
from toolgym.synth.domains.family import pick_archetype
from toolgym.synth.domains.world import SQL_TYPES, DomainWorld, archetype, generate
from toolgym.synth.domains.world import load as load_domain

#: The layer's version, stored with every world: a change to the data this module adds (the
#: missing values) must raise it, so a dataset made before is refused by name on load.
LAYER = 1
#: Share of the values of a fact table's always-present measure columns set to NULL.
NULL_SHARE = 0.06
#: Attribute kinds that are measures (aggregated in questions) and get missing values.
MEASURES = frozenset({"money", "int", "rating", "duration", "percent"})


@dataclass(frozen=True)
class Column:
    """One column of a table: its SQL name and type, the domain attribute behind it and its kind."""

    name: str
    type: str
    kind: str
    attr: str  # the canonical attribute ("id" for the key, "<entity>_id" for a link column)
    ref: str | None = None  # the table a reference column points into
    nullable: bool = False


@dataclass(frozen=True)
class Table:
    """One table: its name, the entity (or link) it holds, its columns and its row count."""

    name: str
    entity: str
    columns: tuple[Column, ...]
    rows: int
    label: str | None = None  # the column naming a row (a person's name, a title), if any
    noun: str = ""  # the entity's name in prose ("booking"); "" for a link table

    def column(self, name: str) -> Column:
        """The column ``name``.

        Raises:
            KeyError: No such column.
        """
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def refs(self) -> list[Column]:
        """The reference columns (foreign keys), in column order."""
        return [c for c in self.columns if c.ref is not None]


def _stream(seed: int, *parts: str) -> random.Random:
    digest = hashlib.sha256("\x1f".join(("sql", str(seed), *parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class SqlWorld:
    """A domains world as SQL tables (see the module docstring); the DuckDB file is built on first use."""

    def __init__(self, domain: DomainWorld):
        self.domain = domain
        self.seed: int = domain.data["seed"]
        self.difficulty: int = domain.data["difficulty"]
        self.today: str = domain.today
        self.org: str = domain.org
        self.title: str = domain.arch.title
        self._db: Any = None  # engine.Database, built by database()
        self.cache: dict[Any, Any] = {}  # generator queries' results (tasks.Builder); not pickled

    def to_json(self) -> dict[str, Any]:
        """The domains world's inputs and digest, plus the layer version (the tables are regenerated)."""
        return {**self.domain.to_json(), "layer": LAYER}

    @functools.cached_property
    def tables(self) -> dict[str, Table]:
        """``{table name: Table}``: entities in schema order, then link tables."""
        w = self.domain
        out: dict[str, Table] = {}
        plural = {e: ent["plural"] for e, ent in w.entities.items()}
        for e_id, ent in w.entities.items():
            cols = [Column("id", "VARCHAR", "key", "id")]
            for a in w.attrs(e_id):
                name = ent["attributes"][a.name]
                ref = plural[a.to] if a.kind == "ref" and a.to is not None else None
                nullable = bool(a.optional) or (a.kind == "ref" and a.to == e_id)
                cols.append(Column(name, _sql_type(a.kind, a.values), a.kind, a.name, ref, nullable))
            fact = any(c.ref for c in cols)
            cols = [
                Column(c.name, c.type, c.kind, c.attr, c.ref, True) if fact and c.kind in MEASURES else c for c in cols
            ]
            label = ent.get("label")
            out[ent["plural"]] = Table(
                ent["plural"],
                e_id,
                tuple(cols),
                w.counts[e_id],
                ent["attributes"].get(label) if label else None,
                ent["name"].replace("_", " "),
            )
        for link in w.schema["links"]:
            a, b = link["between"]
            ends = tuple(Column(f"{w.entities[x]['name']}_id", "VARCHAR", "ref", f"{x}_id", plural[x]) for x in (a, b))
            out[link["name"]] = Table(link["name"], link["id"], ends, len(w.links[link["id"]]))
        return out

    def columns(self, table: str) -> dict[str, list[Any]]:
        """A table's values by column, missing values applied (Python values: dates as ``datetime.date``)."""
        w, t = self.domain, self.tables[table]
        if t.entity not in w.entities:  # a link table
            pairs = w.links[t.entity]
            return {t.columns[0].name: [p[0] for p in pairs], t.columns[1].name: [p[1] for p in pairs]}
        rows = list(w.rows[t.entity].values())
        out: dict[str, list[Any]] = {}
        for c in t.columns:
            values = [_typed(r.get(c.attr), c.kind) for r in rows]
            if c.nullable and c.kind in MEASURES and not self._optional(t.entity, c.attr):
                rng = _stream(self.seed, table, c.name)
                values = [None if rng.random() < NULL_SHARE else v for v in values]
            out[c.name] = values
        return out

    def _optional(self, entity: str, attr: str) -> bool:
        a = self.domain.arch.entity(entity).attribute(attr)
        return bool(a is not None and a.optional)

    def database(self) -> Any:
        """This process's read-only, sandboxed database of the world (built on first use).

        Returns:
            A :class:`toolgym.synth.sql.engine.Database`.
        """
        from toolgym.synth.sql.engine import Database

        db = self._db
        if db is None or db.pid != os.getpid():  # a fork builds its own (the parent's is kept: engine._LIVE)
            folder = tempfile.mkdtemp(prefix="toolgym-sql-", dir=_scratch())
            path = os.path.join(folder, "world.duckdb")
            try:
                build_file(self, path)
                db = Database(path)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            # The open database holds the file: its name can go now (Linux keeps the data until the
            # process closes it), so no folder outlives a process, however it ends (a pool worker's
            # SIGTERM runs no finalizer). Where the unlink is refused, the finalizer removes it.
            shutil.rmtree(folder, ignore_errors=True)
            if os.path.exists(folder):
                weakref.finalize(db, _remove, folder, os.getpid())
            self._db = db
        return db

    def __getstate__(self) -> dict[str, Any]:
        return {"data": self.domain.data}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(DomainWorld(state["data"]))  # type: ignore[misc]


def _sql_type(kind: str, values: list[Any] | None) -> str:
    """The SQL type of an attribute kind (an enum of numbers is a number column, e.g. a course level)."""
    if kind == "enum" and values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "BIGINT" if all(isinstance(v, int) for v in values) else "DOUBLE"
    return SQL_TYPES.get(kind, "VARCHAR")


def _typed(value: Any, kind: str) -> Any:
    """A domain value as the Python value of its SQL column (dates and times parsed)."""
    if value is None:
        return None
    if kind == "date":
        return dt.date.fromisoformat(value)
    if kind == "datetime":
        return dt.datetime.fromisoformat(value)
    if kind == "time":
        return dt.time.fromisoformat(value)
    return value


def _remove(folder: str, owner: int) -> None:
    """Delete a world's database folder, from the process that made it only (not from a fork's exit)."""
    if os.getpid() == owner:
        shutil.rmtree(folder, ignore_errors=True)


@functools.cache
def _scratch() -> str | None:
    """Where database files go: ``/dev/shm`` (memory) when writable, else the system temp dir."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


#: This process's builder: ``(pid, connection)`` (see :func:`_builder`).
_BUILDER: tuple[int, Any] | None = None
#: Held while the builder writes a world (threads of one process build one at a time).
_BUILD_LOCK = threading.Lock()


def _new_build_lock() -> None:
    """In a forked child: a fresh lock (another thread of the parent may have held it at the fork)."""
    global _BUILD_LOCK
    _BUILD_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_new_build_lock)


def _builder() -> Any:
    """This process's DuckDB instance for writing world files (in memory, opened once; never a policy's).

    Starting a DuckDB instance costs ~25 ms; a world's file is attached to this one, written and
    detached, instead of opening an instance of its own (~35 ms saved a world). Each process has
    its own (a fork leaves the parent's alone: :mod:`toolgym.synth.sql.engine` keeps it).
    """
    global _BUILDER
    import duckdb

    from toolgym.synth.sql import engine

    if _BUILDER is None or _BUILDER[0] != os.getpid():
        con = duckdb.connect(":memory:", config={"threads": 1, "autoinstall_known_extensions": False})
        engine._LIVE.add(con)
        _BUILDER = (os.getpid(), con)
    return _BUILDER[1]


def build_file(world: SqlWorld, path: str) -> None:
    """Write the world's tables to a new DuckDB file at ``path`` (Arrow columns, one statement a table).

    The file is attached to this process's builder (:func:`_builder`) and detached when written
    (a detach checkpoints it, and releases it for the read-only open).
    """
    import pyarrow as pa  # type: ignore[import-untyped]

    with _BUILD_LOCK:
        _write(world, path, _builder(), pa)


def _write(world: SqlWorld, path: str, con: Any, pa: Any) -> None:
    """:func:`build_file`'s work on the builder ``con`` (``pa``: the pyarrow module)."""
    con.execute("ATTACH '" + path.replace("'", "''") + "' AS world_build")
    try:
        for name, t in world.tables.items():
            cols = world.columns(name)
            schema = pa.schema([(c.name, _ARROW[c.type]()) for c in t.columns])
            data = pa.table({c.name: pa.array(cols[c.name], type=schema.field(c.name).type) for c in t.columns})
            body = ", ".join(f'"{c.name}" {c.type}' for c in t.columns)
            con.execute(f'CREATE TABLE world_build."{name}" ({body})')
            con.register("_arrow_in", data)
            try:
                con.execute(f'INSERT INTO world_build."{name}" SELECT * FROM _arrow_in')
            finally:
                con.unregister("_arrow_in")
    finally:
        con.execute("DETACH DATABASE IF EXISTS world_build")


def _arrow_types() -> dict[str, Any]:
    import pyarrow as pa  # type: ignore[import-untyped]

    return {
        "VARCHAR": pa.string,
        "BIGINT": pa.int64,
        "DOUBLE": pa.float64,
        "BOOLEAN": pa.bool_,
        "DATE": pa.date32,
        "TIMESTAMP": lambda: pa.timestamp("us"),
        "TIME": lambda: pa.time64("us"),
    }


class _LazyArrow(dict):  # type: ignore[type-arg]
    """:func:`_arrow_types`, loaded on first use (pyarrow costs ~0.2 s to import)."""

    def __missing__(self, key: str) -> Any:
        self.update(_arrow_types())
        return dict.__getitem__(self, key)


_ARROW: dict[str, Any] = _LazyArrow()


#: Redraws of a world whose sampled schema has no table to analyse (see :func:`make_world`).
REDRAWS = 8


def analysable(world: SqlWorld, difficulty: int = 2) -> bool:
    """Whether the world's schema has what the tasks of ``difficulty`` need.

    From difficulty 2: some table has a reference, a measure, a date and an enum, and references
    a table with an enum (what the joins, group-bys and windows of the harder kinds read). Four
    archetypes never meet it, at any difficulty, in any sample of their schema (measured over 200
    seeds): ``conference`` and ``restaurant_chain`` (their fact tables reference tables without an
    enum) and ``course_registration`` and ``school`` (their fact tables have no measure). They are
    left out there by design: one rule for difficulties 2-5 keeps a world's tasks of its own
    difficulty (a world that hosts none falls back to easier kinds).

    Difficulty 1 (``filter``, ``total``) needs far less: a table that ``filter`` reads (an entity
    table, without references or with at least 20 rows) with a never-null enum and a measure.
    Every archetype has one, so all of them are drawn at difficulty 1 (the rule above once applied
    there too and left the four out).
    """
    tables = world.tables
    if difficulty == 1:
        return any(
            t.noun
            and (not t.refs or t.rows >= 20)
            and any(c.kind in MEASURES for c in t.columns)
            and any(c.kind == "enum" and not c.nullable for c in t.columns)
            for t in tables.values()
        )
    for t in tables.values():
        kinds = {c.kind for c in t.columns}
        if not (kinds & MEASURES and kinds & {"date", "datetime"} and "enum" in kinds):
            continue
        if any(r.ref != t.name and any(c.kind == "enum" for c in tables[str(r.ref)].columns) for r in t.refs):
            return True
    return False


def make_world(seed: int, difficulty: int) -> SqlWorld:
    """The world of a seed and difficulty: the ``domains`` world of the seed, or of a derived seed.

    A domains schema is a sample of its archetype's attributes, and some samples leave no table
    with what the difficulty's tasks need (:func:`analysable`: a shelter's applications without a
    fee). Such a world is redrawn from ``(seed * 1000 + k) mod 2**63`` (k = 1 … :data:`REDRAWS`; the last draw is kept
    whatever it holds): still a pure function of the seed, and the domains world actually used
    (its seed included) is what :meth:`SqlWorld.to_json` stores.
    """
    world = None
    for k in range(REDRAWS + 1):
        s = seed if k == 0 else (seed * 1000 + k) % 2**63
        world = SqlWorld(DomainWorld(generate(archetype(pick_archetype(s)), s, difficulty)))
        if analysable(world, difficulty):
            break
    assert world is not None
    return world


def load(data: dict[str, Any]) -> SqlWorld:
    """The world a dataset row describes (:meth:`SqlWorld.to_json`), regenerated.

    Raises:
        WorldDataError: Not an sql world row, another layer version, or a domains digest mismatch.
    """
    if not isinstance(data, dict) or data.get("layer") != LAYER:
        got = data.get("layer") if isinstance(data, dict) else None
        raise WorldDataError(f"sql world row of layer {got!r}, this code writes layer {LAYER}: synthesize it again")
    return SqlWorld(load_domain({k: v for k, v in data.items() if k != "layer"}))
