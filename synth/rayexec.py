"""The Ray executor: a run's worlds on ``workers`` Ray actors, on one machine or many (``toolgym[ray]``).

It follows the protocol of :mod:`toolgym.synth.executors` (an ordered map over world indices):
``workers`` actors each run one world at a time, and each holds at most :data:`DEPTH` worlds
(one running, the next queued, so an actor never waits on the driver). A world goes to the actor
with the fewest queued; results are yielded in index order with at most ``4 × workers`` worlds
between the oldest unfinished one and the newest submitted, as the local pool does. As each
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
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any, TypeVar

from toolgym.envs.raypool import actor_died, connect, disconnect, import_ray
from toolgym.errors import ExecutorError
from toolgym.synth.config import SynthConfig
from toolgym.synth.executors import SYNTH_GC_THRESHOLDS

R = TypeVar("R")

#: Worlds queued on one actor at once (one running, one waiting).
DEPTH = 2


class WorldActor:
    """One Ray actor that runs world functions (the collector at :data:`SYNTH_GC_THRESHOLDS`)."""

    def __init__(self) -> None:
        gc.set_threshold(*SYNTH_GC_THRESHOLDS)

    def run(self, fn: Callable[[SynthConfig, int, int], Any], config: SynthConfig, w: int, skip: int) -> Any:
        """``fn(config, w, skip)``."""
        return fn(config, w, skip)


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
        owner: dict[Any, tuple[int, int]] = {}  # ref -> (world, actor)
        refs: dict[int, Any] = {}  # world -> ref, submitted and not yet yielded
        fn_ref, config_ref = ray.put(fn), ray.put(config)
        head = w = start_w
        try:
            while True:
                while w < head + self.window and min(queued) < DEPTH:
                    a = queued.index(min(queued))
                    ref = self._actors[a].run.remote(fn_ref, config_ref, w, skip if w == start_w else 0)
                    owner[ref], refs[w] = (w, a), ref
                    queued[a] += 1
                    w += 1
                running = [r for r in owner if owner[r][1] >= 0]
                done, _ = ray.wait(running, num_returns=1)
                for ref in done:
                    queued[owner[ref][1]] -= 1
                    owner[ref] = (owner[ref][0], -1)  # finished, waiting to be yielded in order
                while head in refs and owner[refs[head]][1] < 0:
                    ref = refs.pop(head)
                    del owner[ref]
                    head += 1
                    yield _result(ray, ref)
        finally:
            for ref in owner:
                try:
                    ray.cancel(ref, force=False)  # the queued ones; __exit__ kills the actors
                except Exception:  # noqa: BLE001 - a finished or lost world needs no cancel
                    pass


def _result(ray: Any, ref: Any) -> Any:
    """A finished world's result; an actor's second death as ExecutorError."""
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
