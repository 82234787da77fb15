"""The code family's reference solution: a program that solves a task **only through the tools**.

It sees the task's public parameters (the structured query and the file schema) and nothing of
the data. Its trajectory is what a careful analyst does in a notebook: list the files, load the
ones the task needs and look at their sizes and columns (one ``run_python`` call), clean a
messy fact table one kind of mess per cell (:mod:`.cleaning`: gaps, repeats, dates, units), then
compute in the same kernel, reusing the earlier calls' variables: with two or more conditions, one cell
selects the rows and reports how many matched and a second aggregates them; otherwise one cell
does both. It submits the JSON value the last cell printed. Number-theory tasks need no files:
one cell.

A cell that fails (an exception, a timeout) is a bug of the generator or of the sandbox, so it
raises :class:`~toolgym.errors.ReferenceSolutionError`, which stops synthesis.
"""

from __future__ import annotations

import json
from typing import Any

from toolgym.envs.rollout import Final, Program, Step
from toolgym.errors import ReferenceSolutionError
from toolgym.synth.code.cleaning import clean_cells
from toolgym.synth.code.programs import load_cell, solve_cells
from toolgym.synth.text import clip, join_words

THOUGHTS = {
    "stat": "Take the statistic of the measure over the selected rows.",
    "count": "The answer is the number of rows that meet every condition.",
    "argmax": "Aggregate the selected rows per group and rank the groups; printing the top three shows the margin.",
    "compare": "Aggregate the selected rows per group and keep the groups that pass the comparison.",
    "simulate": "Sort the log by timestamp and replay it, rejecting removals larger than the current level.",
    "pairs": "Enumerate the combinations and keep those that meet every rule.",
    "numbers": "Brute force over the range is cheap: test every integer against every condition.",
}


def _all_conditions(n: int) -> str:
    """``"the condition"``, ``"both conditions"``, ``"all 3 conditions"``."""
    return "the condition" if n == 1 else "both conditions" if n == 2 else f"all {n} conditions"


def _clean_thought(cell: str) -> str:
    """Why a cleaning cell runs (told by what it fixes)."""
    if "missing values per column" in cell:
        return "The file is a raw export: first make the empty cells missing values and see which columns have gaps."
    if "exact repeats" in cell:
        return "Exact repeats are the same row exported twice; drop them before counting anything."
    if "date shapes" in cell:
        return "The dates come in several formats; parse each into YYYY-MM-DD so the month conditions work."
    return "One column carries a unit, and not always the same one; convert every value to the main unit."


def _checked(result: dict[str, Any], what: str) -> str:
    content = result.get("content") or {}
    if content.get("status") != "ok":
        raise ReferenceSolutionError(f"reference {what} cell failed: {json.dumps(content)[:800]}")
    return str(content.get("stdout", ""))


def program(params: dict[str, Any]) -> Program:
    """Solve a code task through ``list_files`` and ``run_python``; returns the answer it submits."""
    q, schema = params["query"], params["schema"]
    if schema:
        yield Step([("list_files", {})], "First, which files are in the workspace?")
        files = [s["file"] for s in schema.values()]
        them = "it and checking its size" if len(files) == 1 else "them and checking their sizes"
        (loaded,) = yield Step(
            [("run_python", {"code": load_cell(schema)})],
            f"The task needs {join_words(files)}. Loading {them} and columns before computing.",
        )
        _checked(loaded, "load")
    cells = solve_cells(params)
    cleaning = clean_cells(schema, q["kind"])
    for cell in cleaning:
        (cleaned,) = yield Step([("run_python", {"code": cell})], _clean_thought(cell))
        _checked(cleaned, "cleaning")
    if len(cells) - len(cleaning) > 1:
        (selected,) = yield Step(
            [("run_python", {"code": cells[-2]})],
            f"Now select the rows that meet {_all_conditions(len(q['where']))} and check how many there are.",
        )
        _checked(selected, "filter")
    (solved,) = yield Step([("run_python", {"code": cells[-1]})], THOUGHTS[q["kind"]])
    stdout = _checked(solved, "solve").strip()
    try:
        answer = json.loads(stdout.splitlines()[-1])
    except (IndexError, ValueError) as exc:
        raise ReferenceSolutionError(f"reference printed no JSON answer: {stdout[-300:]!r}") from exc
    return Final(answer, f"The computation printed {clip(json.dumps(answer), 200)}; submitting it.")
