"""Code interpreter: DeepSeek-V3.2's third agent category, synthesized offline.

A world is a theme's data files (an online shop, a weather-station network, a library, a
bike-share scheme) generated from a seed; a task is a question over them (or a number-theory
count) that needs real computation; the toolset is a stateful sandboxed Python plus file
listing and paged reading. See ``themes.py`` (schemas), ``world.py`` (data and files),
``queries.py`` (the generator's own answers), ``tasks.py`` (difficulty ladder, soundness
rules, verifier specs) with the kinds in ``aggregate.py`` and ``compute.py``, ``prompts.py``
(wording), ``programs.py`` + ``reference.py`` (the tool-only reference) and ``tools.py`` (the
toolset and the lazily opened sandbox).

The hardness baseline is a naive one-shot analysis (``heuristic.py``: one cell, no cleaning, no
tie rule); ``random_pass`` gives the random answer's exact chance, so synthesis samples one
random episode instead of eight where that chance is at most 0.1% (each random episode that
calls ``run_python`` opens a sandbox: they were most of a task's sandboxes).

Verification is by **answer only**: no code runs to judge an episode, so nothing the policy's
code writes in its workspace can reach the verdict (sandbox.md §5, verifier hygiene). Numbers
are checked with the tolerance the prompt states, sets in any order, records field by field.

Gate answers (each of the right type, so only the *value* can be wrong):

* random: drawn from the data's own range or domain: a number between the measure's smallest
  and largest value (or up to its grand total for sums), a count up to the number of rows, a
  date of the covered period, names of the right table, a record combining both;
* bluff: well-formed without looking at the files: invented names (the world's own name
  generator, so they look right and exist nowhere), round-looking numbers, dates of 2024;
* perturbed: the reference answer broken beyond the tolerance: a number shifted by more than
  the tolerance, an integer off by one, the runner-up group or a wrong date, a set with one
  name added or removed, a record with one field changed.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Sequence
from typing import Any

from toolgym.envs.tools import Tool
from toolgym.spec import TaskDraft, TaskSpec
from toolgym.synth.code import heuristic, reference, tasks
from toolgym.synth.code import queries as qy
from toolgym.synth.code import tools as code_tools
from toolgym.synth.code.themes import person
from toolgym.synth.code.world import CodeWorld, generate
from toolgym.synth.family import Family, Program


def _range(world: CodeWorld, q: dict[str, Any]) -> tuple[float, float]:
    """The plausible range of a numeric answer (a count's total: up to the grand total), read off the data."""
    if q.get("measure"):
        values = [qy.measure(world, r, q["measure"]) for r in qy.selected(world, [], q["measure"])]
        if q.get("stat", q.get("agg")) == "sum" or q["kind"] == "count":
            return 0.0, math.fsum(values)
        return min(values), max(values)
    return 0.0, float(len(world.rows["F"]))


def _count_range(world: CodeWorld, q: dict[str, Any]) -> int:
    """The largest plausible integer answer."""
    if q["kind"] == "numbers":
        return q["hi"] - q["lo"] + 1
    if q["kind"] == "pairs":
        return math.comb(len(world.rows["E"]), q["size"])
    if q["kind"] == "simulate":
        return len(world.rows["L"])
    return len(world.rows["F"])


def _domain(world: CodeWorld, q: dict[str, Any]) -> list[str]:
    """The strings a string, name or record answer could plausibly be."""
    if q["kind"] == "simulate":
        if q["ask"] == "first_empty":
            return sorted(r["ts"] for r in world.rows["L"])
        return [r[world.name_of("E")] for r in world.rows["E"]]
    group = q["group"]
    if group["t"] == "F":  # dates of the covered period
        start, end = (dt.date.fromisoformat(d) for d in world.data["period"])
        return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
    return sorted({str(r[group["col"]]) for r in world.rows[group["t"]]})


#: Above this exact random-pass chance :meth:`CodeInterpreter.random_pass` defers to the sampled gate.
RANDOM_PASS_SAMPLED = 0.001


def _p_number(lo: float, hi: float, x: float) -> float:
    """Upper bound on the chance that ``round(uniform(lo, hi), 2)`` lies within 0.01 of ``x``."""
    if not lo - 0.011 <= x <= hi + 0.011:
        return 0.0
    return min(1.0, 0.03 / max(hi - lo, 1e-9))


def _chance(world: CodeWorld, q: dict[str, Any], kind: str, record: str, expected: Any) -> float:
    """The chance a random answer (``CodeInterpreter.random_answer``) equals ``expected``."""
    if kind == "number":
        return _p_number(*_range(world, q), float(expected))
    if kind == "integer":
        top = _count_range(world, q)
        return 1.0 / (top + 1) if 0 <= expected <= top else 0.0
    if record == "count_total":
        top = _count_range(world, q)
        p_count = 1.0 / (top + 1) if 0 <= expected["count"] <= top else 0.0
        return p_count * _p_number(*_range(world, q), float(expected["total"]))
    domain = _domain(world, q)
    if kind == "string":
        return domain.count(expected) / len(domain)
    if kind == "names":
        n, k = len(domain), len(expected)
        sizes = max(1, n // 2)
        if not 1 <= k <= sizes or not set(expected) <= set(domain):
            return 0.0
        return 1.0 / sizes / math.comb(n, k)
    p_name = domain.count(expected["name"]) / len(domain)
    if record == "name_count":
        return p_name * (1 / 12 if 1 <= expected["count"] <= 12 else 0.0)
    lo, hi = _range(world, q) if q.get("agg") != "count" else (1.0, float(len(world.rows["F"])))
    return p_name * _p_number(lo, hi, float(expected["value"]))


def _shift(x: float) -> float:
    """A shift comfortably beyond the tolerance (0.01)."""
    return max(0.05, 0.02 * abs(x))


class CodeInterpreter(Family):
    """Data analysis and computation tasks solved with a sandboxed Python interpreter."""

    id = "code"
    env_name = "CodeInterpreter"
    version = 1
    summary = "data files + stateful sandboxed Python: conditional stats, joins, group-by, simulation, search"
    categories = ("code execution", "data analysis", "python sandbox")

    def make_world(self, seed: int, difficulty: int) -> CodeWorld:
        """Generate a world's data files."""
        return CodeWorld(generate(seed, difficulty))

    def load_world(self, data: dict[str, Any]) -> CodeWorld:
        """Rebuild a world (and render its files) from its data."""
        return CodeWorld(data)

    def make_task(self, world: CodeWorld, difficulty: int, rng: random.Random) -> TaskDraft | None:
        """Propose a sound task (see ``tasks.py``)."""
        return tasks.make_task(world, difficulty, rng)

    def tools(self, tool_config: dict[str, Any]) -> Sequence[Tool]:
        """run_python, list_files, read_file and the task's typed submit."""
        return code_tools.toolset(tool_config)

    def reference(self, params: dict[str, Any], tool_config: dict[str, Any]) -> Program:
        """The tool-only reference: load the files, compute in the same kernel, submit."""
        return reference.program(params)

    def heuristic(self, task: TaskSpec) -> Program:
        """The naive one-shot analysis of :mod:`toolgym.synth.code.heuristic` (no cleaning, no tie rule)."""
        return heuristic.program(task.params)

    def episode_context(self, world: CodeWorld, task: TaskSpec) -> code_tools.CodeContext:
        """A fresh context per episode; its sandbox opens on the first run_python."""
        return code_tools.CodeContext(
            world.files, float(task.tool_config.get("timeout_s", code_tools.DEFAULT_TIMEOUT_S))
        )

    def close_context(self, context: code_tools.CodeContext) -> None:
        """Kill the episode's kernel and remove its workspace."""
        context.close()

    def random_answer(self, world: CodeWorld, task: TaskSpec, rng: random.Random) -> Any:
        """A plausible answer drawn from the data's range or domain."""
        q, answer = task.params["query"], task.params["answer"]
        if answer == "number":
            return round(rng.uniform(*_range(world, q)), 2)
        if answer == "integer":
            return rng.randint(0, _count_range(world, q))
        if task.tool_config["answer"] == "count_total":
            return {"count": rng.randint(0, _count_range(world, q)), "total": round(rng.uniform(*_range(world, q)), 2)}
        domain = _domain(world, q)
        if answer == "string":
            return rng.choice(domain)
        if answer == "names":
            return rng.sample(domain, rng.randint(1, max(1, len(domain) // 2)))
        if task.tool_config["answer"] == "name_count":
            return {"name": rng.choice(domain), "count": rng.randint(1, 12)}
        lo, hi = _range(world, q) if q.get("agg") != "count" else (1.0, float(len(world.rows["F"])))
        return {"name": rng.choice(domain), "value": round(rng.uniform(lo, hi), 2)}

    def random_pass(self, world: CodeWorld, task: TaskSpec) -> float | None:
        """The chance that :meth:`random_answer` passes (an upper bound for numbers), or None.

        Known exactly from how the random answer is drawn: a number is a uniform draw rounded
        to 2 decimals, so at most 3 grid points lie within the 0.01 tolerance; an integer, a
        string or a record's name is one of its domain's values; a set is a uniform size then a
        uniform subset. With it known, synthesis runs 1 sampled random episode instead of 8,
        which is most of the sandboxes a task opened (each random episode that calls
        ``run_python`` opens one).

        Above :data:`RANDOM_PASS_SAMPLED` it returns None, so the sampled gate decides as before.
        Since the ``count`` kind answers ``{count, total}`` (it was a bare count: 1 in 120 at
        difficulty 1, the bulk of every difficulty's random pass), what is left above it is a
        minority whose answer space is small by nature (a log replay's rejected events, the
        busiest date of a year, a pair count at difficulty 2, a mean over a narrow range; about
        0.1-0.6% each), and the mean chance over a difficulty's tasks is under 0.1% at every
        difficulty (``toolgym bench synth``'s random pass). Dropping those outright would empty
        the ``simulate`` kind at difficulty 3.
        """
        q, kind, expected = task.params["query"], task.params["answer"], task.verifier_spec["expected"]
        chance = _chance(world, q, kind, task.tool_config["answer"], expected)
        return chance if chance <= RANDOM_PASS_SAMPLED or task.difficulty == 1 else None

    def bluff_answer(self, task: TaskSpec, rng: random.Random) -> Any:
        """A well-formed answer made up without reading a file."""
        q, answer = task.params["query"], task.params["answer"]
        if answer == "number":
            return round(rng.uniform(1, 1000), 2)
        if answer == "integer":
            return rng.randint(1, 2000)
        if answer == "string":
            day = dt.date(2024, 1, 1) + dt.timedelta(days=rng.randrange(366))
            return (
                f"{day.isoformat()}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00"
                if q["kind"] == "simulate"
                else day.isoformat()
            )
        if answer == "names":
            return [person(rng) for _ in range(rng.randint(2, 5))]
        if task.tool_config["answer"] == "count_total":
            return {"count": rng.randint(1, 2000), "total": round(rng.uniform(1, 1000), 2)}
        if task.tool_config["answer"] == "name_count":
            return {"name": person(rng), "count": rng.randint(1, 12)}
        return {"name": person(rng), "value": round(rng.uniform(1, 1000), 2)}

    def perturb(self, world: CodeWorld, task: TaskSpec, answer: Any, rng: random.Random) -> list[Any]:
        """The reference answer broken beyond the tolerance in each way its type allows."""
        q, kind = task.params["query"], task.params["answer"]
        if kind == "number":
            return [round(answer + _shift(answer), 2), round(answer - _shift(answer), 2)]
        if kind == "integer":
            return [answer + 1, answer - 1]
        if task.tool_config["answer"] == "count_total":
            shift = _shift(answer["total"])
            return [
                {**answer, "count": answer["count"] + 1},
                {**answer, "total": answer["total"] + shift},
                {**answer, "total": answer["total"] - shift},
            ]
        runner_up = task.meta.get("runner_up")
        domain = _domain(world, q)
        if kind == "string":
            others = [d for d in domain if d != answer]
            return [runner_up or rng.choice(others), rng.choice(others)]
        if kind == "names":
            missing = [d for d in domain if d not in answer]
            return [[*answer, rng.choice(missing)], answer[1:], [*answer[:-1], rng.choice(missing)]]
        other = runner_up or rng.choice([d for d in domain if d != answer["name"]])
        field = "count" if "count" in answer else "value"
        bump = 1 if field == "count" else _shift(answer[field])
        return [
            {**answer, "name": other},
            {**answer, field: answer[field] + bump},
            {**answer, field: answer[field] - bump},
        ]
