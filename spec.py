"""The contract layer (L0): the pure data every other layer exchanges, and the world → split rule.

A family produces :class:`WorldSpec` and :class:`TaskSpec` rows (through :class:`TaskDraft`);
datasets store them, envs serve them, verifiers judge against their verifier specs, and every
episode comes back as a :class:`Trajectory` (the stored reference runs are trajectories too). They are
pydantic models that serialize to dataset rows, with no code attached: the code lives in the
family, looked up by family id, so a row plus the family code at ``family_version`` reproduces an
episode exactly.

This module imports nothing of toolgym above :mod:`toolgym.errors` (DESIGN.md "Layout and
layers"). So the text contract of a task (its prompt holds no special string of the markup, its
system text no role marker) is not a validator here: the markup owns its special strings, and
:func:`toolgym.envs.markup.check_task_text` is called where tasks are built (the synthesis
pipeline) and where they are loaded (the dataset).

Splits are by **world**: :func:`world_split` is the one world → split rule. Datasets assign their
worlds with it, and envs without a dataset serve a seed's task only under the split of its world
(:func:`on_the_fly_split`), without importing the synthesis code.
"""

from __future__ import annotations

import difflib
import hashlib
import random
from typing import Any, NamedTuple, Protocol

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field

from toolgym.errors import ConfigError, WorldDataError

__all__ = [
    "DEFAULT_SPLIT_FRACTIONS",
    "SPLITS",
    "SplitSettings",
    "TaskDraft",
    "TaskSpec",
    "Trajectory",
    "WorldSpec",
    "check_split",
    "check_world_data",
    "derive_seed",
    "dump_world_data",
    "family_hash",
    "on_the_fly_split",
    "world_data_problem",
    "world_split",
]

SPLITS = ("train", "val", "test")
"""Every split a task can be in (by world; see :func:`world_split`)."""

DEFAULT_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
"""Train, val, test fractions of worlds when a run sets none (and for on-the-fly tasks)."""


class WorldSpec(BaseModel):
    """One synthesized environment as stored in a dataset."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    world_id: str
    family: str
    family_version: int
    seed: int
    difficulty: int
    split: str
    data: dict[str, Any]
    schema_hash: str | None = None  # content hash of the family's world_schema (None: the family has none)
    archetype: str | None = None  # the family's archetype of this world (None: the family has none)


class TaskSpec(BaseModel):
    """One task as stored in a dataset: everything an env needs besides the family code.

    ``system`` and ``prompt`` reach observations unescaped; they are checked with
    :func:`toolgym.envs.markup.check_task_text` where tasks are built and loaded (see the module
    docstring).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    task_id: str
    world_id: str
    family: str
    env_id: str
    difficulty: int
    split: str
    system: str
    prompt: str
    tools: list[dict[str, Any]]
    tool_config: dict[str, Any]
    params: dict[str, Any]
    verifier_spec: dict[
        str, Any
    ]  # pure data: {"kind": …} (toolgym.VERIFIERS); the datasets' and exports' column "verifier"
    meta: dict[str, Any]


class TaskDraft(BaseModel):
    """What a family's ``make_task`` returns; the pipeline adds ids, split and the rendered system text.

    A state check (``{"kind": "state", "fields": [...]}``) may leave out ``expected_hash``: the
    pipeline fills it by replaying the reference's write calls (:mod:`toolgym.verifiers.state`).
    """

    model_config = ConfigDict(extra="forbid")

    prompt: str
    params: dict[str, Any]
    verifier_spec: dict[str, Any]
    tool_config: dict[str, Any]
    meta: dict[str, Any] = Field(default_factory=dict)


