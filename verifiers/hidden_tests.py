"""Hidden tests: judge an agent's repair of a package in a sandbox of its own (the ``codeagent`` family).

The verifier spec holds the hidden cases, ``[id, module, function, args, expected]`` (expected
is ``["ok", value]`` or ``["raise", "ExceptionType"]``), which of them fail on the shipped buggy
package (``fail_to_pass``; every other one is pass-to-pass), the package name and the digest of
the buggy package. The cases live in the spec (a dataset row), never in a workspace.

How an episode is judged (DESIGN.md "Sandboxes"; :mod:`toolgym.sandbox.judge` for the hygiene):

1. The episode's state hands over its files and **closes the agent's sandbox first**
   (``state.judge_files()``), which kills every process the agent left (a daemon included).
2. Only the package's own sources are judged: ``<package>/**.py``, less any ``conftest.py``.
   Tests, ``sitecustomize.py``, ``*.pth``, config files and anything else the agent wrote are
   not copied, so edits to the visible tests or to a test runner's configuration change nothing.
3. A package byte-identical to the shipped buggy one scores 0 without a run: synthesis proved
   that its fail-to-pass cases fail (null, bluff and test-editing agents cost nothing to judge).
4. Otherwise a **fresh sandbox** holding that copy runs :data:`RUNNER` once in its fresh
   interpreter (``python -I -S``: no site, no user paths, no environment), with the cases' calls
   — **without the expected outcomes**. It prints each call's outcome; the host compares them with the
   expected ones. The expected values never enter any sandbox, so agent code that monkeypatches
   the runner, forges its output or reads ``/proc`` learns nothing it could pass with: to print
   the right outcomes it has to compute them. No file is read back: the verdict comes from the
   run's standard output and the spec.

**At synthesis only**, a family may judge its *own* gate agents' repairs without a sandbox: inside
:func:`trusted_judge` (entered by ``CodeAgent.gate_scope`` around one task's gate episodes) the
verifier first asks the given judge, which runs the package in-process when it can vouch for the
result and returns None otherwise (then the sandbox judges as above). Outside such a scope — every
policy's episode, and the synthesis reference's — nothing changes: one fresh sandbox per verification.

A run that times out, breaks a limit or prints no outcome line scores 0. The score is binary:
1 when every hidden case (fail-to-pass and pass-to-pass) matches, else 0; the reason counts the
failures of each kind but never names a hidden input.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from toolgym.sandbox import Backend, ExecStatus, Limits, get_backend
from toolgym.verifiers.verdict import Verdict

MARKER = "@@toolgym-hidden-outcomes "
JUDGE_TIMEOUT_S = 20.0
_BACKENDS: dict[int, Backend] = {}
#: ``judge(files, spec) -> outcomes | None``: a synthesis-time judge of trusted repairs (see :func:`trusted_judge`).
TrustedJudge = Callable[[Mapping[str, str], Mapping[str, Any]], "dict[str, Any] | None"]
_TRUSTED: ContextVar[TrustedJudge | None] = ContextVar("hidden_tests_trusted_judge", default=None)

#: Runs in the judge sandbox's fresh interpreter: calls each case, prints one marker line of outcomes.
#: ``CALLS`` is the JSON of :func:`hidden_calls` (no expected outcome is in it).
RUNNER = r"""
import importlib, json, os, sys
cases = json.loads(CALLS)
sys.path.insert(0, os.getcwd())
out = {}
for cid, module, function, args in cases:
    try:
        value = getattr(importlib.import_module(module), function)(*args)
        try:
            value = json.loads(json.dumps(value))
        except (TypeError, ValueError):
            value = repr(value)
        out[cid] = ["ok", value]
    except BaseException as exc:  # SystemExit from package code is an outcome too
        out[cid] = ["raise", type(exc).__name__]
sys.stdout.flush()
sys.stdout.write("\n" + MARKER + json.dumps(out) + "\n")
sys.stdout.flush()
""".replace("MARKER", repr(MARKER))


def runner_code(calls: list[list[Any]]) -> str:
    """The judge's program for ``calls`` (``[id, "package.module", function, args]`` rows)."""
    return RUNNER.replace("CALLS", repr(json.dumps(calls)), 1)


def backend() -> Backend:
    """This process's local sandbox backend for judging (a forked child builds its own)."""
    pid = os.getpid()
    if pid not in _BACKENDS:
        _BACKENDS.clear()
        # One spare sandbox launched ahead, its interpreter starting: a judge run finds a fresh,
        # never-used sandbox (nothing shared with any other run) already up, so the ~40 ms of
        # namespace set-up overlaps the episode before instead of adding to this one.
        _BACKENDS[pid] = get_backend("local", spare_kernels=1)
    return _BACKENDS[pid]


def judged_files(files: Mapping[str, str], package: str) -> dict[str, str]:
    """The files a judge copies: the package's ``.py`` sources, less any ``conftest.py``."""
    return {
        p: t
        for p, t in sorted(files.items())
        if p.startswith(package + "/") and p.endswith(".py") and os.path.basename(p) != "conftest.py"
    }


