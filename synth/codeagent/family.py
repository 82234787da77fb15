"""Code agent: repair a generated Python package from an issue, judged by hidden tests.

DeepSeek-V3.2's second-largest agent category, synthesized offline and gated.

A world is a small package generated from a template library (:mod:`.package`); a task injects
one to three bugs by AST mutation (:mod:`.mutate`) that ship only when the hidden tests tell them
apart, and describes their symptoms as a user would (:mod:`.tasks`). The toolset reads, searches
and edits the files and runs the visible tests in a sandbox (:mod:`.tools`); the verifier runs
the hidden tests in a judge sandbox of its own on a copy of the final package, after the agent's
sandbox is closed (:mod:`toolgym.verifiers.hidden_tests`). There is no VCS history in the
workspace and the hidden tests never enter it.

Gates. The shared ones: null (submit at once), bluff and random submit a summary without a
repair (the answer is not what is judged, so these only prove that an unchanged package scores
0: exactly, ``random_pass`` is 0); and the family's own agents (:meth:`CodeAgent.gate_agents`),
each of which must score 0:

* ``random_edits``: one to three random mutations of the buggy package, applied with ``edit_file``;
* ``delete_function``: the function each symptom is reported at, deleted;
* ``edit_tests``: every visible test file replaced by one test that passes;
* ``constant``: the reported function made to return the expected value for the issue's input
  and for its visible test cases (an ``if`` table at the top of its body).

The gate episodes of a task run inside :meth:`CodeAgent.gate_scope`, where the verifier judges
the gate agents' repairs in-process (:mod:`.gatejudge`: our own code, the sandbox's twin there;
the reference and every policy keep one fresh judge sandbox per verification).

The reference reads each buggy file, undoes each mutation with one ``edit_file`` and submits; it
does not run the tests (a sandbox start per reference episode buys a synthesis run nothing: the
hidden tests are the proof). Its calls grow with the bugs: 3 at one bug, 5–6 at two, 7–9 at three.
"""

from __future__ import annotations

import ast
import contextlib
import random
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from toolgym.envs.rollout import Final, Step
from toolgym.envs.tools import Tool
from toolgym.spec import TaskDraft, TaskSpec
from toolgym.synth.codeagent import heuristic, tasks
from toolgym.synth.codeagent import tools as ca_tools
from toolgym.synth.codeagent.gatejudge import judge_in_process
from toolgym.synth.codeagent.mutate import apply, line_edit, mutations
from toolgym.synth.codeagent.package import CodeAgentWorld, generate
from toolgym.synth.family import Family, Program
from toolgym.verifiers.hidden_tests import trusted_judge

SUMMARIES = [
    "Fixed the reported bug.",
    "Corrected the calculation.",
    "Handled the edge case.",
    "Fixed an off-by-one error.",
]


def _buggy_files(world: CodeAgentWorld, task: TaskSpec) -> dict[str, str]:
    return {**world.files, **task.params["files"]}


def _function_lines(source: str, name: str) -> tuple[int, int, int]:
    """(first line, last line of its docstring or def, last line) of a top-level function, 1-based."""
    fn = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == name)
    head = fn.body[0].end_lineno if isinstance(fn.body[0], ast.Expr) and len(fn.body) > 1 else fn.lineno
    return fn.lineno, int(head or fn.lineno), int(fn.end_lineno or fn.lineno)


def _constant_edit(text: str, case: list[Any], visible: list[list[Any]]) -> dict[str, str]:
    """An edit making ``case``'s function return the expected value for its reported and visible inputs."""
    fn = next(n for n in ast.parse(text).body if isinstance(n, ast.FunctionDef) and n.name == case[2])
    first, head, _ = _function_lines(text, case[2])
    lines = text.split("\n")
    old = "\n".join(lines[first - 1 : head])
    table = [(c[3], c[4][1]) for c in [case, *visible] if c[2] == case[2] and c[4][0] == "ok"]
    params = ", ".join(a.arg for a in fn.args.args)
    inject = [
        f"    for _args, _expected in {table!r}:",
        f"        if [{params}][: len(_args)] == _args:",
        "            return _expected",
    ]
    return {"old": old, "new": old + "\n" + "\n".join(inject)}


