"""Verifier hygiene: judging code runs in a sandbox of its own, after the agent's is gone.

Reward hacking through the sandbox is real: terminal-bench had to fix a daemon, double-forked by
agent code, that rewrote the reward file after the episode (sandbox.md §5). So code that judges
an agent's work (hidden tests, a checker script) never shares a sandbox, a process or a writable
path with the agent:

1. :func:`judge_session` copies the agent's workspace out (:meth:`Session.snapshot`: regular files
   only, links never followed) and **closes** the agent's session, which kills every process of
   it;
2. :func:`run_judge` opens a **fresh session** holding that copy and runs the judging code there;
3. the verdict is read by the host from **that run's standard output**, never from a file: the
   judge calls ``emit_verdict(score, passed=None, reason="", **extra)``, which prints one line
   ``<nonce>{json}``. The nonce is drawn by the host per run (``secrets``: it is a secret, not a
   seeded draw), reaches the judge on its standard input, which is then closed, and the judge
   process makes itself non-dumpable, so other processes of the same uid (agent code the judge
   starts) can read neither its memory nor its fds. Lines without the nonce are ignored; a run
   with no verdict, two verdicts, a non-zero exit or any limit hit scores 0.

What judges must do themselves: run agent code **in a subprocess** (``subprocess.run([...],
capture_output=True, timeout=...)``), never by importing it into the judge process (in-process
code can read the nonce from memory), and keep agent output off their own stdout.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .base import Backend, ExecResult, ExecStatus, Limits, Session

_WRAPPER = r"""
import json, os, sys
_nonce = sys.stdin.readline().strip()
try:
    import ctypes
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0
except Exception:
    pass
_null = os.open(os.devnull, os.O_RDONLY)
os.dup2(_null, 0)
os.close(_null)
sys.stdin = open(os.devnull)


def emit_verdict(score, passed=None, reason="", **extra):
    payload = dict(extra, score=float(score), reason=str(reason))
    payload["passed"] = bool(passed) if passed is not None else payload["score"] >= 1.0
    sys.stdout.flush()
    sys.stdout.write("\n" + _nonce + json.dumps(payload) + "\n")
    sys.stdout.flush()


_code = sys.argv.pop(1)
exec(compile(_code, "<judge>", "exec"), {"__name__": "__main__", "emit_verdict": emit_verdict})
"""


@dataclass(frozen=True)
class JudgeRun:
    """The outcome of a judging run.

    Attributes:
        verdict: The payload the judge emitted (``score``, ``passed``, ``reason`` and any extra
            keys), or ``None`` when the run produced no valid verdict.
        result: The judging run itself (its stdout still holds the verdict line).
        problem: Why ``verdict`` is ``None`` (empty otherwise).
    """

    verdict: dict[str, Any] | None
    result: ExecResult
    problem: str = ""

    @property
    def score(self) -> float:
        """The verdict's score in [0, 1]; 0 without a valid verdict."""
        return float(self.verdict["score"]) if self.verdict else 0.0

    @property
    def passed(self) -> bool:
        """The verdict's ``passed``; False without a valid verdict."""
        return bool(self.verdict and self.verdict["passed"])

    @property
    def reason(self) -> str:
        """The verdict's reason, or the problem that voided it."""
        return str(self.verdict.get("reason", "")) if self.verdict else self.problem


def parse_verdict(stdout: bytes, nonce: str) -> tuple[dict[str, Any] | None, str]:
    """Find the single ``<nonce>{json}`` line in ``stdout``.

    Returns:
        ``(verdict, "")``, or ``(None, problem)`` when there is no line, more than one, or the
        payload is not a JSON object with a finite ``score`` in [0, 1] and a bool ``passed``.
    """
    marker = nonce.encode()
    lines = [ln[len(marker) :] for ln in stdout.split(b"\n") if ln.startswith(marker)]
    if not lines:
        return None, "the judge emitted no verdict"
    if len(lines) > 1:
        return None, f"the judge emitted {len(lines)} verdicts; exactly one is allowed"
    try:
        payload = json.loads(lines[0])
    except ValueError:
        return None, "the verdict is not valid JSON"
    if not isinstance(payload, dict):
        return None, "the verdict is not a JSON object"
    score = payload.get("score")
    if not isinstance(score, int | float) or not math.isfinite(score) or not 0 <= score <= 1:
        return None, f"the verdict's score {score!r} is not a number in [0, 1]"
    if not isinstance(payload.get("passed"), bool):
        return None, "the verdict's 'passed' is not a boolean"
    return payload, ""


def run_judge(
    backend: Backend,
    files: Mapping[str, bytes | str],
    judge_code: str,
    *,
    limits: Limits | None = None,
    timeout: float | None = None,
) -> JudgeRun:
    """Run ``judge_code`` in a fresh session holding ``files`` and read its verdict.

    Args:
        backend: Where to open the judging session.
        files: The workspace to judge (usually a snapshot of the agent's).
        judge_code: Python source; it calls ``emit_verdict(...)`` exactly once.
        limits: Limits of the judging session (defaults: sandbox.md §5).
        timeout: Wall-clock seconds for the judging run.

    Returns:
        The verdict (score 0 when the run produced no valid one).
    """
    nonce = secrets.token_hex(16)
    with backend.open(files, limits) as judge:
        argv = [judge.python_path, "-I", "-c", _WRAPPER, judge_code]
        result = judge.exec(argv, stdin=(nonce + "\n").encode(), timeout=timeout)
    if result.status is not ExecStatus.OK or result.exit_code != 0:
        problem = result.detail or f"the judge exited with code {result.exit_code}"
        return JudgeRun(None, result, f"judging run failed ({result.status.value}): {problem}")
    verdict, problem = parse_verdict(result.stdout, nonce)
    return JudgeRun(verdict, result, problem)


def judge_session(
    backend: Backend,
    session: Session,
    judge_code: str,
    *,
    limits: Limits | None = None,
    timeout: float | None = None,
    max_bytes: int | None = None,
) -> JudgeRun:
    """Snapshot the agent's workspace, close the agent's session, then judge the copy.

    Args:
        backend: Where to open the judging session (usually the agent's backend).
        session: The agent's session; it is closed by this call.
        judge_code: Python source calling ``emit_verdict(...)`` once.
        limits: Limits of the judging session.
        timeout: Wall-clock seconds for the judging run.
        max_bytes: Most workspace bytes to copy (default: the session's workspace limit).

    Returns:
        The verdict.
    """
    try:
        files = session.snapshot(max_bytes)
    finally:
        session.close()
    return run_judge(backend, files, judge_code, limits=limits, timeout=timeout)
