"""The code family's baseline: a naive one-shot analysis, for the hardness table.

``toolgym bench synth --family code`` plays it through a real env
(:meth:`~toolgym.synth.family.Family.heuristic`); its pass share should fall as the difficulty
rises, because harder worlds have messier files, never because it looks at the difficulty.

It is what a hurried analyst types in **one** ``run_python`` call, then submits: load the files,
filter and aggregate exactly as the question reads, with the defaults of a quick pandas session
and no look at the data first:

* blank cells are missing; a missing value fails ``==``, ``<`` and the like but *passes* ``!=``
  (pandas' ``NaN != x`` is True), and aggregates skip it;
* numbers are read by keeping their digits (``"2,350 m"`` is 2350: thousands separators
  right, units ignored);
* dates are taken as written (``row["date"][:7]`` is the month only for ISO dates);
* exact repeats are kept (counted twice);
* ties go to the group seen first (no tie rule).

Tasks over clean files (the entity table, the event log, number theory) get the reference's
own computation in that one cell, so the baseline misses only what the mess and the tie rule
cost it. It reads the task's public parameters, like the reference, and acts only through the
tools.
"""

from __future__ import annotations

import json
from typing import Any

from toolgym.envs.rollout import Final, Program, Step
from toolgym.synth.code import programs as pg

#: What it submits when its one cell printed no answer, per answer type (scores 0).
EMPTY: dict[str, Any] = {"number": 0.0, "integer": 0, "string": "", "names": [], "record": {"name": "", "value": 0.0}}

_NAIVE_NUMBERS = '''
def number(text):
    """A number the quick way: keep the digits, the point and the sign."""
    if text is None or isinstance(text, (int, float)):
        return text
    kept = "".join(ch for ch in text if ch.isdigit() or ch in ".-")
    return float(kept) if kept else None


for row in $table:
    for column, value in row.items():
        row[column] = None if value == "" else number(value) if column in $numeric else value
'''


def _cond(c: dict[str, Any], schema: pg.Schema) -> str:
    """A condition with pandas' missing-value semantics (``!=`` passes a missing value)."""
    text = pg._cond(c, schema)
    if c["ref"]["t"] != "F":
        return text
    col = json.dumps(c["ref"]["col"])
    if c["op"] == "ne":
        return f"(row[{col}] is None or {text})"
    return f"(row[{col}] is not None and {text})"


def _cell(params: dict[str, Any]) -> str:
    """The one cell: load, read numbers naively, filter, aggregate, print the answer as JSON."""
    q, schema = params["query"], params["schema"]
    if q["kind"] not in ("stat", "count", "argmax", "compare"):
        cells = pg.solve_cells(params)
        body = cells[-1].replace(
            "min(rejected, key=lambda key: (-rejected[key], name[key]))  # ties: the first name",
            "max(rejected, key=rejected.get)",
        )
        return (pg.load_cell(schema) + "\n" if schema else "") + body
    facts = schema["F"]
    prep = pg._code(_NAIVE_NUMBERS, table=facts["table"], numeric=repr(tuple(facts["numeric"])))
    measures = [r for r in (q.get("measure") or {}).get("refs", []) if r["t"] == "F"]
    guards = [f"row[{json.dumps(r['col'])}] is not None" for r in measures]
    parts = guards + [_cond(c, schema) for c in q["where"]] or ["True"]
    keep = "def keep(row):\n    return (\n        " + "\n        and ".join(parts) + "\n    )\n"
    select = f"selected = [row for row in {facts['table']} if keep(row)]"
    lines = [pg.load_cell(schema), *prep, "", keep, "", select, *pg._aggregate(q, schema, ties=False)]
    return "\n".join(lines) + "\n"


def program(params: dict[str, Any]) -> Program:
    """One ``run_python`` call with the naive analysis, then submit what it printed."""
    (result,) = yield Step([("run_python", {"code": _cell(params)})], "One quick pass over the files should do it.")
    content = result.get("content") or {}
    try:
        answer = json.loads(str(content.get("stdout", "")).strip().splitlines()[-1])
    except (IndexError, ValueError):
        answer = EMPTY[params["answer"]]
    return Final(answer, "Submitting what the quick pass printed.")
