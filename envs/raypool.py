"""A rollout pool of Ray actors that own envs and their sandbox slots (optional extra ``toolgym[ray]``).

DESIGN.md, "Scale": beyond one machine, episodes run on Ray actors. Each :class:`EnvActor` owns
``slots`` envs (one :class:`~toolgym.envs.toolenv.ToolEnv` per family and slot, each with its
sandbox); an episode **acquires** one slot of one actor on ``reset`` and **releases** it when it
ends (``terminated`` / ``truncated``), on the next ``reset``, or on ``close``. The policy stays in
the driver (the in-repo model, an endpoint client): only the env's ``reset`` and ``step`` cross
to the actor, so the pool slots under the eval runner and the GRPO rollout unchanged through one
injection point, :meth:`RayRolloutPool.make_env` (a drop-in for :func:`toolgym.envs.toolenv.make_env`).

**A dead actor** (killed, out of memory, its node gone): the episode is retried once, then
dropped and counted, never scored 0 in silence. Decision: the retry *replays* the episode on
another slot (a fresh actor replaces the dead one): the same task, the same reset seed, then the
policy's actions so far, each observation checked against the one the policy saw. An episode is a
pure function of (task, seed, actions), so the replay reaches the very state the dead actor held
and the policy's work (its tokens, the expensive part) is kept; the failed call is then made
again. A second death, or a replay whose observations differ (an env that is not deterministic),
raises :class:`~toolgym.errors.EpisodeLost`; the runners leave that episode out of their
results, and :attr:`RayRolloutPool.stats` counts it (``dropped``) with the retries and deaths.

Worlds cross to the actors as their JSON data (``world.to_json()``) and are rebuilt there with
the family's ``load_world`` (a world object may hold what does not pickle, e.g. a DuckDB
connection); each actor keeps the tasks it was sent, so a world is shipped once per actor.

Ray is imported only inside functions: importing this module never needs it.
"""

from __future__ import annotations

import math
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from toolgym.envs.sources import MemorySource
from toolgym.errors import ConfigError, EpisodeLost, ExecutorError
from toolgym.spec import TaskSpec

#: Seconds :meth:`RayRolloutPool.acquire` waits for a free slot before it refuses.
ACQUIRE_TIMEOUT_S = 600.0
#: Seconds to wait for a TCP connection to a Ray head before calling it unreachable.
CONNECT_TIMEOUT_S = 5.0


def import_ray() -> Any:
    """The ``ray`` module, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("Ray is not installed: pip install 'toolgym[ray]' (the ray extra)") from None
    return ray


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join the Ray runtime at ``address`` (or start a local one), unless one is joined already.

    Args:
        address: ``host:port`` of a running head (``ray start --head`` prints it), ``"auto"``, or
            None: ``RAY_ADDRESS`` when set, else a fresh runtime on this machine.
        num_cpus: CPUs of a fresh local runtime (None: every core); ignored when joining one.

    Returns:
        Whether this call started or joined the runtime (the caller then owns it: :func:`disconnect`).

    Raises:
        ConfigError: Ray is not installed.
        ExecutorError: ``address`` cannot be reached (one line naming it).
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    if address not in (None, "auto", "local") and not str(address).startswith("ray://"):
        check_reachable(str(address))
    options: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
    if address is None:
        options["num_cpus"] = num_cpus
    try:
        ray.init(address=address, **options)
    except Exception as exc:  # ConnectionError, TimeoutError, ValueError: whatever Ray says
        where = f"at {address!r}" if address else "on this machine"
        reason = " ".join(str(exc).split())[:200]
        raise ExecutorError(
            f"cannot reach a Ray runtime {where} ({type(exc).__name__}: {reason}); start one with "
            "`ray start --head` and pass the address it prints, or leave --address out for a local runtime"
        ) from None
    return True


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse a ``host:port`` nothing listens on, at once (``ray.init`` retries it for minutes, then crashes).

    Raises:
        ExecutorError: Not ``host:port``, or no TCP connection within ``timeout`` seconds (one line).
    """
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"--address {address!r} is not HOST:PORT (the address `ray start --head` prints)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ExecutorError(
            f"cannot reach a Ray runtime at {address!r} ({exc.strerror or type(exc).__name__}); start one with "
            "`ray start --head` and pass the address it prints, or leave --address out for a local runtime"
        ) from None


