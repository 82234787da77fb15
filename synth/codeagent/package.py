"""A world of the codeagent family: a generated Python package, its visible tests, its hidden cases.

A world is a pure function of (seed, difficulty): a package name, modules from the template
library (:mod:`.templates`, :mod:`.composites`) with their constants drawn, ``tests/test_<module>.py``
files the agent can read and run, and the **hidden cases** — ``[id, module, function, args,
expected]`` rows, drawn from the same generators as the visible ones but a separate rng stream
(so they are other inputs) — that only the verifier spec carries.

Expected values come from running the *clean* modules in this process (:func:`run_cases`). This
is trusted code — the template library, never agent code — so synthesis needs no sandbox for it:
every candidate bug is checked the same way, in-process, in a few milliseconds (the sandbox is
for what an agent wrote: ``run_tests`` and the judge). A ``SIGALRM`` timer bounds each run in
case a mutant loops (templates have no ``while``; the timer is the backstop, main thread only).

An outcome is ``["ok", value]`` (the value as JSON: tuples become lists) or ``["raise",
"ExceptionType"]``.
"""

from __future__ import annotations

import ast
import functools
import itertools
import json
import random
import signal
import sys
import threading
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from toolgym.synth.codeagent.composites import ALL, BASES, COMPOSITES

PACKAGES = ["ledgerkit", "tallyho", "daybook", "quillet", "smallworks", "tinytools", "brasswire", "corkboard"]
HIDDEN_PER_FUNCTION = 8
VISIBLE_PER_FUNCTION = 2
RUN_TIMEOUT_S = 2.0
_counter = itertools.count()


def plain(value: Any) -> Any:
    """``value`` as JSON data (tuples → lists); anything JSON cannot hold becomes its ``repr``."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return repr(value)


@functools.lru_cache(maxsize=256)
def public_functions(source: str) -> tuple[str, ...]:
    """The top-level functions of a module whose names do not start with ``_``, in order."""
    tree = ast.parse(source)
    return tuple(n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_"))


@functools.lru_cache(maxsize=1024)
def _compiled(source: str, filename: str) -> types.CodeType:
    """A module's code object; cached, since a candidate bug changes one module and the others repeat."""
    return compile(source, filename, "exec")


def module_order(ids: list[str]) -> list[str]:
    """``ids`` with their dependencies first (templates list theirs in ``deps``)."""
    out: list[str] = []

    def add(i: str) -> None:
        for dep in ALL[i].deps:
            add(dep)
        if i not in out:
            out.append(i)

    for i in ids:
        add(i)
    return out


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the main thread after ``seconds`` (no limit in other threads)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(signum: int, frame: Any) -> None:
        raise TimeoutError("a case ran too long")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def load_modules(sources: Mapping[str, str], order: list[str]) -> dict[str, types.ModuleType]:
    """Execute trusted module sources as one private package in this process.

    Args:
        sources: Module id → source (relative imports between them resolve).
        order: Module ids, dependencies first.

    Returns:
        Module id → module object (a module that fails to execute is left out, so its cases raise).
    """
    name = f"_toolgym_codeagent_{next(_counter)}"
    pkg = types.ModuleType(name)
    pkg.__path__ = []
    sys.modules[name] = pkg
    mods: dict[str, types.ModuleType] = {}
    try:
        for mid in order:
            mod = types.ModuleType(f"{name}.{mid}")
            mod.__package__ = name
            sys.modules[mod.__name__] = mod
            try:
                exec(_compiled(sources[mid], f"{mid}.py"), mod.__dict__)  # noqa: S102 - trusted templates
            except Exception:  # noqa: BLE001 - a mutant that breaks at import: its cases raise
                sys.modules.pop(mod.__name__)
                continue
            mods[mid] = mod
    finally:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]
    return mods


def run_cases(sources: Mapping[str, str], order: list[str], cases: list[list[Any]]) -> dict[str, list[Any]]:
    """Outcomes of ``[id, module, function, args, ...]`` cases on trusted sources, by case id."""
    out: dict[str, list[Any]] = {}
    try:
        with _time_limit(RUN_TIMEOUT_S):
            mods = load_modules(sources, order)
            for case in cases:
                cid, mid, fn, args = case[:4]
                try:
                    value = getattr(mods[mid], fn)(*json.loads(json.dumps(args)))
                    out[cid] = ["ok", plain(value)]
                except Exception as exc:  # noqa: BLE001 - an outcome, not a failure of the run
                    out[cid] = ["raise", type(exc).__name__]
    except TimeoutError:
        for case in cases:
            out.setdefault(case[0], ["raise", "TimeoutError"])
    return out