def package_digest(files: Mapping[str, str], package: str) -> str:
    """The sha256 of the judged files (paths and contents), hex."""
    h = hashlib.sha256()
    for path, text in judged_files(files, package).items():
        h.update(json.dumps([path, text]).encode())
    return h.hexdigest()


def hidden_calls(spec: Mapping[str, Any]) -> list[list[Any]]:
    """What the judge's runner receives: ``[id, "package.module", function, args]`` per case, no outcome."""
    return [[cid, f"{spec['package']}.{module}", fn, args] for cid, module, fn, args, _ in spec["cases"]]


def run_hidden(
    files: Mapping[str, str], spec: Mapping[str, Any], backend_: Backend | None = None
) -> tuple[dict[str, Any] | None, str]:
    """Run the hidden calls on ``files`` in a fresh sandbox.

    Returns:
        (case id → outcome, "") or (None, why there are none).
    """
    pkg = spec["package"]
    calls = hidden_calls(spec)
    timeout = float(spec.get("timeout_s", JUDGE_TIMEOUT_S))
    with (backend_ or backend()).open(judged_files(files, pkg), Limits(wall_s=timeout)) as judge:
        result = judge.python().run(runner_code(calls), timeout=timeout)  # the spare's interpreter, used once
    if result.status is not ExecStatus.OK:
        return None, f"the hidden tests did not finish ({result.status.value}: {result.detail})"
    lines = [ln for ln in result.stdout.decode("utf-8", "replace").split("\n") if ln.startswith(MARKER)]
    if not lines:
        return None, "the hidden tests printed no outcomes (the package's code ended the run early)"
    try:
        outcomes = json.loads(lines[-1][len(MARKER) :])
    except ValueError:
        return None, "the hidden tests' outcome line is not JSON"
    return (outcomes, "") if isinstance(outcomes, dict) else (None, "the hidden tests' outcomes are not an object")


@contextmanager
def trusted_judge(judge: TrustedJudge) -> Iterator[None]:
    """Let ``judge`` score the verifications inside the scope before any sandbox does (synthesis gates only).

    ``judge(files, spec)`` returns the outcomes by case id, or None to leave the verdict to the
    judge sandbox. The caller vouches that every episode judged inside runs code it wrote itself
    (the family's gate agents): what an untrusted policy wrote must never be judged this way.
    """
    token = _TRUSTED.set(judge)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def same_outcome(got: Any, expected: Any) -> bool:
    """Whether an outcome (JSON: ``["ok", value]`` or ``["raise", name]``) is the expected one.

    Types must match, not only values: Python's ``True == 1 == 1.0`` would accept a function that
    returns ``int(...)`` where its docstring promises a bool (a newcomer's report, issue 14).
    Floats match within a relative 1e-9 (and 1e-12 absolute), so an algebraically equal repair that
    rounds differently in the last bits is not refused.
    """
    if type(got) is not type(expected):
        return False
    if isinstance(got, float):
        return math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12) or got == expected
    if isinstance(got, list):
        return len(got) == len(expected) and all(same_outcome(a, b) for a, b in zip(got, expected, strict=True))
    if isinstance(got, dict):
        return got.keys() == expected.keys() and all(same_outcome(got[k], expected[k]) for k in got)
    return bool(got == expected)


def verify_hidden_tests(spec: dict[str, Any], answer: Any, state: Any) -> Verdict:
    """Score a repair: every hidden case must give its expected outcome (see the module docstring).

    Args:
        spec: ``{"kind": "hidden_tests", "package", "cases", "fail_to_pass", "buggy"[, "timeout_s"]}``.
        answer: The submitted summary (a string; anything else scores 0).
        state: The episode's context; ``state.judge_files()`` closes its sandbox and returns its files.
    """
    if not isinstance(answer, str):
        return Verdict.fail(f"the answer must be a one-line text summary, not {type(answer).__name__}")
    files = state.judge_files()
    if package_digest(files, spec["package"]) == spec["buggy"]:
        return Verdict.fail("the package is unchanged from the reported state: the fail-to-pass tests fail")
    trusted = _TRUSTED.get()
    outcomes = trusted(files, spec) if trusted is not None else None
    problem = ""
    if outcomes is None:
        outcomes, problem = run_hidden(files, spec)
    if outcomes is None:
        return Verdict.fail(problem)
    f2p = set(spec["fail_to_pass"])
    failed = [c[0] for c in spec["cases"] if not same_outcome(outcomes.get(c[0]), c[4])]
    if not failed:
        return Verdict.ok(f"all {len(spec['cases'])} hidden tests pass")
    n_f2p = sum(1 for c in failed if c in f2p)
    return Verdict.fail(
        f"{len(failed)} of {len(spec['cases'])} hidden tests fail "
        f"({n_f2p} of {len(f2p)} fail-to-pass, {len(failed) - n_f2p} pass-to-pass)"
    )


__all__ = [
    "MARKER",
    "same_outcome",
    "RUNNER",
    "hidden_calls",
    "runner_code",
    "trusted_judge",
    "judged_files",
    "package_digest",
    "run_hidden",
    "verify_hidden_tests",
]
