"""The SQL worker: a process of its own that runs the policies' queries, and its handle in the env process.

DuckDB's settings cap what its buffer manager holds and interrupt a query between vectors, but one
giant *value* escapes both: ``SELECT list(range(100000000))`` builds a single list outside the
memory limit, checks no interrupt while it does (~12 s for 1e7 items, DuckDB 2.0), and converting
it to Python objects takes more. So the queries of policies run in a worker process
(:class:`Worker`, one per env process, shared by every open database of that process) with:

* a hard deadline: the parent waits the query's time cap plus :data:`GRACE_S`; past it the worker
  is killed (SIGKILL) and restarted on the next query, the step gets an error observation, and the
  sessions of that process lose their temporary objects (each is told on its next result);
* a hard memory limit: ``RLIMIT_AS`` of :data:`WORKER_MEMORY` bytes, set by the worker on itself
  after DuckDB is loaded; an allocation past it fails inside the worker (an error, or the worker
  dies and is restarted), never in the env process.

The worker is a plain subprocess (``python -P thisfile``) talking over a socket pair with
:class:`multiprocessing.connection.Connection` framing, not a ``multiprocessing`` context: ``spawn``
and ``forkserver`` re-import the caller's ``__main__`` (a user's script without a ``__main__`` guard
would run again), and ``fork`` copies the env process's threads and memory. This module imports
only the standard library and DuckDB, so the worker starts without toolgym (~0.3 s on a quiet
machine, once per process). A world's file has no name once opened (it is unlinked: see
:mod:`toolgym.synth.sql.world`), so the worker opens a copy the parent makes from its descriptor
(:meth:`Worker.query`'s ``source``), unlinked again once open.

The handle is per process (:func:`worker`): a fork or an unpickled copy starts its own on first use
and never writes to the parent's socket. Queries of one process go through its one worker one at a
time (threads of a process share it); processes (vector envs, forked rollouts) each have their own.

Synthesis: the reference and the gate agents play through the env, so through the worker, like any
policy (one worker per synthesis process, and a copy of each world's file opened there); the
trusted queries that build tasks and draw gate answers use :attr:`engine.Database.con` in-process.
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

#: Characters a cell shows (longer text is cut with an ellipsis).
CELL_CHARS = 80
#: Seconds past a query's time cap before the parent kills the worker (the watchdog's interrupt
#: comes first for any query DuckDB can interrupt).
GRACE_S = 1.0
#: Seconds a new worker may take to start and load DuckDB (generous: a loaded machine is slow).
START_S = 120.0
#: The worker's address-space limit in bytes (``RLIMIT_AS``): DuckDB and Python loaded take ~0.5
#: GB of address space, each open database's buffer pool up to its ``memory_limit`` (256 MB).
WORKER_MEMORY = 2 * 1024**3
#: Address space (bytes) a worker may keep after a failed query: past it the worker is recycled. A
#: failed giant allocation leaves DuckDB's allocator holding most of the limit (measured: 2.09 GB of
#: 2 GiB after ``list(range(100000000))``, with ~75 MB resident), and every later list fails.
RECYCLE_AT = WORKER_MEMORY - 512 * 1024**2


class QueryFailed(Exception):
    """A query's error, as the policy should read it (raised in either process)."""


class WorkerLost(QueryFailed):
    """The worker was killed (past the hard deadline) or died (out of memory): its sessions are gone."""


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


