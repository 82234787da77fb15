"""Code-interpreter tasks: seven kinds, a difficulty ladder, and checks that every task is sound.

Kinds (the answer type in brackets):

* ``stat`` — a statistic of a measure over rows meeting conditions [number, 2 decimals];
* ``count`` — rows meeting several conditions, negations included, and their total of a
  measure [record ``{count, total}``: a bare count is too easy to guess];
* ``argmax`` — group, aggregate, pick the best group [record ``{name, value}``], or the busiest
  date [string];
* ``compare`` — per-group comparison: groups above the overall mean, or higher in one period
  than in another [set of names];
* ``simulate`` — replay the event log in time order with rejections [integer, set, string
  timestamp, or record ``{name, count}``];
* ``pairs`` — a small combinatorial search over entities [integer];
* ``numbers`` — integers in a range meeting number-theory predicates [integer].

Difficulty raises the task step by step: more files (the actor table from 2, the event log
from 3), more conditions (1 → 4), joins (from 2), derived measures and period comparisons
(from 4), a log cut-off and triples (5), larger data (120 → 1,600 fact rows), and less help in the
prompt (no file list from 3, no join keys from 4). The fact table's files get messier
(``world.MESS``): missing values and exact repeats from 2, mixed date formats from 3, a column
written with mixed units from 4; every prompt from 2 warns of such mess in general terms and
states the rules that keep the answer unique (a row lacking a used value is left out, a repeat
counts once, a unit converts to its column's majority unit), and from 3 the tie rule (the tied
name that sorts first), which lets a count's best group be an exact tie. From 4 the event log
repeats some events too; at 5 ``numbers`` (no files, one brute-force cell) leaves the ladder.

Soundness, checked on every draw (a failed check redraws): each condition changes the answer
(no decorative constraints); a best group beats the runner-up by a clear margin or, for
counts from difficulty 3, ties it exactly (the stated rule decides; a best average needs at
least 5 rows), a threshold on a unit column lies half a step between data values, and no group
sits within 0.005 of a comparison threshold, so float summation order cannot flip an answer;
sets have at least two members and leave at least two out; counts, sums and levels are never 0
(the null agent's answer). Expected answers are computed by :mod:`.queries` on typed rows.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from typing import Any

from toolgym.spec import TaskDraft
from toolgym.synth.code import aggregate as ag
from toolgym.synth.code import compute as cp
from toolgym.synth.code import prompts as pr
from toolgym.synth.code import queries as qy
from toolgym.synth.code.world import CodeWorld

#: Per difficulty: kind weights and the (min, max) number of conditions.
LEVELS: dict[int, tuple[dict[str, int], tuple[int, int]]] = {
    1: ({"stat": 3, "count": 2, "argmax": 2, "numbers": 1}, (1, 1)),
    2: ({"stat": 3, "count": 2, "argmax": 2, "pairs": 1, "numbers": 1}, (1, 2)),
    3: ({"stat": 2, "count": 1, "argmax": 2, "compare": 2, "simulate": 2}, (2, 2)),
    4: ({"stat": 2, "count": 1, "argmax": 1, "compare": 2, "simulate": 2, "pairs": 1, "numbers": 1}, (2, 3)),
    5: ({"stat": 2, "count": 2, "argmax": 2, "compare": 2, "simulate": 2, "pairs": 1}, (3, 4)),
}
TRIES = 6

BUILDERS = {
    "stat": ag.build_stat,
    "count": ag.build_count,
    "argmax": ag.build_argmax,
    "compare": ag.build_compare,
    "simulate": cp.build_simulate,
    "pairs": cp.build_pairs,
    "numbers": cp.build_numbers,
}


def verifier_spec(answer: str, expected: Any) -> dict[str, Any]:
    """The verifier of an answer type (answers are checked by value only)."""
    if answer == "number":
        return {"kind": "numeric", "expected": expected, "abs_tol": ag.TOL, "rel_tol": 0.0}
    if answer == "integer":
        return {"kind": "numeric", "expected": expected, "abs_tol": 0.0, "rel_tol": 0.0, "integer": True}
    if answer == "string":
        return {"kind": "exact", "expected": expected}
    if answer == "names":
        return {"kind": "set", "expected": expected}
    return {"kind": "json", "expected": expected, "abs_tol": ag.TOL, "rel_tol": 0.0}


def schema(world: CodeWorld, roles: list[str]) -> dict[str, dict[str, Any]]:
    """What a reference program needs to know of the files a task reads (all of it in the headers)."""
    out: dict[str, dict[str, Any]] = {}
    for r in roles:
        t = world.roles[r]
        info: dict[str, Any] = {"file": world.file_of[r], "table": t.name, "key": t.key}
        if r in ("E", "A"):
            info["name"] = world.name_of(r)
        if r == "E":
            info["level"] = t.by_kind("level")[0].name
        if r == "F":
            info["fk"] = {ref: qy.fk_col(world, ref) for ref in ("E", "A") if ref in world.roles}
            info["numeric"] = [c.name for c in t.by_kind("int", "float") if c.name in world.columns("F")]
            unit = next((c for c in t.cols if c.unit is not None), None) if world.messy("units") else None
            info["mess"] = {
                "missing": world.messy("missing"),
                "dups": world.messy("dups"),
                "dates": world.messy("dates"),
                "unit": None if unit is None else [unit.name, *unit.unit[:3]],  # type: ignore[misc]
            }
        if r == "L":
            info["fk"] = {"E": qy.fk_col(world, "E", "L")}
            info["mess"] = {"dups": world.messy("dups", "L")}
            info["add"], info["remove"] = t.by_kind("event")[0].values
            info["qty"], info["key"] = t.by_kind("int")[0].name, "ts"
        out[r] = info
    return out


def make_task(
    world: CodeWorld, difficulty: int, rng: random.Random, only: Collection[str] | None = None
) -> TaskDraft | None:
    """Propose one task over ``world``; None if no kind yields a sound task in a few draws.

    Args:
        world: The world.
        difficulty: 1-5; picks the kind weights and the number of conditions.
        rng: The task's generator.
        only: Restrict to these kinds (tests, focused datasets); a kind outside the
            difficulty's ladder gets weight 1.
    """
    levels, (lo, hi) = LEVELS[difficulty]
    weights = levels if only is None else {k: levels.get(k, 1) for k in only}
    kinds = sorted(weights)
    first = rng.choices(kinds, weights=[weights[k] for k in kinds])[0]
    # The drawn kind gets a few tries before others do, so the kind mix follows the weights
    # rather than favouring the kinds whose soundness checks pass most often.
    order = [first] * TRIES + [k for k in rng.sample(kinds, len(kinds)) if k != first]
    for kind in order:
        b = BUILDERS[kind](world, rng, difficulty, rng.randint(lo, hi))
        if b is None:
            continue
        head = pr.intro(world, b["roles"], difficulty, rng) if b["roles"] else "Use the Python tool to compute this."
        notes = pr.notes(difficulty)
        prompt = f"{head}{notes}\n{b['text']}\n{pr.answer_format(b['answer'], b.get('fields', ''))}"
        files = {world.file_of[r]: len(world.files[world.file_of[r]].splitlines()) for r in b["roles"]}
        return TaskDraft(
            prompt=prompt,
            params={"query": b["q"], "answer": b["answer"], "schema": schema(world, b["roles"])},
            verifier_spec=verifier_spec(b["answer"], b["expected"]),
            tool_config={"answer": b.get("record", b["answer"])},
            meta={"kind": kind, "theme": world.theme.id, "runner_up": b.get("runner_up"), "file_lines": files},
        )
    return None
