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
from pydantic import BaseModel, ConfigDict, Field

from toolgym.errors import ConfigError

__all__ = [
    "DEFAULT_SPLIT_FRACTIONS",
    "SPLITS",
    "SplitSettings",
    "TaskDraft",
    "TaskSpec",
    "Trajectory",
    "WorldSpec",
    "check_split",
    "derive_seed",
    "family_hash",
    "on_the_fly_split",
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

    @property
    def text(self) -> str:
        """The whole context: ``obs0 + act1 + obs1 + …``."""
        out = [self.observations[0]]
        for a, o in zip(self.actions, self.observations[1:], strict=True):
            out += [a, o]
        return "".join(out)


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


def world_split(config: SplitSettings, w: int) -> str:
    """Train / val / test for world ``w`` of a run (deterministic, by world).

    This is the one world → split rule: datasets assign their worlds with it, and on-the-fly
    envs (:func:`on_the_fly_split`) serve a seed's task only under the split of its world.

    Args:
        config: The run's split settings (family, seed, fractions, holdout).
        w: The world's index in the run (>= 0).

    Returns:
        One of :data:`SPLITS`.
    """
    if config.holdout:
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
