"""The family contract: what a family module provides to produce specs (:mod:`toolgym.spec`).

A family turns ``(seed, difficulty)`` into a *world* and ``(world, rng)`` into *tasks*. Specs are
pure data (pydantic models that serialize to dataset rows); everything that needs code (tools,
the reference program, gate answers) is a method of the family, looked up by family id. So a
dataset row plus the family code at ``family_version`` reproduces an episode exactly.

Why these hooks and no others (DeepSeek-V3.2 §6.4 workflow, DESIGN.md "Families and
synthesis"):

Randomness: every hook takes a seeded ``random.Random`` (fast scalar draws; one per item, derived
from the run seed), never a global generator.

* ``make_world`` / ``load_world``: the world is a pure function of (family, seed, difficulty);
  ``load_world`` rebuilds the in-memory object (indices included) from its JSON data.
* ``make_task``: propose a task with its structured parameters, verifier spec and toolset; a
  family raises the difficulty inside (more constraints, days, distractors, pagination) and
  adds tools when the toolset cannot express the harder task (toolset augmentation).
* ``reference``: a program that solves the task **only through tool calls** (it is given the
  task's public parameters, never the world) and returns the answer it submits.
* ``heuristic`` (optional): a program for a *shallow* agent, run through the same env as the
  reference (tool errors are observations it may act on); ``toolgym bench synth`` reports the
  share of tasks it solves per difficulty, which should fall as the difficulty rises.
* ``random_answer`` / ``bluff_answer`` / ``perturb``: the answers the quality gates submit. A
  random answer is a *plausible* plan drawn from the world (right kinds, right structure), so a
  random pass really means the task is too easy; a bluff answer is well-formed but built without
  looking at the world; a perturbed answer is the reference answer broken on purpose.
* ``episode_context``: what the tools receive; by default the shared world. Families with write
  tools need no override: the env gives every episode of a toolset with a write tool a fresh
  copy of the world (:func:`toolgym.envs.runtime.open_context`). Override it only for a context
  of the family's own (the code family's sandbox).
"""

from __future__ import annotations

import contextlib
import random
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from contextvars import ContextVar
from typing import Any, ClassVar

import orjson

import toolgym
from toolgym.envs.rollout import Program, Step
from toolgym.envs.toolenv import NAMES_RULE
from toolgym.envs.tools import Tool
from toolgym.spec import TaskDraft, TaskSpec

__all__ = ["Family", "Program", "Step", "params_key"]