def disconnect() -> None:
    """Leave the Ray runtime (stopping it when this process started it)."""
    ray = import_ray()
    if ray.is_initialized():
        ray.shutdown()


def actor_died(exc: BaseException) -> bool:
    """Whether ``exc`` says the actor (or its worker, or its node) is gone."""
    ray = import_ray()
    return isinstance(exc, ray.exceptions.RayActorError | ray.exceptions.WorkerCrashedError)


class EnvActor:
    """One Ray actor: ``slots`` env slots, each with one env per family, and the tasks it was sent.

    Args:
        slots: Env slots (episodes at once on this actor).
        env_kwargs: ToolEnv options (``max_turns``, …) for every env it makes.
    """

    def __init__(self, slots: int, env_kwargs: dict[str, Any]) -> None:
        self.env_kwargs = env_kwargs
        self.envs: list[dict[str, Any]] = [{} for _ in range(slots)]
        self.source: MemorySource | None = None  # made with the first task (a MemorySource is never empty)

    def pid(self) -> int:
        """This actor's process id (tests kill it)."""
        import os

        return os.getpid()

    def add(self, task: TaskSpec, data: dict[str, Any]) -> None:
        """Learn a task and its world (as JSON data, rebuilt with the family's ``load_world``)."""
        import toolgym

        world = toolgym.family(task.family).load_world(data)
        if self.source is None:
            self.source = MemorySource([(task, world)])
        else:
            self.source.add(task, world)

    def reset(self, slot: int, task_id: str, family: str, seed: int) -> tuple[str, dict[str, Any]]:
        """Start task ``task_id``'s episode with reset seed ``seed`` in ``slot``: ``(obs, info)``."""
        from toolgym.envs.toolenv import make_env

        env = self.envs[slot].get(family)
        if env is None:
            env = self.envs[slot][family] = make_env(family, source=self.source, **self.env_kwargs)
        return env.reset(seed=seed, options={"task_id": task_id})  # type: ignore[no-any-return]

    def step(self, slot: int, family: str, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Step the episode in ``slot``: ``(obs, reward, terminated, truncated, info)``."""
        return self.envs[slot][family].step(action)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close every env (their sandboxes)."""
        for envs in self.envs:
            for env in envs.values():
                env.close()
            envs.clear()


@dataclass
class _Actor:
    """The driver's view of one actor: its handle, free slots and the task ids it knows."""

    handle: Any
    free: list[int]
    known: set[str] = field(default_factory=set)
    dead: bool = False


@dataclass
class Lease:
    """One acquired slot: the actor and the slot index on it."""

    actor: _Actor
    slot: int


class RayRolloutPool:
    """``actors`` Ray actors of ``slots`` env slots each; episodes acquire and release slots.

    Use as ``with RayRolloutPool(...) as pool:`` and hand :meth:`make_env` to a runner
    (``run_episodes(..., env_maker=pool.make_env)``, ``rollout(..., env_maker=pool.make_env)``).
    Thread-safe (the eval runner's threads share it). The caller joins a Ray runtime first
    (:func:`connect`), or the pool starts a local one and stops it on exit.

    Args:
        actors: Actors (each takes ``cpus_per_actor`` CPUs of the cluster).
        slots: Env slots per actor; ``actors * slots`` episodes can run at once.
        env_kwargs: ToolEnv options for every env.
        respawn: Replace a dead actor with a fresh one (the retry runs there when no other slot is free).
        cpus_per_actor: Ray CPUs each actor reserves (fractions share a CPU).

    Raises:
        ValueError: ``actors`` or ``slots`` below 1.
    """

    def __init__(
        self,
        actors: int,
        slots: int,
        env_kwargs: dict[str, Any] | None = None,
        respawn: bool = True,
        cpus_per_actor: float = 1.0,
    ) -> None:
        if actors < 1 or slots < 1:
            raise ValueError(f"a rollout pool needs actors >= 1 and slots >= 1, got {actors} and {slots}")
        self.n_actors, self.slots, self.respawn = actors, slots, respawn
        self.env_kwargs = dict(env_kwargs or {})
        self.cpus_per_actor = cpus_per_actor
        self.actors: list[_Actor] = []
        self.stats = {"episodes": 0, "actor_deaths": 0, "retried": 0, "dropped": 0}
        self._cond = threading.Condition()
        self._owns_runtime = False

    @classmethod
    def sized(cls, episodes: int, actors: int | None = None, **kwargs: Any) -> RayRolloutPool:
        """A pool for ``episodes`` at once over ``actors`` (None: the cluster's CPUs, at most ``episodes``)."""
        ray = import_ray()
        if actors is None:
            cpus = int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 1
            actors = max(1, min(episodes, cpus))
        return cls(actors, math.ceil(max(episodes, 1) / actors), **kwargs)

    def __enter__(self) -> RayRolloutPool:
        self._owns_runtime = connect()
        self.actors = [self._spawn() for _ in range(self.n_actors)]
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        ray = import_ray()
        for actor in self.actors:
            if not actor.dead:
                try:
                    ray.get(actor.handle.close.remote(), timeout=60)
                except Exception:  # noqa: BLE001 - a dying actor's sandboxes die with its process
                    pass
                ray.kill(actor.handle)
        self.actors = []
        if self._owns_runtime:
            disconnect()

    def _spawn(self) -> _Actor:
        ray = import_ray()
        remote = ray.remote(num_cpus=self.cpus_per_actor, max_restarts=0)(EnvActor)
        return _Actor(remote.remote(self.slots, self.env_kwargs), list(range(self.slots)))

    def acquire(self, timeout: float = ACQUIRE_TIMEOUT_S) -> Lease:
        """A free slot of a live actor (the one with most free slots), waiting up to ``timeout`` s.

        Raises:
            EpisodeLost: Every actor is dead and none is respawned.
            ExecutorError: No slot freed within ``timeout`` (the pool is smaller than the episodes at once).
        """
        with self._cond:
            while True:
                live = [a for a in self.actors if not a.dead]
                if not live:
                    raise EpisodeLost("every actor of the rollout pool is dead")
                best = max(live, key=lambda a: len(a.free))
                if best.free:
                    return Lease(best, best.free.pop())
                if not self._cond.wait(timeout):
                    raise ExecutorError(
                        f"no env slot freed in {timeout:.0f}s: the rollout pool has {self.n_actors} actors x "
                        f"{self.slots} slots; size it for the episodes run at once"
                    )

    def release(self, lease: Lease) -> None:
        """Give a slot back (a dead actor's slots are not reused)."""
        with self._cond:
            if not lease.actor.dead:
                lease.actor.free.append(lease.slot)
            self._cond.notify()

    def mark_dead(self, actor: _Actor) -> None:
        """Count an actor's death once and, with ``respawn``, put a fresh actor in its place."""
        with self._cond:
            if actor.dead:
                return
            actor.dead = True
            self.stats["actor_deaths"] += 1
            if self.respawn:
                self.actors[self.actors.index(actor)] = self._spawn()
            self._cond.notify_all()

    def count(self, key: str) -> None:
        """Add one to ``stats[key]`` (thread-safe)."""
        with self._cond:
            self.stats[key] += 1

    def make_env(self, family: str, source: MemorySource | None = None, **env_kwargs: Any) -> RemoteEnv:
        """A :class:`RemoteEnv` of ``family`` over ``source`` (the signature of ``toolgym.envs.toolenv.make_env``).

        Raises:
            ConfigError: ``source`` is not a MemorySource, or ``env_kwargs`` differ from the pool's
                (the actors' envs were made with the pool's).
        """
        if not isinstance(source, MemorySource):
            raise ConfigError("a Ray rollout pool's envs need a MemorySource of (task, world) pairs")
        if env_kwargs and env_kwargs != self.env_kwargs:
            raise ConfigError(f"env options {env_kwargs} differ from the rollout pool's {self.env_kwargs}")
        return RemoteEnv(self, family, source)


class RemoteEnv:
    """An env whose episodes run in a :class:`RayRolloutPool`'s slots (``reset``, ``step``, ``close``).

    Args:
        pool: The pool.
        family: The family id of its tasks.
        source: The (task, world) pairs it may be reset to (read at each reset, so a runner may
            add to it).
    """

    def __init__(self, pool: RayRolloutPool, family: str, source: MemorySource) -> None:
        self.pool, self.family, self.source = pool, family, source
        self.lease: Lease | None = None
        self.episode: tuple[str, int] | None = None  # task id, reset seed
        self.actions: list[str] = []
        self.observations: list[str] = []

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Acquire a slot and start the episode there (``options["task_id"]`` is required).

        Raises:
            ConfigError: No ``task_id`` in ``options``.
            EpisodeLost: The actor died twice (see the module docstring).
        """
        task_id = (options or {}).get("task_id")
        if task_id is None:
            raise ConfigError("a RemoteEnv is reset to a task: pass options={'task_id': ...}")
        self._release()
        self.episode, self.actions, self.observations = (str(task_id), int(seed or 0)), [], []
        self.pool.count("episodes")
        obs, info = self._call(None)  # type: ignore[misc]
        self.observations.append(obs)
        return obs, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Step the episode on its actor; the slot is released when the episode ends.

        Raises:
            RuntimeError: Not reset, or the episode already ended.
            EpisodeLost: The actor died twice (see the module docstring).
        """
        if self.lease is None:
            raise RuntimeError("RemoteEnv.step before reset (or after the episode ended)")
        out = self._call(action)
        self.actions.append(action)
        self.observations.append(out[0])
        if out[2] or out[3]:
            self._release()
        return out  # type: ignore[return-value]

    def close(self) -> None:
        """Release the slot, if one is held."""
        self._release()

    def _release(self) -> None:
        lease, self.lease = self.lease, None
        if lease is not None:
            self.pool.release(lease)

    def _call(self, action: str | None) -> tuple[Any, ...]:
        """``reset`` (``action`` None) or ``step(action)`` on the leased actor, retried once on its death."""
        for attempt in range(2):
            try:
                if self.lease is None:
                    self.lease = self.pool.acquire()
                    self._start()
                return self._remote(action)
            except EpisodeLost:  # no live actor to retry on, or a replay that saw other observations
                self.pool.count("dropped")
                raise
            except Exception as exc:
                if not actor_died(exc):
                    raise
                lease, self.lease = self.lease, None
                if lease is not None:
                    self.pool.mark_dead(lease.actor)
                if attempt == 1:
                    break
                self.pool.count("retried")
        self.pool.count("dropped")
        raise EpisodeLost(f"episode {self.episode} lost: its actor died, and again on the retry")

    def _start(self) -> None:
        """Reset the episode on the leased slot and replay its actions so far, checking each observation."""
        assert self.lease is not None and self.episode is not None
        ray = import_ray()
        actor, (task_id, seed) = self.lease.actor, self.episode
        if task_id not in actor.known:
            task, world = self.source.get(task_id)
            ray.get(actor.handle.add.remote(task, world.to_json()))
            actor.known.add(task_id)
        if not self.actions:
            return  # a fresh episode: _remote(None) resets it
        seen = [ray.get(actor.handle.reset.remote(self.lease.slot, task_id, self.family, seed))[0]]
        for action in self.actions:
            seen.append(ray.get(actor.handle.step.remote(self.lease.slot, self.family, action))[0])
        if seen != self.observations:
            raise EpisodeLost(f"episode {self.episode} lost: its replay on a fresh actor saw other observations")

    def _remote(self, action: str | None) -> tuple[Any, ...]:
        ray = import_ray()
        assert self.lease is not None and self.episode is not None
        handle, slot = self.lease.actor.handle, self.lease.slot
        if action is None:
            task_id, seed = self.episode
            return tuple(ray.get(handle.reset.remote(slot, task_id, self.family, seed)))
        return tuple(ray.get(handle.step.remote(slot, self.family, action)))


@contextmanager
def rollout_pool(
    address: str | None, episodes: int, env_kwargs: dict[str, Any] | None = None
) -> Iterator[RayRolloutPool]:
    """A pool for ``episodes`` at once on the Ray runtime at ``address``, joined for the block (the CLI's).

    Args:
        address: ``host:port`` of a Ray head, ``"auto"``, or None (``RAY_ADDRESS``, else a local runtime).
        episodes: Episodes run at once (the runner's concurrency or slots): the pool's capacity.
        env_kwargs: ToolEnv options.

    Raises:
        ConfigError: Ray is not installed.
        ExecutorError: ``address`` cannot be reached (one line).
    """
    joined = connect(address)
    try:
        with RayRolloutPool.sized(episodes, env_kwargs=env_kwargs) as pool:
            yield pool
    finally:
        if joined:
            disconnect()


__all__ = ["EnvActor", "RayRolloutPool", "RemoteEnv", "connect", "disconnect", "import_ray", "rollout_pool"]
