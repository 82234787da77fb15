"""Synthesized domains: relational tool worlds from archetypes, offline, without an LLM.

A seed picks an archetype (``archetypes/*.yaml``) and samples a world from it: a schema
(``schema.py``), rows (``world.py``, values from ``kinds.py``), a toolset derived from the schema
(``tools.py``, ``actions.py``), rules (``rules.py``), tasks by difficulty (``tasks.py``,
``writes.py``) and a tool-only reference (``reference.py``). See each module's docstring.

Episodes: :meth:`Domains.episode_context` gives each episode its own
:class:`~toolgym.synth.domains.world.DomainState` (the shared, immutable world plus an overlay of
changes), so reset costs well under a microsecond whatever the world's size, and no episode
sees another's writes; the state check hashes the overlay (the changes), which with the fixed
world is the whole state.

Gate answers (the answer kinds are ``text``, ``texts``, ``ranking``, ``counts``, ``number``,
``integer``):

* random: a *plausible* answer drawn from the world: the value of the asked field in a random
  row, a random set (or, for a ranking, a random ordered list) of ids of the right entity and
  size, for a breakdown a count per asked value drawn from 0 to the number of rows holding it,
  or a sum over a random subset of the right size;
* bluff: well-formed, built without the world: ids in the right format with random numbers,
  a random number, random counts;
* perturbed: the reference answer broken: a neighbouring id, one id dropped or added, the first
  two of a ranking swapped or its last replaced, one count off by one (or two counts swapped),
  a number off by one (or by 1%).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from toolgym.envs.tools import Tool
from toolgym.spec import TaskDraft, TaskSpec
from toolgym.synth.domains import heuristic, reference, tasks, tools, writes
from toolgym.synth.domains.world import DomainState, DomainWorld, archetype, archetype_ids, generate, load
from toolgym.synth.family import Family, Program
from toolgym.verifiers.state import state_hash

KIND_FUNCS = {
    "lookup": tasks.lookup,
    "select": tasks.select,
    "ranking": tasks.ranking,
    "aggregate": tasks.aggregate,
    "act": tasks.act,
    "conditional": writes.conditional,
    "policy": writes.policy,
    "bulk": writes.bulk,
}


def pick_archetype(seed: int) -> str:
    """The archetype a world seed uses (uniform over the shipped archetypes, by file order)."""
    ids = archetype_ids()
    return ids[random.Random(seed * 2654435761 % 2**32).randrange(len(ids))]


class Domains(Family):
    """Relational tool worlds from domain archetypes: lookups, joins, aggregates, writes under rules."""

    id = "domains"
    env_name = "Domains"
    version = 0  # the env id is Domains-v0; data changes are caught by the world digest (world.GENERATOR)
    summary = "relational tool worlds sampled from domain archetypes: reads, writes, policies, state checks"
    categories = ("customer service", "stateful writes", "policy following")
    # A world's tables, indices and toolsets serve 16 candidates: 218 vs 170 shipped tasks/s on 2
    # workers against 8, with about as many distinct toolsets per task (1,299 vs 1,352 in 2,000:
    # toolsets vary by task), half as many distinct schemas.
    tasks_per_world = 16

    def make_world(self, seed: int, difficulty: int, arch_id: str | None = None) -> DomainWorld:
        """A world of the seed's archetype (or ``arch_id``)."""
        return DomainWorld(generate(archetype(arch_id or pick_archetype(seed)), seed, difficulty))

    def load_world(self, data: dict[str, Any]) -> DomainWorld:
        """Rebuild a world from its stored inputs (regenerated; see ``world.load``)."""
        return load(data)

    def archetypes(self) -> Sequence[str]:
        """The shipped archetypes worlds are drawn from (``--holdout-archetypes`` names them)."""
        return list(archetype_ids())

    def world_archetype(self, world: DomainWorld) -> str:
        """The archetype a world was sampled from."""
        return str(world.data["archetype"])

    def world_schema(self, world: DomainWorld) -> dict[str, Any]:
        """The sampled schema: entities (attributes with chosen names and kinds), links, actions, policies."""
        out = []
        for e in world.schema["entities"]:
            attrs = [{"id": a.name, "name": e["attributes"][a.name], "kind": a.kind} for a in world.attrs(e["id"])]
            out.append({**{k: v for k, v in e.items() if k != "attributes"}, "attributes": attrs})
        return {
            "archetype": world.arch.id,
            "entities": out,
            "links": world.schema["links"],
            "actions": world.schema["actions"],
            "policies": world.schema["policies"],
        }

    def make_task(self, world: DomainWorld, difficulty: int, rng: random.Random) -> TaskDraft | None:
        """A task of the difficulty's kinds, falling back to easier kinds the world can host."""
        own = list(tasks.KINDS_BY_DIFFICULTY.get(difficulty, ["lookup"]))
        weight = lambda k: tasks.FIRST_WEIGHT.get(k, 1.0)  # noqa: E731
        if any(weight(k) != 1.0 for k in own):  # a weighted random order (Efraimidis-Spirakis keys)
            own.sort(key=lambda k: -(rng.random() ** (1 / weight(k))))
        else:
            rng.shuffle(own)
        order = own + [
            k for k in tasks.FALLBACK if k not in own and tasks.FALLBACK.index(k) > tasks.FALLBACK.index(own[-1])
        ]
        for kind in order:
            draft = KIND_FUNCS[kind](tasks.Builder(world, difficulty, rng))
            if draft is not None:
                return draft
        return None

    def tools(self, tool_config: dict[str, Any]) -> Sequence[Tool]:
        """The task's toolset (derived from the schema in its config)."""
        return tools.toolset(tool_config)

    def reference(self, params: dict[str, Any], tool_config: dict[str, Any]) -> Program:
        """The tool-only reference program."""
        return reference.program(params, tool_config)

    def heuristic(self, task: TaskSpec) -> Program:
        """The shallow agent of :mod:`toolgym.synth.domains.heuristic` (one find, first page, no rules)."""
        return heuristic.program(task.params, task.tool_config)

    def episode_context(self, world: DomainWorld, task: TaskSpec) -> DomainState:
        """A fresh overlay state over the shared world (see the module docstring)."""
        return DomainState(world)

    def random_answer(self, world: DomainWorld, task: TaskSpec, rng: random.Random) -> Any:
        """A plausible answer drawn from the world."""
        gate, kind = task.meta["gate"], task.tool_config["answer"]
        if "values_of" in gate:
            e, a = gate["values_of"]
            return rng.choice(list(world.rows[e].values()))[a]
        if "counts_of" in gate:
            e, a = gate["counts_of"]
            return {v: rng.randint(0, len(world.index(e, a).get(v, []))) for v in gate["values"]}
        if "sum_of" in gate:
            e, a = gate["sum_of"]
            rows = rng.sample(list(world.rows[e].values()), min(gate["n"], len(world.rows[e])))
            return round(sum(r.get(a) or 0 for r in rows), 2)
        keys = list(world.rows[gate["ids_of"]])
        picked = rng.sample(keys, min(len(keys), max(1, gate.get("n", 1))))
        return picked if kind in ("texts", "ranking") else picked[0]  # a sample's order is random too

    def random_pass(self, world: DomainWorld, task: TaskSpec) -> float | None:
        """The exact chance that :meth:`random_answer`, submitted with no write, passes.

        Zero when the task's expected state has a change (no write, no pass). Otherwise, by
        the gate's draw: a random row's value passes with the share of rows holding the
        expected value (under the answer check's tolerance); a breakdown, whose count for each
        asked value v is drawn from 0..N_v (N_v: the rows holding v), with prod_v 1 / (N_v + 1);
        one random id with 1 / N; a random set of ids of the expected size with 1 / C(N, n); a
        random ordered list of n distinct ids (a ranking) with 1 / P(N, n) = (N - n)! / N!. Sums
        of random rows: None (left to the sampled gate).
        """
        answer_check, state_check = task.verifier_spec["checks"]
        if state_check["expected_hash"] != state_hash(DomainState(world)):
            return 0.0
        gate, expected = task.meta["gate"], answer_check["expected"]
        tol = answer_check.get("abs_tol")
        if "values_of" in gate:
            e, a = gate["values_of"]
            rows = world.rows[e]
            same = sum(
                1
                for r in rows.values()
                if r.get(a) == expected
                or (tol is not None and isinstance(r.get(a), int | float) and abs(r[a] - expected) <= tol)
            )
            return same / max(len(rows), 1)
        if "counts_of" in gate:
            e, a = gate["counts_of"]
            chance = 1.0
            for v in gate["values"]:
                n = len(world.index(e, a).get(v, []))
                chance *= 1 / (n + 1) if 0 <= expected.get(v, -1) <= n else 0.0
            return chance if set(expected) == set(gate["values"]) else 0.0
        if "ids_of" in gate:
            n = len(world.rows[gate["ids_of"]])
            answer = task.tool_config["answer"]
            if answer not in ("texts", "ranking"):
                return 1 / max(n, 1)
            k = min(n, max(1, gate.get("n", 1)))
            ways = math.perm(n, k) if answer == "ranking" else math.comb(n, k)
            return 1 / ways if len(set(expected)) == k == len(expected) else 0.0
        return None

    def bluff_answer(self, task: TaskSpec, rng: random.Random) -> Any:
        """A well-formed answer made without the world."""
        kind = task.tool_config["answer"]
        prefix = {e["id"]: e["key_prefix"] for e in task.tool_config["schema"]["entities"]}
        gate = task.meta["gate"]
        ent = gate.get("ids_of") or (gate.get("values_of") or gate.get("sum_of") or gate.get("counts_of") or ["?"])[0]
        fake = lambda: f"{prefix.get(ent, 'X')}-{rng.randint(1, 999):05d}"  # noqa: E731
        if kind == "texts":
            return [fake() for _ in range(rng.randint(1, 4))]
        if kind == "ranking":
            return [fake() for _ in range(gate.get("n", 3))]
        if kind == "counts":
            return {v: rng.randint(0, 30) for v in gate["values"]}
        if kind == "integer":
            return rng.randint(0, 30)
        if kind == "number":
            return round(rng.uniform(0, 1000), 2)
        return fake()

    def perturb(self, world: DomainWorld, task: TaskSpec, answer: Any, rng: random.Random) -> list[Any]:
        """Broken copies of the reference answer."""
        kind = task.tool_config["answer"]
        if kind == "integer":
            return [answer + 1, max(0, answer - 1) if answer else 2]
        if kind == "number":
            return [round(answer + 1, 2), round(answer * 1.01 + 0.5, 2)]
        if kind == "counts":  # one count off by one; two different counts swapped (or one less)
            (a, x), (b, y) = list(answer.items())[:2]
            return [{**answer, a: x + 1}, {**answer, a: y, b: x} if x != y else {**answer, b: y - 1}]
        if kind == "ranking":  # the first two swapped; the last replaced by another row's id
            others = [k for k in world.rows[task.meta["gate"]["ids_of"]] if k not in answer]
            out = [[answer[1], answer[0], *answer[2:]]]
            return out + ([[*answer[:-1], rng.choice(others)]] if others else [])
        if kind == "texts":
            keys = [k for k in world.rows[task.meta["gate"]["ids_of"]] if k not in answer]
            out = [answer[:-1]] if answer else []
            if keys:
                out.append([*answer, rng.choice(keys)])
            return out
        if isinstance(answer, str) and answer[-5:].isdigit():
            n = int(answer[-5:])
            return [f"{answer[:-5]}{n + 1:05d}", f"{answer[:-5]}{max(n - 1, 0):05d}" if n > 1 else answer + "x"]
        return [str(answer) + " x", str(answer)[:-1]]
