"""Where a ToolEnv gets its tasks: memory, a DuckDB dataset, or on-the-fly synthesis.

A source answers two questions: ``pick(rng)`` (a task drawn deterministically from the env's
seeded generator) and ``get(task_id)``. Worlds are rebuilt from their JSON once and cached in a
small LRU, so reset cost stays flat however many episodes run; dataset connections are opened
read-only and lazily in each process, so envs pickle and run in ``AsyncVectorEnv`` workers.

This module holds the contract (:class:`TaskSource`), the in-memory source and the choice
(:func:`make_source`). The sources that wrap synthesis code live next to it and are named in the
central table ``toolgym.SOURCES``: ``"dataset"`` (``toolgym.data.source.DatasetSource``) and
``"synth"`` (``toolgym.synth.fly.SynthSource``), so ``envs`` never imports ``synth``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from toolgym import SOURCES
from toolgym.errors import ConfigError
from toolgym.registry import unknown

if TYPE_CHECKING:
    from toolgym.envs.runtime import Runtime
    from toolgym.envs.toolenv import EnvConfig
    from toolgym.spec import TaskSpec


class LRU(OrderedDict[Any, Any]):
    """A tiny bounded mapping: the least recently used entry goes first.

    Bounded by ``size`` entries and, when ``weigh`` is given, by ``budget`` (the sum of
    ``weigh(value)``, e.g. bytes; the newest entry always stays, whatever it weighs).
    """

    def __init__(
        self, size: int = 64, budget: int = 0, weigh: Callable[[Any], int] | None = None
    ):  # defaults, because unpickling calls cls()
        super().__init__()
        self.size, self.budget, self.weigh = size, budget, weigh
        self.weights: dict[Any, int] = {}

    def lookup(self, key: Any) -> Any:
        """The value for ``key`` (marking it recently used), or None."""
        if key in self:
            self.move_to_end(key)
            return self[key]
        return None

    def store(self, key: Any, value: Any) -> Any:
        """Insert, evicting the oldest entry past the bound."""
        self[key] = value
        self.move_to_end(key)
        if self.weigh is not None:
            self.weights[key] = self.weigh(value)
        while len(self) > self.size or (
            self.weigh is not None and len(self) > 1 and sum(self.weights.values()) > self.budget
        ):
            self.weights.pop(self.popitem(last=False)[0], None)
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
            raise unknown("task id", task_id, list(self.by_id))
        return self.by_id[task_id]


def in_split(item: tuple[TaskSpec, Any], split: str | None) -> tuple[TaskSpec, Any]:
    """``item`` if its task lies in ``split`` (None: any); an env never serves outside its split."""
    if split is not None and item[0].split != split:
        raise ConfigError(f"task {item[0].task_id!r} is in split {item[0].split!r}, not {split!r}")
    return item


def make_source(family: Runtime, config: EnvConfig) -> TaskSource:
    """The source an :class:`EnvConfig` asks for, from the central table ``toolgym.SOURCES``.

    A config with a dataset gets the ``"dataset"`` source, one without the ``"synth"`` one
    (tasks synthesized from the reset seed).

    Raises:
        ConfigError: An unknown split name (whether or not a dataset is given), or a dataset
            with no matching task.
    """
    from toolgym.spec import check_split

    split = check_split(config.split)
    if config.dataset is not None:
        return SOURCES.get("dataset")(family, config.dataset, split, config.difficulties())  # type: ignore[no-any-return]
    return SOURCES.get("synth")(family, config.difficulties(), split)  # type: ignore[no-any-return]