class CodeAgent(Family):
    """Repair a generated package so that an issue's symptoms go and every hidden test passes."""

    id = "codeagent"
    env_name = "CodeAgent"
    version = 0
    summary = "a generated Python package with injected bugs: read, search, edit, run tests; hidden tests judge"
    tasks_per_world = 4

    def make_world(self, seed: int, difficulty: int) -> CodeAgentWorld:
        """Generate a package and its cases."""
        return CodeAgentWorld(generate(seed, difficulty))

    def load_world(self, data: dict[str, Any]) -> CodeAgentWorld:
        """Rebuild a world (its files rendered) from its data."""
        return CodeAgentWorld(data)

    def make_task(self, world: CodeAgentWorld, difficulty: int, rng: random.Random) -> TaskDraft | None:
        """Inject shipping bugs and write the issue (see :mod:`.tasks`)."""
        return tasks.make_task(world, difficulty, rng)

    def tools(self, tool_config: dict[str, Any]) -> Sequence[Tool]:
        """list_files, read_file, search_code, edit_file, run_tests and submit."""
        return ca_tools.toolset(tool_config)

    def reference(self, params: dict[str, Any], tool_config: dict[str, Any]) -> Program:
        """Read each buggy file, undo each mutation with edit_file, submit."""
        return _reference(params)

    def heuristic(self, task: TaskSpec) -> Program:
        """The shallow repair agent of :mod:`.heuristic` (issue test, one-token fixes where failures point)."""
        return heuristic.program(task.params["package"], task.prompt)

    def episode_context(self, world: CodeAgentWorld, task: TaskSpec) -> ca_tools.AgentContext:
        """A fresh file store holding the buggy package; its sandbox opens on the first run_tests."""
        timeout = float(task.tool_config.get("timeout_s", ca_tools.DEFAULT_TIMEOUT_S))
        return ca_tools.AgentContext(_buggy_files(world, task), world.package, timeout)

    def gate_scope(self) -> AbstractContextManager[None]:
        """One task's gate episodes: repairs judged in-process where exact (:mod:`.gatejudge`), one kept sandbox."""
        return _gate_scope()

    def close_context(self, context: ca_tools.AgentContext) -> None:
        """Close the episode's sandbox, if it opened one."""
        context.close()

    def random_answer(self, world: CodeAgentWorld, task: TaskSpec, rng: random.Random) -> Any:
        """A summary (the package is what is judged)."""
        return rng.choice(SUMMARIES)

    def bluff_answer(self, task: TaskSpec, rng: random.Random) -> Any:
        """A confident summary with no repair behind it."""
        return f"Fixed {task.params['symptoms'][0][2]}; all tests pass."

    def perturb(self, world: CodeAgentWorld, task: TaskSpec, answer: Any, rng: random.Random) -> list[Any]:
        """None: the answer is a free summary; broken repairs are the family's gate agents."""
        return []

    def random_pass(self, world: CodeAgentWorld, task: TaskSpec) -> float | None:
        """0: with no edit the package is the shipped buggy one, whose fail-to-pass cases fail (proven at synthesis)."""
        return 0.0

    def gate_agents(self, world: CodeAgentWorld, task: TaskSpec, rng: random.Random) -> list[tuple[str, Program]]:
        """random_edits, delete_function, edit_tests and constant (see the module docstring); each must score 0."""
        files = _buggy_files(world, task)
        seed = rng.getrandbits(64)
        return [
            ("random_edits", _random_edits(world, files, random.Random(seed))),
            ("delete_function", _delete_function(world, files, task)),
            ("edit_tests", _edit_tests(files)),
            ("constant", _constant(world, files, task)),
        ]


@contextlib.contextmanager
def _gate_scope() -> Iterator[None]:
    """The trusted in-process judge and the kept gate sandbox (:func:`.tools.gate_sessions`), together."""
    with trusted_judge(judge_in_process), ca_tools.gate_sessions():
        yield


def _reference(params: dict[str, Any]) -> Program:
    paths = list(dict.fromkeys(e["path"] for e in params["edits"]))
    yield Step([("read_file", {"path": p}) for p in paths], "Read the code behind the reported behaviour.")
    for e in params["edits"]:
        yield Step([("edit_file", {"path": e["path"], "old": e["old"], "new": e["new"]})], "Undo the faulty change.")
    return Final("Fixed the reported behaviour.", "Every reported call now gives the documented result.")


def _random_edits(world: CodeAgentWorld, files: dict[str, str], rng: random.Random) -> Program:
    current = dict(files)
    for _ in range(rng.randint(1, 3)):
        mid = rng.choice(world.data["order"])
        path = world.module_path(mid)
        muts = mutations(mid, current[path])
        m = rng.choice(muts)
        try:
            old, new = line_edit(current[path], apply(current[path], [m]))
        except ValueError:
            continue
        current[path] = current[path].replace(old, new, 1)
        yield Step([("edit_file", {"path": path, "old": old, "new": new})])
    return Final(rng.choice(SUMMARIES))


def _delete_function(world: CodeAgentWorld, files: dict[str, str], task: TaskSpec) -> Program:
    current = dict(files)
    for _, mid, fn, _ in task.params["symptoms"]:
        path = world.module_path(mid)
        try:
            first, _, last = _function_lines(current[path], fn)
        except StopIteration:  # already deleted (two symptoms at one function)
            continue
        lines = current[path].split("\n")
        old = "\n".join(lines[first - 1 : last])
        current[path] = current[path].replace(old, "", 1)
        yield Step([("edit_file", {"path": path, "old": old, "new": ""})])
    return Final("Removed the broken function.")


def _edit_tests(files: dict[str, str]) -> Program:
    for path in sorted(p for p in files if p.startswith("tests/")):
        yield Step([("edit_file", {"path": path, "old": files[path], "new": "def test_ok():\n    assert True\n"})])
    return Final("Made the tests pass.")


def _constant(world: CodeAgentWorld, files: dict[str, str], task: TaskSpec) -> Program:
    current = dict(files)
    done: set[tuple[str, str]] = set()
    for sym in task.params["symptoms"]:
        if (sym[1], sym[2]) in done:
            continue
        done.add((sym[1], sym[2]))
        case = tasks.world_case(world, sym[0])
        path = world.module_path(sym[1])
        edit = _constant_edit(current[path], case, world.data["visible"])
        current[path] = current[path].replace(edit["old"], edit["new"], 1)
        yield Step([("edit_file", {"path": path, **edit})])
    return Final("Returned the expected values.")
