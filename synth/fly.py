"""On-the-fly tasks: the task source that synthesizes a task (gates included) from a reset seed.

It sits in ``synth`` next to :func:`~toolgym.synth.candidate.synthesize_on_the_fly`, which it
wraps, and is the ``"synth"`` entry of ``toolgym.SOURCES``; ``envs`` reaches it only through that
table (:func:`toolgym.envs.sources.make_source`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

from toolgym.envs.sources import LRU, TaskSource, in_split
from toolgym.errors import ConfigError, UnknownNameError
from toolgym.spec import check_split, on_the_fly_split
from toolgym.synth.candidate import synthesize_on_the_fly

if TYPE_CHECKING:
    from toolgym.spec import TaskSpec
    from toolgym.synth.family import Family

__all__ = ["SynthSource"]


_FLY_ID = re.compile(r"([a-z][a-z0-9_]*)-fly-s(0|[1-9][0-9]{0,18})-d([1-5])", re.ASCII)


#: What the worlds an on-the-fly source keeps may weigh in all (:meth:`Family.world_bytes`; 64
#: worlds at most): 64 difficulty-5 search worlds held ~660 MB, this keeps about six.
FLY_BYTES = 64 * 2**20


class SynthSource(TaskSource):
    """Tasks synthesized on the fly: the reset seed picks a candidate, gates included.

    Task ids of synthesized tasks encode their seed, so ``get`` regenerates any of them.

    The split is honoured by world, with the datasets' rule: the task of seed ``s`` comes from
    world 0 of a run with seed ``s``, whose split is ``world_split`` of that run (80/10/10 by
    default), so ``pick`` draws seeds until one's world lies in the requested split (about 10
    draws for val or test, each a hash, not a synthesis). Train and test envs therefore never
    serve the same world.

    The ``"synth"`` task source of the central table (``toolgym.SOURCES``): a ToolEnv without a
    dataset gets one from :func:`toolgym.envs.sources.make_source`.
    """

    MAX_DRAWS = 10_000  # P(no test seed in 10k draws at 10%) is about 1e-458

    def __init__(self, family: Family, difficulties: list[int] | None, split: str | None = None):
        self.family = family
        self.difficulties = difficulties or [1, 2, 3, 4, 5]
        self.split = check_split(split)
        self._cache: LRU = LRU(64, FLY_BYTES, self._weight)

    def _weight(self, hit: tuple[TaskSpec, Any]) -> int:
        """The bytes a cached ``(task, world)`` holds (its world's, :meth:`Family.world_bytes`)."""
        return self.family.world_bytes(hit[1])

    def pick(self, rng: np.random.Generator) -> tuple[TaskSpec, Any]:
        """Synthesize the task the generator's next draw (within the split) names."""
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
        return in_split(self._make(int(m.group(2)), int(m.group(3))), self.split)
