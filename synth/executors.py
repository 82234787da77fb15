"""Executors: how a run's worlds are computed, behind one protocol (an ordered map over world indices).

An executor maps a world function ``fn(config, w, skip)`` (in practice
:func:`toolgym.synth.candidate.synthesize_world`) over ``w = start_w, start_w + 1, …`` and yields
the results **in index order**, with a bounded number of worlds in flight. The stream is
endless; the consumer (:func:`toolgym.synth.run.synthesize`) stops when enough tasks shipped. As
results come in index order and each is a pure function of ``(config, w, skip)``, the rows a
run writes do not depend on the executor or its worker count (that is why ``executor`` and
``workers`` are left out of :meth:`~toolgym.synth.config.SynthConfig.resume_key`).

The protocol, for a new executor (a Ray one: one module plus one line in ``toolgym.EXECUTORS``):

* the table's entry is a factory ``(workers: int) -> Executor``; building it starts nothing;
* ``with executor:`` starts the workers and stops them on exit, whatever happened (``__exit__``
  leaves no live worker behind, in-flight work included);
* ``map_ordered`` returns a generator; a consumer that stops early (``break``, an exception)
  closes it, and the executor cancels the worlds not started yet;
* ``fn`` and ``config`` must be picklable (a module-level function, a pydantic model).

The local executor forks its pool in ``__enter__``, so the run enters it *before* opening the
DuckDB dataset: forking a process that already runs DuckDB's threads is unsafe. It is a
:class:`concurrent.futures.ProcessPoolExecutor`, not a ``multiprocessing.Pool``: ``Pool.terminate``
kills workers wherever they are, and a worker killed while it sends a large world result leaves
half a message in the result pipe, on which the pool's result thread then waits forever (a
finished ``toolgym synth --workers 2`` once hung so, its rows all written). Leaving the block
instead cancels the worlds not started and waits for the running ones (at most ``workers + 1``
worlds, a second or so each); nothing is killed mid-message. Workers ignore SIGINT: on Ctrl-C the
parent stops the run (every committed batch is kept) and the workers finish their world and exit.
Workers die with their parent (a ``kill -9`` of the run leaves none behind, see ``_init_worker``).
"""

from __future__ import annotations

import ctypes
import gc
import multiprocessing as mp
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from types import TracebackType
from typing import Protocol, TypeVar

from toolgym.errors import ExecutorError
from toolgym.synth.config import SynthConfig

#: What a world function returns (:class:`~toolgym.synth.candidate.WorldResult` in a run).
R = TypeVar("R")


class Executor(Protocol):
    """Runs a world function over world indices and yields the results in index order."""

    workers: int

    def __enter__(self) -> Executor:
        """Start the workers (before any thread-starting resource such as DuckDB is opened)."""
        ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop every worker, in-flight work included."""
        ...

    def map_ordered(
        self, fn: Callable[[SynthConfig, int, int], R], config: SynthConfig, start_w: int, skip: int
    ) -> Generator[R, None, None]:
        """``fn(config, w, skip if w == start_w else 0)`` for ``w = start_w, start_w + 1, …``, in order.

        Args:
            fn: The world function (picklable).
            config: The run's settings (picklable).
            start_w: The first world index.
            skip: Candidates of world ``start_w`` already done (a resumed run).

        Returns:
            An endless generator of results in index order; close it to stop early.
        """
        ...


#: Collector thresholds while synthesizing (Python's default is 700, 10, 10). A world's tables are
#: up to ~10^5 long-lived dicts that every full collection walks again; collecting less often cut a
#: worker's CPU per shipped domains task by 10-17% (same worlds, side by side). Synthesis makes few
#: reference cycles, so memory is unchanged.
SYNTH_GC_THRESHOLDS = (100_000, 50, 1000)


class SerialExecutor:
    """Every world in this process, one after the other (no worker, nothing in flight).

    Inside the ``with`` block the collector runs at :data:`SYNTH_GC_THRESHOLDS` (restored after).

    Args:
        workers: Ignored (accepted so every table entry has the same factory signature).
    """

    def __init__(self, workers: int = 1) -> None:
        self.workers = 1
        self._gc: tuple[int, int, int] | None = None

    def __enter__(self) -> SerialExecutor:
        self._gc = gc.get_threshold()
        gc.set_threshold(*SYNTH_GC_THRESHOLDS)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._gc is not None:
            gc.set_threshold(*self._gc)
        return None

    def map_ordered(
        self, fn: Callable[[SynthConfig, int, int], R], config: SynthConfig, start_w: int, skip: int
    ) -> Generator[R, None, None]:
        """See :meth:`Executor.map_ordered`."""
        w = start_w
        while True:
            yield fn(config, w, skip if w == start_w else 0)
            w += 1


def _init_worker(parent: int) -> None:
    """Worker initializer: Ctrl-C is the parent's, a worker dies with its parent, collects less often.

    The collector runs at :data:`SYNTH_GC_THRESHOLDS`.

    A ``ProcessPoolExecutor`` worker blocks on its call queue forever once its parent is gone
    (the queue's write end lives on in the workers themselves), so a ``kill -9`` of ``toolgym
    synth`` would leave its workers behind for good. On Linux the kernel sends them SIGKILL when
    the parent dies (``prctl(PR_SET_PDEATHSIG)``); a parent already gone is checked after.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.set_threshold(*SYNTH_GC_THRESHOLDS)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class LocalExecutor:
    """A fork process pool on this machine, ``4 × workers`` worlds submitted ahead.

    With one worker it is the serial executor (no pool is forked). Leaving the ``with`` block
    cancels the worlds not started and waits for the running ones (see the module docstring).

    Args:
        workers: Processes (>= 1).

    Raises:
        ValueError: ``workers`` < 1.
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.window = 4 * workers
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> LocalExecutor:
        if self.workers > 1 and self._pool is None:
            pool = ProcessPoolExecutor(
                self.workers, mp_context=mp.get_context("fork"), initializer=_init_worker, initargs=(os.getpid(),)
            )
            pool.submit(int).result()  # with fork, the first submit starts every worker: now, before DuckDB
            self._pool = pool
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def map_ordered(
        self, fn: Callable[[SynthConfig, int, int], R], config: SynthConfig, start_w: int, skip: int
    ) -> Generator[R, None, None]:
        """See :meth:`Executor.map_ordered`.

        Raises:
            RuntimeError: With more than one worker, outside ``with executor:`` (the pool must be
                forked before DuckDB starts threads, so it is never forked lazily here).
            ExecutorError: A worker died (killed, out of memory), so the pool is broken.
        """
        if self.workers == 1:
            with SerialExecutor() as serial:  # its collector thresholds too
                yield from serial.map_ordered(fn, config, start_w, skip)
            return
        pool = self._pool
        if pool is None:
            raise RuntimeError("LocalExecutor.map_ordered needs `with executor:` first (the pool is forked there)")
        pending: deque[Future[R]] = deque()
        w = start_w
        try:
            while True:
                try:  # a pool broken by a dead worker refuses new submissions as well as results
                    while len(pending) < self.window:
                        pending.append(pool.submit(fn, config, w, skip if w == start_w else 0))
                        w += 1
                    result = pending.popleft().result()
                except BrokenProcessPool as exc:
                    raise ExecutorError(
                        "a synthesis worker died (killed, or out of memory); the dataset keeps every committed "
                        "batch: rerun the same command to resume"
                    ) from exc
                yield result
        finally:
            for future in pending:
                future.cancel()  # the ones a worker has not taken yet; __exit__ waits for the rest


__all__ = ["Executor", "LocalExecutor", "SerialExecutor"]
