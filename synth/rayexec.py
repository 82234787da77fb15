"""The Ray executor: a run's worlds on ``workers`` Ray actors, on one machine or many (``toolgym[ray]``).

It follows the protocol of :mod:`toolgym.synth.executors` (an ordered map over world indices):
``workers`` actors each run one call at a time, a *chunk* of consecutive worlds,
and each holds at most :data:`DEPTH` chunks (one running, the next queued, so an actor never
waits on the driver). A chunk goes to the actor with the fewest queued; results are yielded in
index order with at most ``4 × workers`` chunks between the oldest unfinished one and the newest
submitted. Why chunks: a Ray actor call costs ~1–2 ms of driver and transport work, as much as a
whole cheap world (trip: ~10 ms a task per worker), and one call per world measured +18% over the
local pool at 2 workers (5,000 trip tasks, quiet machine). The chunk size adapts: one world until
a call has finished, then as many worlds as fill :data:`CALL_SECONDS` at the measured seconds per
world (at most :data:`MAX_CHUNK`), so a cheap family's calls carry several worlds and a slow one's
(a codeagent world takes ~1 s) carry one and never hold a finished world back. As each
world is a pure function of ``(config, w, skip)``, the rows are the local pool's, byte for byte.

The runtime: ``with executor:`` joins the runtime the process already joined (``toolgym synth
--executor ray --address HOST:PORT`` joins it first, see :func:`toolgym.envs.raypool.connect`),
else ``RAY_ADDRESS``, else starts a local one of ``workers`` CPUs; a runtime it started or joined
itself it leaves on exit. Leaving the block kills the actors (their worlds are not written, a
resume redoes them). Every node needs the same toolgym installed (Ray ships the call, not the code).

A dead actor (killed, out of memory, its node gone): Ray restarts it once and runs its queued
worlds again (a world is pure, so the rows do not change); a second death stops the run with
:class:`~toolgym.errors.ExecutorError`, its committed batches kept (rerun to resume).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any, TypeVar

from toolgym.envs.raypool import actor_died, connect, disconnect, import_ray
from toolgym.errors import ExecutorError
from toolgym.synth.config import SynthConfig
from toolgym.synth.executors import SYNTH_GC_THRESHOLDS

R = TypeVar("R")

#: Chunks queued on one actor at once (one running, one waiting).
DEPTH = 2
#: The actor call's target length in seconds, and the most worlds one call carries (see the module docstring).
CALL_SECONDS, MAX_CHUNK = 0.05, 16


class WorldActor:
    """One Ray actor that runs world functions (the collector at :data:`SYNTH_GC_THRESHOLDS`)."""

    def __init__(self) -> None:
        gc.set_threshold(*SYNTH_GC_THRESHOLDS)

    def run(
        self, fn: Callable[[SynthConfig, int, int], Any], config: SynthConfig, w: int, n: int, skip: int
    ) -> tuple[list[Any], float]:
        """(``[fn(config, w, skip), fn(config, w + 1, 0), …]`` for ``n`` worlds, the seconds they took)."""
        t0 = time.perf_counter()
        return [fn(config, w + i, skip if i == 0 else 0) for i in range(n)], time.perf_counter() - t0


class RayExecutor:
    """``workers`` Ray actors, worlds yielded in index order (see the module docstring).

    Args:
        workers: Actors (>= 1), one CPU of the cluster each.

    Raises:
        ValueError: ``workers`` < 1.
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.window = 4 * workers
        self._actors: list[Any] = []
        self._owns_runtime = False

    def __enter__(self) -> RayExecutor:
        ray = import_ray()
        self._owns_runtime = connect(num_cpus=self.workers)
        remote = ray.remote(num_cpus=1, max_restarts=1, max_task_retries=1)(WorldActor)
        self._actors = [remote.remote() for _ in range(self.workers)]
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        actors, self._actors = self._actors, []
        if actors:
            ray = import_ray()
            for actor in actors:
                ray.kill(actor)
        if self._owns_runtime:
            self._owns_runtime = False
            disconnect()

    def map_ordered(
        self, fn: Callable[[SynthConfig, int, int], R], config: SynthConfig, start_w: int, skip: int
    ) -> Generator[R, None, None]:
        """See :meth:`toolgym.synth.executors.Executor.map_ordered`.

        Raises:
            RuntimeError: Outside ``with executor:`` (no actors yet).
            ExecutorError: An actor died twice.
        """
        if not self._actors:
            raise RuntimeError("RayExecutor.map_ordered needs `with executor:` first (the actors start there)")
        ray = import_ray()
        queued = [0] * len(self._actors)
        owner: dict[Any, tuple[int, int]] = {}  # ref -> (chunk's first world, actor)
        refs: dict[int, tuple[Any, int]] = {}  # chunk's first world -> (ref, worlds), not yet yielded
        fn_ref, config_ref = ray.put(fn), ray.put(config)
        head = w = start_w
        per_world: float | None = None  # seconds, from the last finished chunk
        try:
            while True:
                n = 1 if per_world is None else max(1, min(MAX_CHUNK, int(CALL_SECONDS / max(per_world, 1e-6))))
                while w < head + self.window * n and min(queued) < DEPTH:
                    a = queued.index(min(queued))
                    ref = self._actors[a].run.remote(fn_ref, config_ref, w, n, skip if w == start_w else 0)
                    owner[ref], refs[w] = (w, a), (ref, n)
                    queued[a] += 1
                    w += n
                running = [r for r in owner if owner[r][1] >= 0]
                done, _ = ray.wait(running, num_returns=1)
                for ref in done:
                    queued[owner[ref][1]] -= 1
                    owner[ref] = (owner[ref][0], -1)  # finished, waiting to be yielded in order
                while head in refs and owner[refs[head][0]][1] < 0:
                    ref, n_done = refs.pop(head)
                    del owner[ref]
                    head += n_done
                    results, seconds = _result(ray, ref)
                    per_world = seconds / n_done
                    yield from results
        finally:
            for ref in owner:
                try:
                    ray.cancel(ref, force=False)  # the queued ones; __exit__ kills the actors
                except Exception:  # noqa: BLE001 - a finished or lost world needs no cancel
                    pass


def _result(ray: Any, ref: Any) -> tuple[list[Any], float]:
    """A finished chunk: (its results in world order, the seconds they took).

    Raises:
        ExecutorError: the actor died twice; any error of the world function itself, as raised.
    """
    try:
        return ray.get(ref)
    except Exception as exc:
        if actor_died(exc):
            raise ExecutorError(
                "a Ray synthesis actor died twice (killed, out of memory, or its node lost); the dataset keeps "
                "every committed batch: rerun the same command to resume"
            ) from exc
        cause = getattr(exc, "cause", None)  # a RayTaskError: the world function's own exception
        raise (cause if isinstance(cause, BaseException) else exc) from None


__all__ = ["RayExecutor", "WorldActor"]