def _draw_cases(
    rng: random.Random, mids: list[str], values: dict[str, dict[str, str]], per: int, tag: str
) -> list[list[Any]]:
    """``per`` distinct argument lists per public function (fewer when the generator repeats itself)."""
    cases: list[list[Any]] = []
    for mid in mids:
        t = ALL[mid]
        for fn in public_functions(t.source):
            seen: set[str] = set()
            for _ in range(per * 4):
                args = t.cases[fn](rng, values[mid])
                key = json.dumps(args, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    cases.append([f"{tag}{mid}.{fn}#{len(seen)}", mid, fn, args])
                if len(seen) == per:
                    break
    return cases


def generate(seed: int, difficulty: int) -> dict[str, Any]:
    """The data of one world: package, module sources, visible and hidden cases with expected outcomes.

    More modules as the difficulty rises: one composite module (and its two bases) at 1–2,
    two at 3–4, all three and every base module at 5.
    """
    rng = random.Random(f"codeagent-world-{seed}-{difficulty}")
    n_comp = 1 if difficulty <= 2 else 2 if difficulty <= 4 else 3
    chosen = [t.id for t in rng.sample(COMPOSITES, n_comp)]
    if difficulty >= 5:
        chosen += [t.id for t in BASES]
    order = module_order(chosen)
    values = {mid: ALL[mid].params(rng) for mid in order}
    sources = {mid: ALL[mid].render(values[mid]) for mid in order}
    hidden = _draw_cases(random.Random(rng.getrandbits(64)), order, values, HIDDEN_PER_FUNCTION, "")
    visible = _draw_cases(random.Random(rng.getrandbits(64)), order, values, VISIBLE_PER_FUNCTION, "v")
    hidden_keys = {json.dumps(c[1:4]) for c in hidden}
    visible = [c for c in visible if json.dumps(c[1:4]) not in hidden_keys]  # other inputs than the hidden ones
    outcomes = run_cases(sources, order, hidden + visible)
    return {
        "package": rng.choice(PACKAGES),
        "order": order,
        "sources": sources,
        "hidden": [[*c, outcomes[c[0]]] for c in hidden],
        "visible": [[*c, outcomes[c[0]]] for c in visible if outcomes[c[0]][0] == "ok"],
    }


def _call(fn: str, args: list[Any]) -> str:
    return f"{fn}({', '.join(repr(a) for a in args)})"


def render_tests(package: str, mid: str, visible: list[list[Any]]) -> str:
    """``tests/test_<module>.py``: one plain-assert test per visible case (pytest-compatible)."""
    mine = [c for c in visible if c[1] == mid]
    names = sorted({c[2] for c in mine})
    lines = [f'"""Tests of {package}.{mid}."""', "", f"from {package}.{mid} import {', '.join(names)}", ""]
    for cid, _, fn, args, (_, expected) in mine:
        call = _call(fn, args)
        lines += [
            "",
            f"def test_{fn}_{cid.rsplit('#', 1)[1]}():",
            f"    result = {call}",
            f'    assert result == {expected!r}, f"{call.replace("{", "{{").replace("}", "}}")} returned {{result!r}}"',
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def render_files(data: dict[str, Any]) -> dict[str, str]:
    """The workspace of a world: ``<package>/…py``, ``tests/test_<module>.py`` and a README."""
    pkg = data["package"]
    files = {f"{pkg}/{mid}.py": src for mid, src in data["sources"].items()}
    files[f"{pkg}/__init__.py"] = f'"""{pkg}: small utilities ({", ".join(data["order"])})."""\n'
    for mid in data["order"]:
        if any(c[1] == mid for c in data["visible"]):
            files[f"tests/test_{mid}.py"] = render_tests(pkg, mid, data["visible"])
    files["README.md"] = (
        f"# {pkg}\n\nSmall utilities in plain Python (standard library only).\n\n"
        f"Modules: {', '.join(f'`{pkg}.{m}`' for m in data['order'])}.\n\n"
        "Tests are plain `test_*` functions with `assert` in `tests/` (pytest-compatible).\n"
    )
    return dict(sorted(files.items()))


class CodeAgentWorld:
    """A generated package (its data, and the workspace files rendered from it)."""

    def __init__(self, data: dict[str, Any]):
        self.data = data
        self.package: str = data["package"]
        self.files = render_files(data)

    def module_path(self, mid: str) -> str:
        """The workspace path of a module."""
        return f"{self.package}/{mid}.py"

    def to_json(self) -> dict[str, Any]:
        """The world's data (the files are derived from it)."""
        return self.data
