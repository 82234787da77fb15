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
  connection's ``interrupt()`` when a query runs past its cap (:data:`TIME_CAP_S`).

Each episode gets its own session, a DuckDB cursor (a connection of its own to the shared
database): what a session may still create (temporary tables, ``SET VARIABLE``) lives in that
connection only and is gone when the episode ends, so episodes never see each other's.

Results are cached per database (:class:`ResultCache`, see :func:`cacheable` for which): the data
never changes, so a read query of a session that has created nothing gives the same rows every
time, and a GRPO group's rollouts, a task's gate episodes and its reference repeat each other's
queries. A cache hit costs ~10 µs against ~0.2-1 ms for DuckDB to plan and run even a small query.

Every failure (a syntax error, a refused statement, an interrupt, out of memory) is raised as
:class:`toolgym.envs.tools.ToolError` with DuckDB's message: an error observation, after which the
next query runs normally.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import itertools
import math
import os
import re
import threading
import time
import weakref
from collections import OrderedDict
from typing import Any

from toolgym.envs.tools import ToolError

#: Rows a ``run_sql`` result shows; more are cut and the result says so (``truncated``).
ROW_CAP = 50
#: Characters a cell shows (longer text is cut with an ellipsis).
CELL_CHARS = 80
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


class Watchdog:
    """One daemon thread per process that interrupts statements past their deadline.

    Arming must cost the query nothing: waking a thread per query (a ``threading.Timer``, or a
    notify on every arm) hands the GIL over and cost ~1 ms a query in synthesis. So the thread polls
    every :attr:`POLL_S` while queries come (a statement stops at most that late), and sleeps
    until the next arm after :attr:`IDLE_S` without one; only that arm notifies. A fork starts its
    own thread on first use (threads do not survive a fork).
    """

    POLL_S = 0.05
    IDLE_S = 1.0

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: dict[int, tuple[float, Any]] = {}
        self._ids = itertools.count()
        self._pid = -1
        self._idle = True
        self._last_arm = 0.0

    def arm(self, target: Any, seconds: float) -> int:
        """Interrupt ``target`` (anything with ``interrupt()``) in ``seconds`` unless disarmed first."""
        with self._cond:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._armed, self._idle = {}, True
                threading.Thread(target=self._loop, name="toolgym-sql-watchdog", daemon=True).start()
            token = next(self._ids)
            self._last_arm = now = time.monotonic()
            self._armed[token] = (now + seconds, target)
            if self._idle:
                self._idle = False
                self._cond.notify()
            return token

    def reset_after_fork(self) -> None:
        """In a forked child: new lock, nothing armed, no thread (the parent's may have held the lock at the fork)."""
        self._cond = threading.Condition()
        self._armed, self._idle, self._pid = {}, True, -1

    def disarm(self, token: int) -> None:
        """Cancel an arming."""
        with self._cond:
            self._armed.pop(token, None)

    def _loop(self) -> None:
        pid = os.getpid()
        with self._cond:
            while pid == os.getpid():
                now = time.monotonic()
                for token, (deadline, target) in list(self._armed.items()):
                    if deadline <= now:
                        del self._armed[token]
                        target.interrupt()
                if not self._armed and now - self._last_arm > self.IDLE_S:
                    self._idle = True
                    self._cond.wait()
                else:
                    self._cond.wait(self.POLL_S)


WATCHDOG = Watchdog()


def _after_fork_in_child() -> None:
    _orphan_inherited()
    WATCHDOG.reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


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
    """A world's DuckDB file opened read-only with :data:`SETTINGS` (one per world and process).

    ``results`` caches the results of cacheable queries of sessions that created nothing.
    """

    def __init__(self, path: str):
        import duckdb

        self.path = path
        self.pid = os.getpid()
        self.con = duckdb.connect(path, read_only=True, config=dict(SETTINGS))
        self.results = ResultCache()
        _LIVE.add(self)
        _LIVE.add(self.con)

    def session(self) -> Any:
        """A new connection to the database for one episode (a DuckDB cursor)."""
        cursor = self.con.cursor()
        _LIVE.add(cursor)
        return cursor


def cell(value: Any) -> Any:
    """A result value as JSON: dates ISO, decimals and floats as numbers (NaN as null), long text cut."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="minutes" if not value.second else "seconds")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


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
    """:func:`run_query` without the cache."""
    import duckdb

    token = WATCHDOG.arm(cursor, time_cap_s)
    try:
        cursor.execute(sql)
        if cursor.description is None:
            return {"columns": [], "rows": [], "row_count": 0}
        rows = cursor.fetchmany(row_cap + 1)
        columns = [d[0] for d in cursor.description]
    except duckdb.InterruptException:
        raise ToolError(f"query stopped: it ran past the {time_cap_s:g} s time cap; narrow it") from None
    except duckdb.OutOfMemoryException:
        raise ToolError(f"query stopped: it needed more than the {MEMORY_LIMIT} memory cap; aggregate more") from None
    except duckdb.Error as exc:
        raise ToolError(f"{type(exc).__name__}: {str(exc).strip()[:400]}") from None
    finally:
        WATCHDOG.disarm(token)
    out: dict[str, Any] = {
        "columns": columns,
        "rows": [[cell(v) for v in r] for r in rows[:row_cap]],
        "row_count": len(rows),
    }
    if len(rows) > row_cap:
        out["row_count"] = f"> {row_cap}"
        out["truncated"] = True
        out["note"] = f"only the first {row_cap} rows are shown; aggregate, filter or add LIMIT/OFFSET"
    return out