def execute(cursor: Any, sql: str, row_cap: int, time_cap_s: float, memory_limit: str) -> dict[str, Any]:
    """Run ``sql`` on a DuckDB cursor under the time cap (:data:`WATCHDOG`); the compact result.

    Returns:
        ``{"columns": [names], "rows": [[cells]], "row_count": n}``, with ``"truncated": true``,
        ``row_count`` ``"> cap"`` and a note when more than ``row_cap`` rows came back.

    Raises:
        QueryFailed: DuckDB's error (refused, a syntax error, interrupted, out of memory), or
            Python's ``MemoryError`` converting the result.
    """
    import duckdb

    token = WATCHDOG.arm(cursor, time_cap_s)
    try:
        cursor.execute(sql)
        if cursor.description is None:
            return {"columns": [], "rows": [], "row_count": 0}
        rows = cursor.fetchmany(row_cap + 1)
        columns = [d[0] for d in cursor.description]
        cells = [[cell(v) for v in r] for r in rows[:row_cap]]
    except duckdb.InterruptException:
        raise QueryFailed(f"query stopped: it ran past the {time_cap_s:g} s time cap; narrow it") from None
    except (duckdb.OutOfMemoryException, MemoryError):
        raise QueryFailed(f"query stopped: it needed more than the {memory_limit} memory cap; aggregate more") from None
    except duckdb.Error as exc:
        raise QueryFailed(f"{type(exc).__name__}: {str(exc).strip()[:400]}") from None
    finally:
        WATCHDOG.disarm(token)
    out: dict[str, Any] = {"columns": columns, "rows": cells, "row_count": len(rows)}
    if len(rows) > row_cap:
        out["row_count"] = f"> {row_cap}"
        out["truncated"] = True
        out["note"] = f"only the first {row_cap} rows are shown; aggregate, filter or add LIMIT/OFFSET"
    return out


# ------------------------------------------------------------------ the worker process
def serve(conn: Connection) -> None:
    """The worker's loop: messages from the parent until it closes the socket.

    Messages (tuples): ``("open", db, path, settings)`` → ``("ok", None)``; ``("query", db, sid, sql,
    row_cap, time_cap_s, memory_limit)`` → ``("ok", result)``, ``("err", message)`` or, when the
    failure left the worker holding more than :data:`RECYCLE_AT`, ``("recycle", message)``; ``("close",
    db, sid)`` and ``("drop", db)`` (no answer) close a session or a database with its sessions.
    """
    import duckdb

    dbs: dict[int, Any] = {}
    sessions: dict[tuple[int, int], Any] = {}
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        op, db = msg[0], msg[1]
        if op == "close":
            cursor = sessions.pop((db, msg[2]), None)
            if cursor is not None:
                cursor.close()
        elif op == "drop":
            for key in [k for k in sessions if k[0] == db]:
                sessions.pop(key).close()
            if db in dbs:
                dbs.pop(db).close()
        elif op == "open":
            try:
                dbs[db] = duckdb.connect(msg[2], read_only=True, config=dict(msg[3]))
                conn.send(("ok", None))
            except Exception as exc:
                conn.send(("err", f"{type(exc).__name__}: {exc}"))
        elif op == "query":
            status, value = _answer(dbs, sessions, msg)
            if status == "err" and _address_space() > RECYCLE_AT:
                status = "recycle"
            conn.send((status, value))