class Trajectory(BaseModel):
    """One episode as text: what ``run_episode`` returns and what a dataset stores as a reference run.

    ``observations[0]`` is the prompt and ``observations[i]`` follows ``actions[i - 1]``, so
    ``obs0 + act1 + obs1 + …`` is the whole context (:attr:`text`); OpenAI messages are rebuilt
    from it with ``toolgym.envs.chat.messages_from_text``, the function the env builds them with.

    Stored (the ``trajectories`` table): ``task_id, actions, observations, answer, turns,
    tool_calls, reward``, exactly as before this model. Runtime only: ``terminated`` and
    ``truncated`` (a stored reference scored 1, so it terminated), and ``info``, the env's info
    of the last step (its ``verdict``, and ``messages`` when the env keeps them), which is
    ``exclude=True`` so no dump of a trajectory carries it. ``turns`` is derived from the
    actions, never given.

    Equality compares what a dump carries: two trajectories are ``==`` when every field but the
    excluded ``info`` is equal, so ``Trajectory.model_validate_json(t.model_dump_json()) == t``
    whatever the ``info``. (``answer`` is stored, so it is compared: a replay by ``run_episode``,
    which leaves it None, equals the stored reference once its ``answer`` is set.)
    Like any mutable pydantic model a trajectory is unhashable (``hash(t)`` raises TypeError).

    ``text`` of an episode with no observations (``Trajectory()``) is ``""``; a trajectory whose
    ``observations`` are not ``len(actions) + 1`` has no text (ValueError naming both counts).

    The model is built once per episode (``run_episode`` appends to plain lists and constructs
    at the end), never validated per step.
    """

    model_config = ConfigDict(extra="forbid")

    task_id: str = ""
    observations: list[str] = Field(default_factory=list)
    actions: list[str] = Field(default_factory=list)
    answer: Any = None
    tool_calls: int = 0
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    info: dict[str, Any] = Field(default_factory=dict, exclude=True)

    @property
    def turns(self) -> int:
        """Number of assistant turns (``len(actions)``)."""
        return len(self.actions)

    def __eq__(self, other: object) -> bool:
        """Equal when every stored field is equal (``info``, excluded from dumps, is not compared)."""
        if not isinstance(other, BaseModel):
            return NotImplemented
        if other.__class__ is not self.__class__:
            return False
        return all(getattr(self, name) == getattr(other, name) for name in _TRAJECTORY_STORED)

    __hash__ = None  # type: ignore[assignment]  # mutable, so unhashable (pydantic's default kept)

    @property
    def text(self) -> str:
        """The whole context: ``obs0 + act1 + obs1 + …`` (``""`` when there are no observations).

        Raises:
            ValueError: If ``observations`` is not one longer than ``actions`` (and not empty).
        """
        return "".join(self.pieces())

    def pieces(self) -> list[str]:
        """The context in order, ``[obs0, act1, obs1, …]`` (``[]`` when there are no observations).

        Raises:
            ValueError: If ``observations`` is not one longer than ``actions`` (and not empty).
        """
        if len(self.observations) != len(self.actions) + 1:
            if not self.observations and not self.actions:
                return []
            raise ValueError(
                f"a trajectory's text needs one more observation than actions, got "
                f"{len(self.observations)} observations for {len(self.actions)} actions"
            )
        out = [self.observations[0]]
        for a, o in zip(self.actions, self.observations[1:], strict=True):
            out += [a, o]
        return out


_TRAJECTORY_STORED = tuple(name for name, f in Trajectory.model_fields.items() if not f.exclude)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integer parts (``numpy.random.SeedSequence`` mixing)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> 1)


def family_hash(family_id: str) -> int:
    """A 32-bit integer naming a family in seed derivations (first 4 bytes of its SHA-256)."""
    return int.from_bytes(hashlib.sha256(family_id.encode()).digest()[:4], "little")


class SplitSettings(Protocol):
    """The settings of a run that decide its worlds' splits (``SynthConfig`` has them)."""

    @property
    def family(self) -> str: ...  # noqa: D102 - the family id

    @property
    def seed(self) -> int: ...  # noqa: D102 - the run seed

    @property
    def split_fractions(self) -> tuple[float, float, float]: ...  # noqa: D102 - train, val, test

    @property
    def holdout(self) -> bool: ...  # noqa: D102 - every world goes to test


class _OnTheFlyRun(NamedTuple):
    family: str
    seed: int
    split_fractions: tuple[float, float, float] = DEFAULT_SPLIT_FRACTIONS
    holdout: bool = False


def world_split(config: SplitSettings, w: int, archetype: str | None = None) -> str:
    """Train / val / test for world ``w`` of a run (deterministic, by world).

    This is the one world → split rule: datasets assign their worlds with it, and on-the-fly
    envs (:func:`on_the_fly_split`) serve a seed's task only under the split of its world.

    Args:
        config: The run's split settings (family, seed, fractions, holdout, and optionally
            ``holdout_archetypes``).
        w: The world's index in the run (>= 0).
        archetype: The world's archetype, for families that have them: a world of a held-out
            archetype goes to test whatever its draw (the others keep their draw, so the test
            split holds unseen archetypes and unseen worlds of seen ones).

    Returns:
        One of :data:`SPLITS`.
    """
    if config.holdout or (archetype is not None and archetype in getattr(config, "holdout_archetypes", ())):
        return "test"
    u = random.Random(derive_seed(config.seed, family_hash(config.family), w, 7)).random()
    train, val, _ = config.split_fractions
    return "train" if u < train else "val" if u < train + val else "test"


def on_the_fly_split(family_id: str, seed: int) -> str:
    """The split of the on-the-fly task of ``seed`` (any difficulty).

    An on-the-fly task is world 0 of a one-world run with ``seed`` and the default fractions,
    so its split is that world's, by :func:`world_split`.
    """
    return world_split(_OnTheFlyRun(family_id, seed), 0)