class Family(ABC):
    """Base class of every family (see the module docstring for the contract)."""

    id: ClassVar[str]
    env_name: ClassVar[str]
    version: ClassVar[int]
    summary: ClassVar[str]
    #: What kind of work the family's tasks are, for the catalog (``toolgym families``): a few
    #: lowercase tags, e.g. ``("planning", "constraints")``.
    categories: ClassVar[tuple[str, ...]] = ()
    #: Candidate tasks per world when a run does not say (``toolgym synth --tasks-per-world``):
    #: families whose worlds cost more than their tasks amortize them over more tasks.
    tasks_per_world: ClassVar[int] = 4
    #: The system text's line on how names in arguments and answers match: by default the shared
    #: ``toolenv.NAMES_RULE`` (exact after NFC and trimming, case-sensitive, closest suggested).
    names_rule: ClassVar[str] = NAMES_RULE

    @property
    def env_id(self) -> str:
        """The Gymnasium id of this family's env."""
        return toolgym.family_env_id(type(self))

    @abstractmethod
    def make_world(self, seed: int, difficulty: int) -> Any:
        """Build a world (an object with ``to_json()``) from a seed and a difficulty."""

    @abstractmethod
    def load_world(self, data: dict[str, Any]) -> Any:
        """Rebuild a world object from its JSON data."""

    @abstractmethod
    def make_task(self, world: Any, difficulty: int, rng: random.Random) -> TaskDraft | None:
        """Propose one task over ``world``; None when this world cannot host one."""

    @abstractmethod
    def tools(self, tool_config: dict[str, Any]) -> Sequence[Tool]:
        """The toolset of a task (``submit`` included), from its tool config."""

    @abstractmethod
    def reference(self, params: dict[str, Any], tool_config: dict[str, Any]) -> Program:
        """The reference program; it sees the task's public parameters, never the world."""

    def task_key(self, draft: TaskDraft) -> str | None:
        """What makes two drafts of one world the same task, or None (no check; the default).

        Synthesis drops a candidate whose key an earlier candidate of its world already had, as
        ``duplicate`` (:func:`toolgym.synth.candidate.synthesize_world`): a family whose worlds
        host few distinct tasks (search d1 chains, sql d2 group-bys) would otherwise ship the same
        question twice. Typically the canonical JSON of the draft's public parameters
        (:func:`params_key`).
        """
        return None

    def world_bytes(self, world: Any) -> int:
        """About how many bytes ``world`` holds in memory (0, the default: small, not counted).

        On-the-fly sources keep worlds within a byte budget (:data:`toolgym.synth.fly.FLY_BYTES`)
        as well as a count; a family whose worlds grow large with the difficulty says so here.
        """
        return 0

    def heuristic(self, task: TaskSpec) -> Program | None:
        """A shallow agent's program for ``task`` (public parameters only, tools only), or None.

        Documented per family; run with ``ProgramPolicy(..., strict=False)``. Default: None (no
        heuristic: the hardness table shows "–").
        """
        return None

    @abstractmethod
    def random_answer(self, world: Any, task: TaskSpec, rng: random.Random) -> Any:
        """A plausible answer drawn at random from the world (the random gate)."""

    @abstractmethod
    def bluff_answer(self, task: TaskSpec, rng: random.Random) -> Any:
        """A well-formed answer built without looking at the world (the bluff gate)."""

    @abstractmethod
    def perturb(self, world: Any, task: TaskSpec, answer: Any, rng: random.Random) -> list[Any]:
        """Answers derived from a correct one, each broken on purpose (the perturbation gate)."""

    def gate_agents(self, world: Any, task: TaskSpec, rng: random.Random) -> list[tuple[str, Program]]:
        """The family's own gate agents: ``(gate name, program)`` pairs, each of which must score 0.

        Each program runs like a heuristic (tool errors are observations) and its task is dropped,
        counted under the gate's name, when it scores. For broken *repairs* a family knows how to
        make (codeagent: deleting the failing function, editing the tests). Default: none.
        """
        return []

    def random_pass(self, world: Any, task: TaskSpec) -> float | None:
        """The exact chance that ``random_answer`` (submitted with no write) passes, or None if unknown.

        Synthesis drops a task whose chance is above ``SynthConfig.random_pass_max`` before
        running it (the sampled random gate still runs on the others). Default: None.
        """
        return None

    def world_schema(self, world: Any) -> dict[str, Any] | None:
        """The world's schema (entities, attributes, actions as this world names them), or None.

        Families whose worlds differ in schema (``domains``) return it; synthesis stores its
        hash with the world, so distinct schemas can be counted. Default: None.
        """
        return None

    def archetypes(self) -> Sequence[str]:
        """The archetypes this family's worlds are drawn from (``domains``: clinic, library …); default none."""
        return ()

    def world_archetype(self, world: Any) -> str | None:
        """The archetype of a world (``--holdout-archetypes`` sends its whole archetype to test); default None."""
        return None

    def episode_context(self, world: Any, task: TaskSpec) -> Any:
        """What the tools of one episode receive; the env copies the world itself for write toolsets."""
        return world

    def gate_scope(self) -> AbstractContextManager[Any]:
        """A scope around one task's gate episodes; default: nothing.

        Gate agents run the generator's own code, never a policy's, so a family whose episodes
        open sandboxes may let the gate episodes of one task share one where its verdicts cannot
        depend on what an earlier episode left. The reference episode runs outside the scope.
        (``code`` uses the wider :meth:`synthesis_scope` instead.)
        """
        return contextlib.nullcontext()

    def synthesis_scope(self) -> AbstractContextManager[Any]:
        """A scope around one world's candidates in synthesis (reference and gate episodes): :func:`trusted_episodes`.

        Everything inside runs the generator's own code (the reference, the gate agents), never
        a policy's, so a family may skip protections that only untrusted code needs while
        :func:`episodes_trusted` holds (``code``: one warm sandbox per worker process, its
        interpreter forked anew and its workspace refilled per episode; ``sql``: queries in this
        process instead of the SQL worker).
        """
        return trusted_episodes()

    def close_context(self, context: Any) -> None:  # noqa: B027 - optional hook
        """Release what ``episode_context`` opened (sandboxes, files); default: nothing."""


def params_key(draft: TaskDraft) -> str:
    """The canonical JSON of a draft's public parameters (a :meth:`Family.task_key`)."""
    return orjson.dumps(draft.params, option=orjson.OPT_SORT_KEYS).decode()


#: True inside :func:`trusted_episodes` (see :meth:`Family.synthesis_scope`).
_TRUSTED_EPISODES: ContextVar[bool] = ContextVar("toolgym_trusted_episodes", default=False)


@contextlib.contextmanager
def trusted_episodes() -> Iterator[None]:
    """Mark the episodes run inside as the generator's own code (a world's reference and gates)."""
    token = _TRUSTED_EPISODES.set(True)
    try:
        yield
    finally:
        _TRUSTED_EPISODES.reset(token)


def episodes_trusted() -> bool:
    """Whether the episodes running now are the generator's own (inside :func:`trusted_episodes`)."""
    return _TRUSTED_EPISODES.get()
