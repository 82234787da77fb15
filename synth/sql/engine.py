"""The SQL sandbox: DuckDB's own settings, a watchdog for time, compact results.

Security comes from the database engine, not from parsing SQL here:

* the file is opened ``read_only``: every write (``CREATE``, ``INSERT``, ``UPDATE``, ``DROP``,
  ``COPY … FROM``) is refused by DuckDB;
* ``enable_external_access=false``: no file or network access from SQL (``read_csv``,
  ``COPY … TO``, ``ATTACH``, ``EXPORT DATABASE``, ``INSTALL``/``LOAD``, ``httpfs`` URLs, ``glob``),
  with extension autoloading and autoinstalling off as well;
* ``memory_limit`` (:data:`MEMORY_LIMIT`) with no temp directory to spill into: a memory bomb
  fails with an out-of-memory error; ``threads=1``: one query never takes the host's cores;
* ``lock_configuration=true``, set last: no ``SET``/``PRAGMA``/``RESET`` can loosen any of it;
* time: DuckDB has no statement timeout, so a process-wide :class:`Watchdog` thread calls the
  connection's ``interrupt()`` when a query runs past its cap (:data:`TIME_CAP_S`).

Each episode gets its own :class:`Session`, a DuckDB cursor (a connection of its own to the shared
database): what a session may still create (temporary tables, ``SET VARIABLE``) lives in that
connection only and is gone when the episode ends, so episodes never see each other's.

Every failure (a syntax error, a refused statement, an interrupt, out of memory) is raised as
:class:`toolgym.envs.tools.ToolError` with DuckDB's message: an error observation, after which the
next query runs normally.
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import math
import os
import threading
import time
import weakref
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
#: The settings a world's database is opened with (see the module docstring).
SETTINGS: dict[str, Any] = {
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "memory_limit": MEMORY_LIMIT,
    "threads": 1,
    "temp_directory": "",
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


class Database:
    """A world's DuckDB file opened read-only with :data:`SETTINGS` (one per world and process)."""

    def __init__(self, path: str):
        import duckdb

        self.path = path
        self.pid = os.getpid()
        self.con = duckdb.connect(path, read_only=True, config=dict(SETTINGS))
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


def run_query(cursor: Any, sql: str, row_cap: int = ROW_CAP, time_cap_s: float = TIME_CAP_S) -> dict[str, Any]:
    """Run ``sql`` on an episode's cursor under the caps; the compact result.

    Args:
        cursor: The episode's DuckDB connection (:meth:`Database.session`).
        sql: The statement(s), as the policy wrote them (DuckDB runs them and returns the last result).
        row_cap: Rows shown at most.
        time_cap_s: Seconds before the statement is interrupted.

    Returns:
        ``{"columns": [names], "rows": [[values]], "row_count": n}`` with ``"truncated": true``
        and a note when more than ``row_cap`` rows came back (``row_count`` is then ``"> cap"``
        as a string: counting the rest would run the query to its end).

    Raises:
        ToolError: DuckDB's error (refused by the sandbox, a syntax error, interrupted by the time
            cap, out of memory), saying what to do.
    """
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
