"""Where a ToolEnv gets its tasks: memory, a DuckDB dataset, or on-the-fly synthesis.

A source answers two questions: ``pick(rng)`` (a task drawn deterministically from the env's
seeded generator) and ``get(task_id)``. Worlds are rebuilt from their JSON once and cached in a
small LRU, so reset cost stays flat however many episodes run; dataset connections are opened
read-only and lazily in each process, so envs pickle and run in ``AsyncVectorEnv`` workers.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from toolgym.errors import ConfigError, UnknownNameError

if TYPE_CHECKING:
    from toolgym.envs.toolenv import EnvConfig
    from toolgym.spec import TaskSpec
    from toolgym.synth.family import Family


class LRU(OrderedDict[Any, Any]):
    """A tiny bounded mapping: the least recently used entry goes first."""

    def __init__(self, size: int = 64):  # a default, because unpickling calls cls()
        super().__init__()
        self.size = size

    def lookup(self, key: Any) -> Any:
        """The value for ``key`` (marking it recently used), or None."""
        if key in self:
            self.move_to_end(key)
            return self[key]
        return None

    def store(self, key: Any, value: Any) -> Any:
        """Insert, evicting the oldest entry past the bound."""
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)
        return value


class TaskSource(ABC):
    """Tasks (with their world objects) for one family."""

    @abstractmethod
    def pick(self, rng: np.random.Generator) -> tuple[TaskSpec, Any]:
        """A task drawn with the env's generator."""

    @abstractmethod
    def get(self, task_id: str) -> tuple[TaskSpec, Any]:
        """The task with this id; unknown ids raise with the closest known ones."""

    def close(self) -> None:  # noqa: B027 - optional hook, most sources hold nothing
        """Release files or connections."""


class MemorySource(TaskSource):
    """Tasks already in memory (the synthesis pipeline's gates use this)."""

    def __init__(self, items: list[tuple[TaskSpec, Any]]):
        if not items:
            raise ConfigError("a MemorySource needs at least one task")
        self.items = items
        self.by_id = {t.task_id: (t, w) for t, w in items}

    def add(self, task: TaskSpec, world: Any) -> None:
        """Serve one more task (the pipeline reuses one env for the tasks of a world)."""
        self.items.append((task, world))
        self.by_id[task.task_id] = (task, world)

    def pick(self, rng: np.random.Generator) -> tuple[TaskSpec, Any]:
        """Uniform over the tasks."""
        return self.items[int(rng.integers(len(self.items)))]

    def get(self, task_id: str) -> tuple[TaskSpec, Any]:
        """By id."""
        if task_id not in self.by_id:
            from toolgym.synth import unknown

            raise unknown("task id", task_id, list(self.by_id))
        return self.by_id[task_id]


class DatasetSource(TaskSource):
    """Tasks of one family from a DuckDB dataset, filtered by split and difficulty."""

    def __init__(self, family: Family, path: Path, split: str | None, difficulties: list[int] | None):
        from toolgym.synth.dataset import Dataset

        self.family, self.path = family, Path(path)
        self.split, self.difficulties = split, difficulties
        with Dataset(self.path, read_only=True) as ds:
            self.task_ids = ds.task_ids(family.id, split=split, difficulties=difficulties)
        if not self.task_ids:
            raise ConfigError(
                f"dataset {self.path} has no {family.id!r} tasks with split={split!r}, difficulty={difficulties!r}"
            )
        self._ds: Any = None
        self._tasks: LRU = LRU(256)
        self._worlds: LRU = LRU(32)

    def _dataset(self) -> Any:
        if self._ds is None:
            from toolgym.synth.dataset import Dataset

            self._ds = Dataset(self.path, read_only=True)
        return self._ds

    def pick(self, rng: np.random.Generator) -> tuple[TaskSpec, Any]:
        """Uniform over the matching task ids."""
        return self.get(self.task_ids[int(rng.integers(len(self.task_ids)))])

    def get(self, task_id: str) -> tuple[TaskSpec, Any]:
        """Load (or reuse) the task and its world."""
        task = self._tasks.lookup(task_id)
        if task is None:
            task = self._dataset().task(task_id)
            if task.family != self.family.id:
                raise UnknownNameError(f"task {task_id!r} belongs to family {task.family!r}, not {self.family.id!r}")
            self._tasks.store(task_id, _in_split((task, None), self.split)[0])
        world = self._worlds.lookup(task.world_id)
        if world is None:
            world = self._worlds.store(task.world_id, self.family.load_world(self._dataset().world_data(task.world_id)))
        return task, world

    def close(self) -> None:
        """Close the connection (it reopens on demand)."""
        if self._ds is not None:
            self._ds.close()
            self._ds = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_ds"] = None
        return state


