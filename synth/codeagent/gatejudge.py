"""The synthesis-time judge of the gate agents' repairs: in-process, for the generator's own code.

**Why.** Profiling one synthesis worker (``toolgym bench synth --family codeagent``, 10 worlds,
40 tasks, a loaded machine) put ~60% of the wall time in the judge sandbox: ~4 fresh sandboxes per
task (the reference's, and one each for the ``random_edits``, ``delete_function`` and
``constant`` gate agents), each a bubblewrap start, an interpreter start and a teardown, so most
of the CPU was system time and the workers waited on process creation. The gate agents are the
generator's own programs (mutations of the template code, a deleted function, an ``if`` table of
constants) — the same kind of trusted code that synthesis already runs in-process to validate
each candidate bug (:func:`.package.run_cases`) and to compute every expected outcome.

**Decision.** Inside :meth:`CodeAgent.gate_scope <toolgym.synth.codeagent.family.CodeAgent.gate_scope>`
(one task's gate episodes, never a policy's and never the reference's), the hidden-tests verifier
asks :func:`judge_in_process` first (:func:`toolgym.verifiers.hidden_tests.trusted_judge`). It
vouches for a result only when the in-process run is the sandbox run's twin:

* the judged files are exactly ``<package>/__init__.py`` (a docstring and nothing else) and
  modules of the template library, each of which the cases' modules and their dependencies need;
* a module that fails to execute (a gate agent deleted a function another module imports) has a
  case expecting a value: that case fails in either judge, so the verdict (0) is the sandbox's.
  Its cases are reported as ``["raise", "ImportError"]`` (the sandbox may name another exception
  type, e.g. ``NameError``: only the failure counts of the verdict's reason can differ, never its
  score); a failing module whose every case expects an exception goes to the sandbox;
* the run is in the main thread (the ``SIGALRM`` backstop of :func:`.package.run_cases` works
  only there) and no case timed out.

Anything else returns None and the judge sandbox decides, exactly as for a policy. The reference
episode stays outside the scope, so every shipped task is still judged once through a real
sandbox, which proves end to end that the sandbox reproduces every expected outcome on the
repaired package. The random gate's episode is inside the scope too: its edits come from the
generator's random agent (strings drawn from the task's own files and observations).
"""

from __future__ import annotations

import ast
import threading
from collections.abc import Mapping
from typing import Any

from toolgym.synth.codeagent.composites import ALL
from toolgym.synth.codeagent.package import load_modules, module_order, run_cases
from toolgym.verifiers.hidden_tests import judged_files


def _docstring_only(source: str) -> bool:
    """Whether a module is a docstring and nothing else (an ``__init__.py`` that runs no code)."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return False
    return not body or (
        len(body) == 1
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    )


def trusted_sources(files: Mapping[str, str], spec: Mapping[str, Any]) -> tuple[dict[str, str], list[str]] | None:
    """The module sources and their load order when the in-process run is the sandbox's twin, else None.

    Args:
        files: The episode's workspace (path → text).
        spec: The hidden-tests verifier spec (``package`` and ``cases`` used).

    Returns:
        (module id → source, module ids with dependencies first), or None.
    """
    pkg = spec["package"]
    judged = judged_files(files, pkg)
    init = judged.pop(f"{pkg}/__init__.py", None)
    if init is None or not _docstring_only(init):
        return None
    sources: dict[str, str] = {}
    for path, text in judged.items():
        mid = path[len(pkg) + 1 : -3]
        if mid not in ALL:  # a new module, or one in a subfolder: the sandbox judges
            return None
        sources[mid] = text
    needed = module_order(sorted({c[1] for c in spec["cases"] if c[1] in ALL}))
    if any(c[1] not in ALL for c in spec["cases"]) or set(needed) != set(sources):
        return None
    return sources, needed


def judge_in_process(files: Mapping[str, str], spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The hidden cases' outcomes on ``files``, run in this process, or None (see the module docstring).

    Args:
        files: The episode's workspace (path → text).
        spec: The hidden-tests verifier spec.

    Returns:
        Case id → ``["ok", value]`` or ``["raise", "ExceptionType"]``, or None when only the judge
        sandbox can say.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    found = trusted_sources(files, spec)
    if found is None:
        return None
    sources, order = found
    broken = set(order) - set(load_modules(sources, order))
    if any(all(c[4][0] != "ok" for c in spec["cases"] if c[1] == mid) for mid in broken):
        return None
    outcomes = run_cases(sources, order, [c[:4] for c in spec["cases"]])
    if any(o == ["raise", "TimeoutError"] for o in outcomes.values()):
        return None
    return {cid: ["raise", "ImportError"] if mid in broken else outcomes[cid] for cid, mid, *_ in spec["cases"]}


__all__ = ["judge_in_process", "trusted_sources"]
