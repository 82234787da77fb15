"""The codeagent heuristic: a shallow repair agent that tries one-token fixes where the failures point.

A baseline for the hardness table (``toolgym bench synth --family codeagent``), not a solver. It
sees what the prompt says (the package name and the issue's calls with their expected results;
from the task's public parameters and prompt, never the reference's edits) and acts only
through the tools, the same way for every task:

1. **A regression test from the issue**: it writes ``tests/test_issue.py`` (``edit_file`` with an
   empty ``old``), one test per reported call asserting the result the issue says it should
   give, and runs every test (``run_tests``): its score is the number of failing tests.
2. **Where to look**: the functions the issue reports, then the functions whose visible tests fail
   (``tests/test_<module>.py::test_<function>_<n>``) — never their callees, never another module.
3. **What to try**: the one-token repairs of the usual slips in those functions, in source order:
   a comparator or arithmetic operator swapped, an integer one up or down, the first two
   arguments of a call exchanged, an integer or string default changed (the mutation operators
   of :mod:`.mutate` applied to the code it read). It never writes a missing branch back.
4. **Greedy**: each repair is one ``edit_file`` and one ``run_tests`` in one turn; a repair that
   lowers the failing count is kept, any other is undone in the next turn. It submits when no
   test fails or after :data:`MAX_TRIES` repairs.

Why its share falls with difficulty (it never looks at the difficulty): level 1 reports the
buggy function itself; level 2 often a caller in the same module (the cause is found only when a
visible test of the buggy function fails too); levels 3–5 need two or three bugs fixed, reported
in another module than their cause; and a dropped branch is never repaired.
"""

from __future__ import annotations

import re
from typing import Any

from toolgym.envs.rollout import Final, Program, Step
from toolgym.synth.codeagent.mutate import apply, line_edit, mutations

MAX_TRIES = 40  # repairs tried, one turn each (the env allows 48 turns)
TOKEN_KINDS = ("comparator", "operator", "off_by_one", "swapped_args", "wrong_default")
ISSUE_TEST = "tests/test_issue.py"
_REPORT = re.compile(
    r"^(?:\d+\. )?`(?P<call>(?P<mod>\w+\.\w+)\.(?P<fn>\w+)\(.*\))` (?:returns|raises) .*, "
    r"but it should (?:return (?P<value>.+)|raise (?P<exc>\w+))\.$"
)
_FAILED_TEST = re.compile(r"^tests/test_(?P<mod>\w+)\.py::test_(?P<fn>\w+)_\d+$")


def reports(prompt: str) -> list[dict[str, str]]:
    """The issue's reported calls: ``{"call", "module", "function", "value" | "exc"}``, distinct, in order."""
    out: list[dict[str, str]] = []
    for line in prompt.splitlines():
        m = _REPORT.match(line.strip())
        if m and m.group("call") not in [r["call"] for r in out]:
            mod = m.group("mod")
            row = {"call": m.group("call"), "import": mod, "module": mod.split(".")[1], "function": m.group("fn")}
            row.update({"value": m.group("value")} if m.group("value") else {"exc": m.group("exc")})
            out.append(row)
    return out


def issue_tests(rows: list[dict[str, str]]) -> str:
    """``tests/test_issue.py``: one plain-assert test per reported call."""
    lines = ['"""Regression tests from the issue."""', ""]
    lines += sorted({f"import {r['import']}" for r in rows})
    for i, r in enumerate(rows, 1):
        lines += ["", "", f"def test_issue_{i}():"]
        if "value" in r:
            lines += [f"    assert {r['call']} == {r['value']}"]
        else:
            lines += [
                "    try:",
                f"        {r['call']}",
                "    except Exception as exc:",
                f"        assert type(exc).__name__ == {r['exc']!r}",
                "    else:",
                f"        raise AssertionError('expected {r['exc']}')",
            ]
    return "\n".join(lines) + "\n"


def _failing(result: dict[str, Any]) -> tuple[float, list[str]]:
    """(failing count, failing test ids) of a run_tests result; an unfinished run counts as infinitely bad."""
    content = result.get("content")
    if "error" in result or not isinstance(content, dict) or "failed" not in content:
        return float("inf"), []
    return float(content["failed"]), [f["test"] for f in content.get("failures", [])]


def _targets(rows: list[dict[str, str]], failed: list[str]) -> list[tuple[str, str]]:
    """(module, function) to repair: the reported ones, then those of the failing visible tests."""
    out = [(r["module"], r["function"]) for r in rows]
    for test in failed:
        m = _FAILED_TEST.match(test)
        if m:
            out.append((m.group("mod"), m.group("fn")))
    return list(dict.fromkeys(out))


def repairs(text: str, function: str) -> list[tuple[str, str]]:
    """The one-token repairs of ``function`` in a module's text, as unique ``(old, new)`` snippets."""
    try:
        muts = mutations("heuristic", text)
    except SyntaxError:
        return []
    out: list[tuple[str, str]] = []
    for m in muts:
        if m.function != function or m.kind not in TOKEN_KINDS:
            continue
        try:
            out.append(line_edit(text, apply(text, [m])))
        except ValueError:
            continue
    return list(dict.fromkeys(out))


def _read(path: str) -> Program:
    """A module's whole text through read_file (every page), or None when it cannot be read."""
    pages, page, parts = 1, 1, []
    while page <= pages:
        got = (yield Step([("read_file", {"path": path, "page": page})], f"Reading {path}."))[0]
        content = got.get("content")
        if "error" in got or not isinstance(content, dict):
            return None
        parts.append(content["text"])
        pages, page = int(content["pages"]), page + 1
    return "\n".join(parts) + "\n"


def program(package: str, prompt: str) -> Program:
    """The heuristic's program for one task (see the module docstring)."""
    rows = reports(prompt)
    results = yield Step(
        [("edit_file", {"path": ISSUE_TEST, "old": "", "new": issue_tests(rows)}), ("run_tests", {})],
        "Turn the issue into a test and run every test.",
    )
    best, failed = _failing(results[-1])
    texts: dict[str, str] = {}
    undo: list[tuple[str, Any]] = []
    tries = 0
    for mod, fn in _targets(rows, failed):
        path = f"{package}/{mod}.py"
        if path not in texts:
            text = yield from _read(path)
            if text is None:
                continue
            texts[path] = text
        for old, new in repairs(texts[path], fn):
            if best == 0 or tries == MAX_TRIES:
                break
            tries += 1
            edit = ("edit_file", {"path": path, "old": old, "new": new})
            results = yield Step([*undo, edit, ("run_tests", {})], f"Try a one-token fix in {fn}.")
            score, _ = _failing(results[-1])
            if "error" not in results[-2] and score < best:
                best, undo = score, []
                texts[path] = texts[path].replace(old, new, 1)
            elif "error" not in results[-2]:  # undone by a snippet unique in the edited text
                back_old, back_new = line_edit(texts[path].replace(old, new, 1), texts[path])
                undo = [("edit_file", {"path": path, "old": back_old, "new": back_new})]
            else:
                undo = []
    if undo:
        yield Step(undo, "Undo the last try.")
    return Final("Fixed the reported behaviour." if best == 0 else "Tried the obvious fixes.")


__all__ = ["issue_tests", "program", "repairs", "reports"]
