"""Where GRPO's tasks come from: a dataset's train split or tasks synthesized on the fly, and the curriculum.

A :class:`TaskPool` is walked by a cursor: position k of the walk is a pure function of
(seed, k), and each step takes the next ``tasks_per_step`` positions the :class:`Curriculum`
accepts, so a run (resumed or not) draws the same tasks given the same curriculum state, which
the checkpoint stores.

* From a dataset: its train-split tasks (optionally of one family and difficulties), a seeded
  shuffle per epoch.
* On the fly: the family's tasks of train-split world seeds 0, 1, … in order, difficulties
  taken in turn, so every step sees new worlds.

**Curriculum** (``--curriculum``, off by default): the run starts at the lowest difficulty of
the range and moves one up when a step's pass rate reaches the threshold (tasks are drawn at
the current difficulty only); a task whose whole group passed is *retired* (never drawn again:
it teaches nothing, its group has zero variance). When every task of the current difficulty is
retired, the walk ignores retirement rather than stall.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from toolgym.errors import ConfigError

GOLDEN = 0x9E3779B97F4A7C15  # decorrelates the per-epoch shuffles


@dataclass
class Curriculum:
    """The curriculum's state (stored in the checkpoint's meta; see the module docstring).

    Attributes:
        level: the difficulty drawn now (None: the whole range, no curriculum).
        retired: task ids never drawn again.
        cursor: positions of the pool's walk consumed so far.
    """

    level: int | None = None
    retired: list[str] = field(default_factory=list)
    cursor: int = 0

    def to_json(self) -> dict[str, Any]:
        """The state as JSON."""
        return asdict(self)

    def update(self, pass_rate: float, solved: list[str], threshold: float, top: int) -> None:
        """After a step: retire the tasks whose whole group passed; move up a level at ``threshold``."""
        self.retired = sorted(set(self.retired) | set(solved))
        if self.level is not None and pass_rate >= threshold and self.level < top:
            self.level += 1


class TaskPool:
    """The tasks of a run (see the module docstring)."""

    def __init__(
        self, *, family: str | None, difficulties: list[int], dataset: Path | None = None, seed: int = 0
    ) -> None:
        """Build the pool.

        Raises:
            ConfigError: neither a family nor a dataset, or a dataset with no matching train task.
        """
        self.family, self.difficulties, self.dataset, self.seed = family, difficulties, dataset, seed
        self._items: list[tuple[Any, Any]] | None = None
        if dataset is not None:
            self._items = self._dataset_items(dataset)
        elif family is None:
            raise ConfigError("GRPO needs tasks: give --family (tasks on the fly) or -d DATASET")

    def describe(self) -> dict[str, Any]:
        """What a resume must share."""
        return {
            "dataset": None if self.dataset is None else str(self.dataset.resolve()),
            "family": self.family,
            "difficulties": list(self.difficulties),
        }

    def _dataset_items(self, dataset: Path) -> list[tuple[Any, Any]]:
        from toolgym.data.dataset import Dataset
        from toolgym.synth import get_family

        items = []
        with Dataset(dataset, read_only=True) as ds:
            for tid in ds.task_ids(self.family, split="train", difficulties=self.difficulties):
                task = ds.task(tid)
                items.append((task, get_family(task.family).load_world(ds.world_data(task.world_id))))
        if not items:
            raise ConfigError(f"{dataset} has no train tasks of family={self.family}, difficulty={self.difficulties}")
        return items

    def _walk(self, start: int, level: int | None) -> Iterator[tuple[int, Any, Any]]:
        """(position, task, world) from position ``start`` on, restricted to ``level`` when given."""
        if self._items is not None:
            pool = self._items
            for k in itertools.count(start):
                epoch, i = divmod(k, len(pool))
                gen = torch.Generator().manual_seed((self.seed + epoch * GOLDEN) % 2**63)
                task, world = pool[int(torch.randperm(len(pool), generator=gen)[i])]
                if level is None or task.difficulty == level:
                    yield k, task, world
            return
        from toolgym.spec import on_the_fly_split
        from toolgym.synth import get_family
        from toolgym.synth.fly import SynthSource

        fam = get_family(self.family or "")
        source = SynthSource(fam, self.difficulties, "train")
        seeds = (s for s in itertools.count() if on_the_fly_split(fam.id, s) == "train")
        d = self.difficulties
        for k, s in enumerate(itertools.islice(seeds, start, None), start):
            task, world = source.get(f"{fam.id}-fly-s{s}-d{level if level is not None else d[k % len(d)]}")
            yield k, task, world

    def draw(self, n: int, state: Curriculum) -> list[tuple[Any, Any]]:
        """The next ``n`` (task, world) pairs the curriculum accepts; advances ``state.cursor``.

        Raises:
            ConfigError: the dataset has no train task of the current level.
        """
        pool = self._items
        if pool is not None and state.level is not None and not any(t.difficulty == state.level for t, _ in pool):
            raise ConfigError(f"{self.dataset} has no train task of difficulty {state.level} to draw")
        retired = set(state.retired)
        patience = 2 * len(pool) if pool is not None else None  # retired tasks skipped before giving up skipping
        out: list[tuple[Any, Any]] = []
        misses = 0
        for k, task, world in self._walk(state.cursor, state.level):
            if task.task_id in retired and (patience is None or misses < patience):
                misses += 1
                continue
            out.append((task, world))
            if len(out) == n:
                state.cursor = k + 1
                return out
        raise AssertionError("the walk is endless")  # pragma: no cover
