"""The ``"dataset"`` task source: tasks of one family read from a DuckDB dataset.

It is the ``"dataset"`` entry of the central table (``toolgym.SOURCES``); ``envs`` reaches it only
through that table (:func:`toolgym.envs.sources.make_source`), never by import.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from toolgym.data.dataset import Dataset
from toolgym.envs.sources import LRU, TaskSource, in_split
from toolgym.errors import ConfigError, UnknownNameError

if TYPE_CHECKING:
    from toolgym.envs.runtime import Runtime
    from toolgym.spec import TaskSpec

__all__ = ["DATASET_BYTES", "DatasetSource"]

#: What the worlds a dataset source keeps may weigh in all (``Family.world_bytes``; 32 worlds at
#: most): the on-the-fly source's budget (``toolgym.synth.fly.FLY_BYTES``, not imported: it would
#: pull synthesis into every dataset-backed env; a test holds the two equal).
DATASET_BYTES = 64 * 2**20


class DatasetSource(TaskSource):
    """Tasks of one family from a DuckDB dataset, filtered by split and difficulty.

    The ``"dataset"`` task source of the central table (``toolgym.SOURCES``): a ToolEnv with a
    ``dataset`` path gets one from :func:`toolgym.envs.sources.make_source`.

    Worlds loaded are kept for reuse, at most 32 and, like the on-the-fly source's, within
    :data:`DATASET_BYTES` by the family's ``world_bytes`` (a runtime without one weighs nothing):
    an sql world holds a DuckDB instance of ~10 MB, a difficulty-5 search world ~10 MB of
    entities, so 32 of them held ~300 MB an env.
    """

    def __init__(self, family: Runtime, path: Path, split: str | None, difficulties: list[int] | None):
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
        self._worlds: LRU = LRU(32, DATASET_BYTES, self._weight)

    def _weight(self, world: Any) -> int:
        """The bytes a kept world holds (the family's ``world_bytes``; 0 for a runtime without it)."""
        weigh = getattr(self.family, "world_bytes", None)
        return int(weigh(world)) if weigh is not None else 0

    def _dataset(self) -> Any:
        if self._ds is None:
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
            self._tasks.store(task_id, in_split((task, None), self.split)[0])
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
