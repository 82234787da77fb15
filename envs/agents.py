"""The scripted agents the quality gates use (DESIGN.md "Verifiers and gates").

* :class:`NullAgent` submits an empty answer of the right type, then idles: a verifier that
  accepts "nothing" is broken.
* :class:`RandomAgent` makes random tool calls with schema-valid random arguments (strings
  mostly recycled from what earlier observations showed, so calls often hit real entities),
  then submits a random answer. Families hand it a *plausible* random answer drawn from the
  world; if such a random plan passes, the task is too easy to be worth training on.
* :class:`SubmitAgent` submits a given answer, optionally after replaying the reference's
  calls: with a bluff answer (well-formed, built without tools) it is the bluffing agent;
  with a perturbed reference answer it checks that breaking a correct answer breaks the score.
* :class:`VandalAgent` replays the reference's calls, then makes random reads (to learn real
  ids and names) and random *writes*, then submits the reference's answer: every correct
  change is there, plus collateral damage, which a state check must catch.

Agents only speak the markup; running them is :func:`toolgym.envs.rollout.run_episode`, the
same loop RL and eval use, so a gate measures exactly the reward a policy would get. The rule
that decides whether a task ships is :func:`toolgym.synth.gates.run_gates` (layer L5); the
agents live here, on the envs side (L3), because evaluation uses them too.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from typing import Any

from toolgym.envs import markup as mk

_WORDS = ("alpha", "none", "x", "Paris", "unknown", "2026-01-01", "hotel", "42", "")


def empty_value(schema: dict[str, Any]) -> Any:
    """The emptiest value of a JSON-schema type ([] / {} / "" / 0 / False / None)."""
    t = schema.get("type")
    return {"array": [], "object": {}, "string": "", "integer": 0, "number": 0, "boolean": False}.get(
        t if isinstance(t, str) else "", None
    )


def sample_value(schema: dict[str, Any], rng: random.Random, pool: list[str], depth: int = 0) -> Any:
    """A random value valid for a (simple, inlined) JSON schema; strings prefer ``pool``."""
    if "enum" in schema:
        return rng.choice(schema["enum"])
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"] or schema["anyOf"]
        return sample_value(rng.choice(options), rng, pool, depth)
    t = schema.get("type")
    if t == "string":
        if pool and rng.random() < 0.85:
            return rng.choice(pool)
        return rng.choice(_WORDS)
    if t == "integer":  # bounds may be floats (1.0) in a valid schema: round inward
        lo, hi = math.ceil(schema.get("minimum", 0)), math.floor(schema.get("maximum", 10))
        return rng.randint(lo, max(lo, hi))
    if t == "number":
        return round(rng.uniform(schema.get("minimum", 0), schema.get("maximum", 1000)), 2)
    if t == "boolean":
        return bool(rng.random() < 0.5)
    if t == "array":
        lo = schema.get("minItems", 0)
        n = rng.randint(lo, max(lo, min(schema.get("maxItems", 4), 4))) if depth < 3 else lo
        return [sample_value(schema.get("items", {}), rng, pool, depth + 1) for _ in range(n)]
    if t == "object" or "properties" in schema:
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        return {
            k: sample_value(v, rng, pool, depth + 1) for k, v in props.items() if k in required or rng.random() < 0.5
        }
    return None


def harvest(value: Any, pool: list[str], limit: int = 512) -> None:
    """Collect short strings from a tool result into ``pool``."""
    if len(pool) >= limit:
        return
    if isinstance(value, str):
        if 0 < len(value) <= 64:
            pool.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            harvest(v, pool, limit)
    elif isinstance(value, list):
        for v in value:
            harvest(v, pool, limit)


def _submit_schema(info: dict[str, Any]) -> dict[str, Any]:
    for t in info["tools"]:
        if t["function"]["name"] == "submit":
            return t["function"]["parameters"]
    return {"type": "object", "properties": {}}


class NullAgent:
    """Submits an empty answer of the right type, then ends every turn without a call."""

    def __init__(self) -> None:
        self._submitted = False

    def act(self, observation: str, info: dict[str, Any]) -> str:
        """Submit once, then idle."""
        if self._submitted:
            return mk.END
        self._submitted = True
        params = _submit_schema(info)
        answer_schema = params.get("properties", {}).get("answer", {})
        return mk.render_action([("submit", {"answer": empty_value(answer_schema)})])


class RandomAgent:
    """Random schema-valid tool calls for a few turns, then a random submit."""

    def __init__(self, rng: random.Random, answer: Any = None, turns: int = 3, calls_per_turn: int = 3):
        self.rng, self.answer = rng, answer
        self.turns_left = rng.randint(1, turns)
        self.calls_per_turn = calls_per_turn
        self.pool: list[str] = []
        self._done = False

    def act(self, observation: str, info: dict[str, Any]) -> str:
        """Explore at random, then submit."""
        for r in mk.parse_tool_results(observation):
            harvest(r.get("content"), self.pool)
        if self._done:
            return mk.END
        tools = [t["function"] for t in info["tools"] if t["function"]["name"] != "submit"]
        if self.turns_left > 0 and tools:
            self.turns_left -= 1
            n = self.rng.randint(1, self.calls_per_turn)
            calls = []
            for _ in range(n):
                fn = self.rng.choice(tools)
                calls.append((fn["name"], sample_value(fn["parameters"], self.rng, self.pool)))
            return mk.render_action(calls)
        self._done = True
        answer = self.answer
        if answer is None:
            answer = sample_value(_submit_schema(info).get("properties", {}).get("answer", {}), self.rng, self.pool)
        return mk.render_action([("submit", {"answer": answer})])


class SubmitAgent:
    """Replays some actions (optionally), then submits a fixed answer."""

    def __init__(self, answer: Any, replay: Iterable[str] = ()):
        self.answer = answer
        self.replay = list(replay)
        self._done = False

    def act(self, observation: str, info: dict[str, Any]) -> str:
        """Next replayed action, then the submit."""
        if self.replay:
            return self.replay.pop(0)
        if self._done:
            return mk.END
        self._done = True
        return mk.render_action([("submit", {"answer": self.answer})])


class VandalAgent:
    """The reference's calls, then a turn of random reads and a turn of random writes, then its answer.

    Args:
        rng: Source of the random calls.
        answer: The reference's answer (submitted last).
        replay: The reference's actions before its submit (its write calls suffice: they leave
            its state, see :func:`toolgym.envs.replay.write_actions`).
        write_tools: Names of the toolset's write tools (the schema shown to agents does not say).
        calls_per_turn: Most random calls in each of the two random turns.
        seen: Observations whose values seed the pool of plausible arguments (the reference's
            own, so a vandal replaying only its writes still writes on the rows it read).
    """

    def __init__(
        self,
        rng: random.Random,
        answer: Any,
        replay: Iterable[str],
        write_tools: Iterable[str],
        calls_per_turn: int = 3,
        seen: Iterable[str] = (),
    ):
        self.rng, self.answer, self.replay = rng, answer, list(replay)
        self.write_tools = frozenset(write_tools)
        self.calls_per_turn = calls_per_turn
        self.phase = 0  # 0: random reads, 1: random writes, 2: submit, 3: done
        self.pool: list[str] = []
        for observation in seen:
            for r in mk.parse_tool_results(observation):
                harvest(r.get("content"), self.pool)

    def act(self, observation: str, info: dict[str, Any]) -> str:
        """Next replayed action, then the random turns, then the submit."""
        for r in mk.parse_tool_results(observation):
            harvest(r.get("content"), self.pool)
        if self.replay:
            return self.replay.pop(0)
        tools = [t["function"] for t in info["tools"] if t["function"]["name"] != "submit"]
        while self.phase < 2:
            writes = self.phase == 1
            self.phase += 1
            pick = [fn for fn in tools if (fn["name"] in self.write_tools) == writes]
            if pick:
                n = self.rng.randint(1, self.calls_per_turn)
                chosen = self.rng.choices(pick, k=n)
                calls = [(fn["name"], sample_value(fn["parameters"], self.rng, self.pool)) for fn in chosen]
                return mk.render_action(calls)
        if self.phase == 3:
            return mk.END
        self.phase = 3
        return mk.render_action([("submit", {"answer": self.answer})])


__all__ = ["NullAgent", "RandomAgent", "SubmitAgent", "VandalAgent", "empty_value", "harvest", "sample_value"]
