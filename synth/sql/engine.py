"""The SQL sandbox: DuckDB's own settings, a watchdog for time, compact results.

Security comes from the database engine, not from parsing SQL here:

* the file is opened ``read_only``: every write (``CREATE``, ``INSERT``, ``UPDATE``, ``DROP``,
  ``COPY … FROM``) is refused by DuckDB;
* ``enable_external_access=false``: no file or network access from SQL (``read_csv``,
  ``COPY … TO``, ``ATTACH``, ``EXPORT DATABASE``, ``INSTALL``/``LOAD``, ``httpfs`` URLs, ``glob``),
  with extension autoloading and autoinstalling off as well;
* ``memory_limit`` (:data:`MEMORY_LIMIT`) with no temp directory to spill into: a memory bomb
  fails with an out-of-memory error; ``threads=1``: one query never takes the host's cores;
* ``python_enable_replacements=false``: a table name never resolves to a Python object of the
  host process (DuckDB's replacement scans of data frames in the caller's frames);
* ``lock_configuration=true``, set last: no ``SET``/``PRAGMA``/``RESET`` can loosen any of it;
* time: DuckDB has no statement timeout, so a process-wide :class:`Watchdog` thread calls the
  connection's ``interrupt()`` when a query runs past its cap (:data:`TIME_CAP_S`);
* process isolation: DuckDB checks neither interrupts nor its memory limit inside one giant value
  (``SELECT list(range(100000000))``), so the episodes' queries run in a worker process
  (:mod:`toolgym.synth.sql.worker`) that the env process kills past the cap plus a grace, under an
  address-space limit of its own. Trusted queries (task synthesis, the gates' draws) use
  :attr:`Database.con` in-process; the reference and the gate agents play through the env, so
  through the worker, like any policy.

Each episode gets its own session (:class:`RemoteSession`, a DuckDB cursor of the worker, a
connection of its own to the shared database): what a session may still create (temporary
tables, ``SET VARIABLE``) lives in that connection only and is gone when the episode ends, so
episodes never see each other's.

Results are cached per database (:class:`ResultCache`, see :func:`cacheable` for which): the data
never changes, so a read query of a session that has created nothing gives the same rows every
time, and a GRPO group's rollouts, a task's gate episodes and its reference repeat each other's
queries. A cache hit costs ~10 µs against ~0.2-1 ms for DuckDB to plan and run even a small query;
the cache lives in the env process, so a hit never reaches the worker.

Every failure (a syntax error, a refused statement, an interrupt, out of memory) is raised as
:class:`toolgym.envs.tools.ToolError` with DuckDB's message: an error observation, after which the
next query runs normally.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import re
import shutil
import tempfile
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from toolgym.envs.tools import ToolError
from toolgym.synth.sql import worker as _worker
from toolgym.synth.sql.worker import CELL_CHARS, WATCHDOG, QueryFailed, Watchdog, WorkerLost, cell

__all__ = ["CELL_CHARS", "WATCHDOG", "Database", "RemoteSession", "ResultCache", "Watchdog", "cell", "run_query"]

#: Rows a ``run_sql`` result shows; more are cut and the result says so (``truncated``).
ROW_CAP = 50
#: Wall-clock seconds a statement may run before the watchdog interrupts it.
TIME_CAP_S = 2.0
#: DuckDB's memory limit for one world's database (all its sessions together).
MEMORY_LIMIT = "256MB"
#: DuckDB optimizer passes turned off: they pay off on large data (compressed and late
#: materialization, partitioned execution, join-filter pushdown, statistics-based pruning, shared
#: sub-plans and sub-expressions, projection placement); on a world's few thousand rows they only
#: add planning time. An uncached join + group-by spends ~60% of its time binding and optimizing
#: (DuckDB's profiler, DuckDB 2.0: binder ~0.3 ms, optimizer ~0.6 ms, execution ~0.3 ms); off,
#: it took ~0.83x the CPU time and a window query ~0.78x (side by side, noisy, under load), with
#: the same results. Join ordering, filter pushdown and column pruning stay on: without them a
#: policy's comma join would run as a cross product.
DISABLED_OPTIMIZERS = (
    "statistics_propagation",
    "common_subplan",
    "join_filter_pushdown",
    "compressed_materialization",
    "late_materialization",
    "partitioned_execution",
    "common_subexpressions",
    "projection_placement",
)
#: The settings a world's database is opened with (see the module docstring).
SETTINGS: dict[str, Any] = {
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "python_enable_replacements": False,  # SQL never reads the host's Python objects by name
    "memory_limit": MEMORY_LIMIT,
    "threads": 1,
    "temp_directory": "",
    "disabled_optimizers": ",".join(DISABLED_OPTIMIZERS),
    "lock_configuration": True,
}


os.register_at_fork(after_in_child=lambda: _orphan_inherited())


#: DuckDB connections and cursors this process opened (weakly held).
_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()
#: Those a forked process inherited: kept alive and never closed there (destroying a database
#: object whose threads and locks stayed with the parent can hang the child, and its finalizer
#: would delete the parent's file), so a fork only ever opens and closes its own.
_FORK_ORPHANS: list[Any] = []


def _orphan_inherited() -> None:
    _FORK_ORPHANS.extend(_LIVE)
    _LIVE.clear()


#: Results a database's :class:`ResultCache` keeps at most (least recently used first out) …
CACHE_SIZE = 256
#: … and cells (a result's rows × columns, plus its query text per :data:`CELL_CHARS`): a cell
#: shows at most 80 characters, so one world's cache stays within a few MB however large its results.
CACHE_CELLS = 25_000
#: Calendar functions DuckDB marks consistent only within a query because of ``TIMESTAMPTZ`` and the
#: ``TimeZone`` setting, which :data:`SETTINGS` locks: their results are fixed by their arguments here.
CALENDAR = frozenset(
    "+ - century date_diff date_part date_sub date_trunc datediff datepart datesub datetrunc day dayname dayofmonth "
    "dayofweek dayofyear decade era hour isodow isoyear julian last_day make_timestamptz microsecond millennium "
    "millisecond minute month monthname quarter second strftime time_bucket timezone timezone_hour timezone_minute "
    "week weekday weekofyear year yearweek".split()
)
#: Words that keep a query out of the cache besides DuckDB's own unstable functions (see :func:`cacheable`).
UNCACHED_WORDS = frozenset({"sample", "tablesample", "now", "today", "tomorrow", "yesterday", "pragma", "u"})
UNCACHED_PREFIXES = ("duckdb_", "pragma_", "current_", "pg_", "inet_", "get_current", "transaction_", "txid")
_WORD = re.compile(r"[a-z_][a-z0-9_$]*")


class ResultCache:
    """``run_query`` results by (query text, row cap, time cap), least recently used out first.

    Bounded by :data:`CACHE_SIZE` results and :data:`CACHE_CELLS` cells. Only successful results
    are stored (an error, an interrupt, out of memory are run again). A hit returns a fresh copy
    (the caller may change its lists).
    """

    def __init__(self, size: int = CACHE_SIZE, cells: int = CACHE_CELLS):
        self.size, self.cells = size, cells
        self._results: OrderedDict[tuple[str, int, float], tuple[dict[str, Any], int]] = OrderedDict()
        self._held = 0

    def get(self, key: tuple[str, int, float]) -> dict[str, Any] | None:
        """A copy of the result stored under ``key``, or None."""
        hit = self._results.get(key)
        if hit is None:
            return None
        self._results.move_to_end(key)
        out = hit[0]
        return {**out, "columns": list(out["columns"]), "rows": [list(r) for r in out["rows"]]}

    def put(self, key: tuple[str, int, float], out: dict[str, Any]) -> None:
        """Store a copy of ``out`` under ``key`` (older results go while over a bound)."""
        weight = len(out["rows"]) * max(1, len(out["columns"])) + len(key[0]) // CELL_CHARS + 1
        if key in self._results:
            self._held -= self._results.pop(key)[1]
        copy = {**out, "columns": list(out["columns"]), "rows": [list(r) for r in out["rows"]]}
        self._results[key] = (copy, weight)
        self._held += weight
        while self._results and (len(self._results) > self.size or self._held > self.cells):
            self._held -= self._results.popitem(last=False)[1][1]

    def __len__(self) -> int:
        return len(self._results)


@functools.cache
def unstable_functions() -> frozenset[str]:
    """DuckDB's functions whose result is not fixed by their arguments and the data (names, lower case).

    From DuckDB's own catalog: table and pragma functions (catalog views, memory, files, ``query``),
    and scalar functions not ``CONSISTENT`` (``random``, ``uuid``, ``nextval``, ``current_date``, …)
    or with side effects, less :data:`CALENDAR`.
    """
    import duckdb

    con = duckdb.connect(config={"enable_external_access": False, "autoload_known_extensions": False})
    try:
        rows = con.execute(
            "SELECT function_name, function_type, stability, has_side_effects FROM duckdb_functions()"
        ).fetchall()
    finally:
        con.close()
    return (
        frozenset(
            str(name).lower()
            for name, kind, stability, effects in rows
            if kind in ("table", "table_macro", "pragma")
            or stability in ("VOLATILE", "CONSISTENT_WITHIN_QUERY")
            or effects
        )
        - CALENDAR
    )


@functools.lru_cache(maxsize=4096)
def cacheable(sql: str) -> bool:
    """Whether ``sql`` is one read query whose result is fixed by the data (so it may be cached).

    Conservative, on the text (a query that is not cacheable just runs): one statement (no ``;``
    but a trailing one) that starts with ``SELECT``, ``WITH``, ``FROM`` or ``(``, and no word of it
    (identifiers, keywords, words inside strings and quotes alike) that names an unstable function
    (:func:`unstable_functions`), a sample, a moment (``now``, ``today``), a pragma or a catalog
    function (:data:`UNCACHED_PREFIXES`). A query of a session that has created something
    (a temporary table, a variable, a macro) is never cached: see ``SqlSession``.
    """
    text = sql.strip().rstrip(";").lower()
    if ";" in text or not text.startswith(("select", "with", "from", "(")):
        return False
    words = set(_WORD.findall(text))
    if words & UNCACHED_WORDS or not words.isdisjoint(unstable_functions()):
        return False
    return not any(w.startswith(UNCACHED_PREFIXES) for w in words)


class Database:
    """A world's DuckDB file, read-only with :data:`SETTINGS` (one per world and process).

    The file's name may go as soon as this is made: it holds a descriptor, and each DuckDB
    instance (``con`` in this process, the worker's) opens a copy of it (:meth:`materialize`).
    ``con`` is for trusted queries (task synthesis, gates); the sessions of episodes run in the
    worker (:meth:`session`). ``results`` caches the results of cacheable queries of sessions
    that created nothing (in this process: a hit never reaches the worker).
    """

    def __init__(self, path: str):
        self.path = path
        self.pid = os.getpid()
        self.id = next(_DB_IDS)
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.results = ResultCache()
        self._con: Any = None
        _LIVE.add(self)
        weakref.finalize(self, _release, self.fd, self.id, self.pid)

    @property
    def con(self) -> Any:
        """This process's own DuckDB connection to the database (opened on first use), for trusted queries."""
        if self._con is None:
            import duckdb

            with self.materialize() as (path, settings):
                self._con = duckdb.connect(path, read_only=True, config=settings)
            _LIVE.add(self._con)
        return self._con

    @contextlib.contextmanager
    def materialize(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """A copy of the file under a new name, with the settings to open it; the copy's name goes after."""
        from toolgym.synth.sql.world import _scratch

        folder = tempfile.mkdtemp(prefix="toolgym-sql-", dir=_scratch())
        try:
            path = os.path.join(folder, "world.duckdb")
            size, offset = os.fstat(self.fd).st_size, 0
            with open(path, "wb") as out:
                while offset < size:
                    offset += os.sendfile(out.fileno(), self.fd, offset, size - offset)
            yield path, dict(SETTINGS)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def session(self, isolated: bool = True) -> Any:
        """A new connection for one episode: a :class:`RemoteSession` in the worker, or a local DuckDB cursor."""
        if isolated:
            return RemoteSession(self)
        cursor = self.con.cursor()
        _LIVE.add(cursor)
        return cursor


_DB_IDS = itertools.count()
_SESSION_IDS = itertools.count()


def _release(fd: int, db: int, owner: int) -> None:
    """A database's finalizer: close its descriptor and drop it from the worker (in its own process only)."""
    if os.getpid() == owner:
        os.close(fd)
        w = _worker._WORKER
        if w is not None and w.pid == owner:
            w.send("drop", db)


class RemoteSession:
    """An episode's connection to a database in this process's worker (:mod:`toolgym.synth.sql.worker`).

    ``restarted`` turns true when the worker was restarted since this session's last query (its
    temporary objects are gone); the reader resets it.
    """

    def __init__(self, db: Database):
        self.db = db
        self.sid = next(_SESSION_IDS)
        self.worker = _worker.worker()
        self.generation: int | None = None  # the worker generation of its last query (None: none yet)
        self.restarted = False

    def query(self, sql: str, row_cap: int, time_cap_s: float) -> dict[str, Any]:
        """Run ``sql`` in the worker (see :meth:`toolgym.synth.sql.worker.Worker.query`).

        Raises:
            QueryFailed: The query's error (:class:`WorkerLost` when the worker was killed).
        """
        w = self.worker
        try:
            out = w.query(self.db.id, self.db.materialize, self.sid, sql, (row_cap, time_cap_s, MEMORY_LIMIT))
        except WorkerLost:
            self.generation = None  # the message says so; the next query starts afresh
            raise
        except QueryFailed:
            self._saw(w.generation)
            raise
        self._saw(w.generation)
        return out

    def _saw(self, generation: int) -> None:
        if self.generation is not None and generation != self.generation:
            self.restarted = True
        self.generation = generation

    def close(self) -> None:
        """Close the session in the worker (what it created goes with it)."""
        self.worker.send("close", self.db.id, self.sid)


def run_query(
    cursor: Any,
    sql: str,
    row_cap: int = ROW_CAP,
    time_cap_s: float = TIME_CAP_S,
    cache: ResultCache | None = None,
) -> dict[str, Any]:
    """Run ``sql`` on an episode's cursor under the caps; the compact result.

    Args:
        cursor: The episode's DuckDB connection (:meth:`Database.session`).
        sql: The statement(s), as the policy wrote them (DuckDB runs them and returns the last result).
        row_cap: Rows shown at most.
        time_cap_s: Seconds before the statement is interrupted.
        cache: The database's result cache, when the caller has checked the query and the session
            may use it (:func:`cacheable`); a hit is returned without running anything.

    Returns:
        ``{"columns": [names], "rows": [[values]], "row_count": n}`` with ``"truncated": true``
        and a note when more than ``row_cap`` rows came back (``row_count`` is then ``"> cap"``
        as a string: counting the rest would run the query to its end).

    Raises:
        ToolError: DuckDB's error (refused by the sandbox, a syntax error, interrupted by the time
            cap, out of memory), saying what to do.
    """
    key = (sql, row_cap, time_cap_s)
    hit = cache.get(key) if cache is not None else None
    if hit is not None:
        return hit
    out = _run(cursor, sql, row_cap, time_cap_s)
    if cache is not None:
        cache.put(key, out)
    return out


def _run(cursor: Any, sql: str, row_cap: int, time_cap_s: float) -> dict[str, Any]:
    """:func:`run_query` without the cache: in the worker for a :class:`RemoteSession`, else here."""
    try:
        if isinstance(cursor, RemoteSession):
            return cursor.query(sql, row_cap, time_cap_s)
        return _worker.execute(cursor, sql, row_cap, time_cap_s, MEMORY_LIMIT)
    except QueryFailed as exc:
        raise ToolError(str(exc)) from None