_FLY_ID = re.compile(r"([a-z][a-z0-9_]*)-fly-s(0|[1-9][0-9]{0,18})-d([1-5])", re.ASCII)


class SynthSource(TaskSource):
    """Tasks synthesized on the fly: the reset seed picks a candidate, gates included.

    Task ids of synthesized tasks encode their seed, so ``get`` regenerates any of them.

    The split is honoured by world, with the datasets' rule: the task of seed ``s`` comes from
    world 0 of a run with seed ``s``, whose split is ``world_split`` of that run (80/10/10 by
    default), so ``pick`` draws seeds until one's world lies in the requested split (about 10
    draws for val or test, each a hash, not a synthesis). Train and test envs therefore never
    serve the same world.
    """

    MAX_DRAWS = 10_000  # P(no test seed in 10k draws at 10%) is about 1e-458

    def __init__(self, family: Family, difficulties: list[int] | None, split: str | None = None):
        from toolgym.spec import check_split

        self.family = family
        self.difficulties = difficulties or [1, 2, 3, 4, 5]
        self.split = check_split(split)
        self._cache: LRU = LRU(64)

    def pick(self, rng: np.random.Generator) -> tuple[TaskSpec, Any]:
        """Synthesize the task the generator's next draw (within the split) names."""
        from toolgym.spec import on_the_fly_split

        for _ in range(self.MAX_DRAWS):
            seed = int(rng.integers(2**31))
            difficulty = int(self.difficulties[int(rng.integers(len(self.difficulties)))])
            if self.split is None or on_the_fly_split(self.family.id, seed) == self.split:
                return self._make(seed, difficulty)
        raise ConfigError(f"no on-the-fly {self.family.id} seed in split {self.split!r} after {self.MAX_DRAWS} draws")

    def _make(self, seed: int, difficulty: int) -> tuple[TaskSpec, Any]:
        key = (seed, difficulty)
        hit = self._cache.lookup(key)
        if hit is None:
            from toolgym.synth.pipeline import synthesize_on_the_fly

            hit = self._cache.store(key, synthesize_on_the_fly(self.family, seed, difficulty))
        return hit

    def get(self, task_id: str) -> tuple[TaskSpec, Any]:
        """Regenerate a task from an id of the form ``<family>-fly-s<seed>-d<difficulty>``.

        The id must be exactly that form (ASCII digits, no sign or leading zeros, difficulty
        1-5), so a served task's id always equals the id asked for.

        Raises:
            UnknownNameError: Any other id.
        """
        m = _FLY_ID.fullmatch(task_id) if isinstance(task_id, str) else None
        if m is None or m.group(1) != self.family.id:
            raise UnknownNameError(
                f"task id {task_id!r} is not an on-the-fly {self.family.id} task id "
                f"({self.family.id}-fly-s<seed>-d<difficulty 1-5>); task ids of a dataset need the dataset"
            )
        return _in_split(self._make(int(m.group(2)), int(m.group(3))), self.split)


def _in_split(item: tuple[TaskSpec, Any], split: str | None) -> tuple[TaskSpec, Any]:
    """``item`` if its task lies in ``split`` (None: any); an env never serves outside its split."""
    if split is not None and item[0].split != split:
        raise ConfigError(f"task {item[0].task_id!r} is in split {item[0].split!r}, not {split!r}")
    return item


def make_source(family: Family, config: EnvConfig) -> TaskSource:
    """The source an :class:`EnvConfig` asks for.

    Raises:
        ConfigError: An unknown split name (whether or not a dataset is given), or a dataset
            with no matching task.
    """
    from toolgym.spec import check_split

    split = check_split(config.split)
    if config.dataset is not None:
        return DatasetSource(family, config.dataset, split, config.difficulties())
    return SynthSource(family, config.difficulties(), split)