def check_split(split: str | None) -> str | None:
    """``split`` itself if it is None (every split) or one of :data:`SPLITS`.

    Raises:
        ConfigError: An unknown split, with the valid ones (and the closest, if any is close).
    """
    if split is None or split in SPLITS:
        return split
    close = difflib.get_close_matches(str(split), SPLITS, n=1, cutoff=0.4)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ConfigError(f"unknown split {split!r}{hint}; splits are {', '.join(SPLITS)}")


# World data: a world is data (DESIGN.md), stored as JSON in datasets and reloaded from it by envs
# (``fresh_world``), so ``world.to_json()`` must be JSON that round-trips exactly.

_INT_RANGE = (-(2**63), 2**64 - 1)  # what orjson encodes


def world_data_problem(data: Any, where: str = "data") -> str | None:
    """The first value in world data that is not JSON which round-trips exactly, or ``None``.

    Dicts, lists and tuples are walked depth first, in order. Refused: a dict key that is not a
    ``str``, a NaN or infinite float (orjson would write ``null``), an int beyond 64 bits, and any
    value that is not ``str``, ``int``, ``float``, ``bool``, ``None``, dict, list or tuple (a
    set, a datetime, an object). Tuples pass: they are JSON arrays (and come back as lists).

    Args:
        data: World data, as ``world.to_json()`` returns it.
        where: The name of ``data`` in the message.

    Returns:
        ``"<path>: <what is wrong>"``, e.g. ``"data['tags']: a set"``; ``None`` when all is JSON.
    """
    if isinstance(data, dict):
        for key, value in data.items():
            if not isinstance(key, str):
                return f"{where}: key {key!r} is {_kind(key)}; JSON object keys are strings"
            problem = world_data_problem(value, f"{where}[{key!r}]")
            if problem is not None:
                return problem
        return None
    if isinstance(data, list | tuple):
        for i, value in enumerate(data):
            problem = world_data_problem(value, f"{where}[{i}]")
            if problem is not None:
                return problem
        return None
    if isinstance(data, float) and not np.isfinite(data):
        return f"{where}: {data!r}; JSON has no NaN or infinity (orjson would store null)"
    if isinstance(data, int) and not isinstance(data, bool) and not _INT_RANGE[0] <= data <= _INT_RANGE[1]:
        return f"{where}: {data} does not fit in 64 bits"
    if data is None or isinstance(data, str | int | float):
        return None
    return f"{where}: {_kind(data)}"


def _kind(value: Any) -> str:
    """``'a set'``, ``'an int'``, ``'a datetime.date'``: a value's type for a message."""
    cls = type(value)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _world_data_error(family: str, data: Any, encoder: str = "") -> WorldDataError:
    problem = world_data_problem(data) or encoder or "it does not round-trip through JSON"
    return WorldDataError(
        f"family {family!r}: world data (world.to_json()) must be JSON that round-trips exactly, "
        f"since a world is data stored as JSON; {problem}"
    )


def dump_world_data(family: str, data: Any) -> bytes:
    """World data as JSON bytes (``orjson.dumps``), or a clear error naming the family and the value.

    The cheap check of every write of world data (the dataset, :func:`toolgym.envs.runtime.fresh_world`):
    what the encoder refuses. NaN and infinity are refused earlier, at synthesis
    (:func:`check_world_data`), since the encoder writes them as ``null``.

    Raises:
        WorldDataError: The encoder refused a value (a set, an object, a non-string key); the
            message says where, from :func:`world_data_problem`.
    """
    try:
        return orjson.dumps(data)
    except TypeError as exc:
        raise _world_data_error(family, data, str(exc)) from None


def check_world_data(family: str, data: Any) -> Any:
    """Check that world data round-trips exactly through JSON; return the round-tripped copy.

    Run once per world at synthesis, before its first candidate: one encode, one decode and one
    C-level comparison; the walk of :func:`world_data_problem` only when they differ.

    Args:
        family: The family id (named in the error).
        data: ``world.to_json()`` of a freshly made world.

    Returns:
        ``orjson.loads(orjson.dumps(data))``: equal to ``data`` (up to tuples, which come back as
        lists) and sharing no mutable part with it, a snapshot to compare the world against later.

    Raises:
        WorldDataError: Some value is not JSON or would not come back equal (NaN, infinity, a
            set, an object, a non-string key, a datetime).
    """
    copy = orjson.loads(dump_world_data(family, data))
    if copy != data and world_data_problem(data) is not None:
        raise _world_data_error(family, data)
    return copy