def _address_space() -> int:
    """This process's address space in bytes (``VmSize``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _answer(dbs: dict[int, Any], sessions: dict[tuple[int, int], Any], msg: tuple[Any, ...]) -> tuple[str, Any]:
    """A ``query`` message's answer (the session's cursor opened on its first query)."""
    _, db, sid, sql, row_cap, time_cap_s, memory_limit = msg
    try:
        cursor = sessions.get((db, sid))
        if cursor is None:
            cursor = sessions[(db, sid)] = dbs[db].cursor()
        return ("ok", execute(cursor, sql, row_cap, time_cap_s, memory_limit))
    except QueryFailed as exc:
        return ("err", str(exc))
    except MemoryError:
        return ("err", f"query stopped: it needed more than the {memory_limit} memory cap; aggregate more")
    except Exception as exc:  # anything else (a closed database): an error, the worker goes on
        return ("err", f"{type(exc).__name__}: {str(exc).strip()[:400]}")


def main(argv: list[str]) -> None:
    """The worker's entry: ``argv`` is ``[script, socket fd, address-space limit in bytes]``."""
    import resource

    import duckdb  # noqa: F401  (loaded before the limit: its libraries map their pages first)

    limit = int(argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    conn = Connection(int(argv[1]))
    conn.send(("ready", os.getpid()))
    serve(conn)


# ------------------------------------------------------------------ the handle in the env process
class Worker:
    """The env process's handle on its SQL worker (started on first use, restarted after a kill).

    ``generation`` counts the worker processes started: a session opened under an older one lost
    its temporary objects. Thread-safe (one query at a time through a lock).
    """

    def __init__(self, memory: int = WORKER_MEMORY):
        self.memory = memory
        self.pid = os.getpid()
        self.generation = 0
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._open: set[int] = set()  # databases open in the current worker
        self._ready = False  # the current worker said it is up

    def _spawn(self) -> None:
        """Start a worker process (it loads DuckDB meanwhile; :meth:`_start` waits for it)."""
        parent, child = socket.socketpair()
        with child:
            self._proc = subprocess.Popen(
                [sys.executable, "-P", os.path.abspath(__file__), str(child.fileno()), str(self.memory)],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        self._conn = Connection(parent.detach())
        self._ready = False
        self.generation += 1
        self._open = set()

    def _start(self) -> None:
        """Have a worker that is up (spawned now, or the one :meth:`kill` spawned ahead)."""
        if self._proc is None:
            self._spawn()
        if self._ready:
            return
        assert self._conn is not None
        try:
            if self._conn.poll(START_S):
                self._conn.recv()
                self._ready = True
                return
            why = f"did not start within {START_S:g} s"
        except (EOFError, OSError):
            why = "failed to start"
        self.kill(respawn=False)
        raise WorkerLost(f"the SQL worker {why}")

    def kill(self, respawn: bool = True) -> None:
        """Stop the worker now (SIGKILL); with ``respawn``, start the next one already (the next query waits for it)."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.send_signal(signal.SIGKILL)
            if self._proc is not None:
                self._proc.wait()
            if self._conn is not None:
                self._conn.close()
            self._proc, self._conn, self._open, self._ready = None, None, set(), False
            if respawn:
                self._spawn()

    def _exchange(self, msg: tuple[Any, ...], seconds: float, lost: str) -> Any:
        """Send ``msg`` and wait ``seconds`` for the answer; kill the worker and raise past them."""
        assert self._conn is not None
        try:
            self._conn.send(msg)
            if self._conn.poll(seconds):
                status, value = self._conn.recv()
                if status == "err":
                    raise QueryFailed(value)
                if status == "ok":
                    return value
                why = value  # "recycle": the failure left the worker without memory for the next query
            else:
                why = lost
        except (EOFError, OSError):
            why = "the query brought the SQL worker down (it ran out of memory)"
        self.kill()
        raise WorkerLost(f"{why}; the SQL session restarted: temporary tables and variables made before are gone")

    def query(self, db: int, source: Callable[[], Any], sid: int, sql: str, caps: tuple[int, float, str]) -> Any:
        """Run ``sql`` in session ``sid`` of database ``db``; its result.

        Args:
            db: The database's id in this process.
            source: Opens the database: a context manager giving a path the worker may open, called
                when the current worker has not opened ``db`` yet.
            sid: The session's id (its cursor is opened on its first query).
            sql: The query.
            caps: ``(row_cap, time_cap_s, memory_limit)``.

        Raises:
            QueryFailed: The query's error.
            WorkerLost: Past the hard deadline (time cap + :data:`GRACE_S`), or the worker died.
        """
        row_cap, time_cap_s, memory_limit = caps
        with self._lock:
            self._start()
            if db not in self._open:
                with source() as (path, settings):
                    self._exchange(("open", db, path, settings), START_S, "the SQL worker did not open the database")
                self._open.add(db)
            msg = ("query", db, sid, sql, row_cap, time_cap_s, memory_limit)
            late = f"query stopped: it ran past the {time_cap_s:g} s time cap and was killed; narrow it"
            return self._exchange(msg, time_cap_s + GRACE_S, late)

    def send(self, *msg: Any) -> None:
        """Send a message that has no answer (``close``, ``drop``) if the worker is up; else nothing."""
        with self._lock:
            if self._conn is None or (len(msg) > 1 and msg[1] not in self._open):
                return
            try:
                self._conn.send(msg)
                if msg[0] == "drop":
                    self._open.discard(msg[1])
            except OSError:
                self.kill()


_WORKER: Worker | None = None
_WORKER_LOCK = threading.Lock()


def worker() -> Worker:
    """This process's worker handle (a fork or a new process makes its own)."""
    global _WORKER
    with _WORKER_LOCK:
        if _WORKER is None or _WORKER.pid != os.getpid():
            _WORKER = Worker()
        return _WORKER


def _after_fork_in_child() -> None:
    global _WORKER_LOCK
    _WORKER_LOCK = threading.Lock()
    WATCHDOG.reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


if __name__ == "__main__":
    main(sys.argv)
