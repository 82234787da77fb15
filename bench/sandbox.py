"""``toolgym bench sandbox``: every way of running a snippet, measured side by side in one run.

Rows (all run the same ``python -I -S -c 'print(1)'`` unless noted):

* **plain subprocess**: ``subprocess.run`` with no sandbox at all, the floor;
* **local exec**: ``Session.exec`` in an open local session: a fresh interpreter process in
  the session's bubblewrap sandbox, with rlimits, output caps and the kill-all-leftovers step;
* **local one-shot**: open a session, run the call, close it: new namespaces, a new workspace;
  what a single verifier run costs;
* **local kernel**: one call into the warm stateful Python kernel (``x + 1``);
* **docker exec** and **docker session** (open + close, i.e. container start per episode),
  when an engine answers.

The plain, local-exec and kernel rows are interleaved call by call so that background load hits
them alike. Targets (issue 3): local exec <= 1.5x plain; kernel call <= 5 ms median.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from toolgym.sandbox.base import Limits

SNIPPET = "print(1)"


@dataclass(frozen=True)
class BenchRow:
    """One measured path.

    Attributes:
        name: What was timed.
        median_ms: Median wall time of one call.
        p90_ms: 90th percentile.
        n: Number of timed calls.
        note: What the row includes.
    """

    name: str
    median_ms: float
    p90_ms: float
    n: int
    note: str


def _row(name: str, samples: list[float], note: str) -> BenchRow:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return BenchRow(name, statistics.median(ordered), p90, len(ordered), note)


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def run_sandbox_bench(
    repeats: int = 40, docker: bool | None = None, python: str = "/usr/bin/python3"
) -> list[BenchRow]:
    """Measure every sandbox path; the first row is the plain-subprocess baseline.

    Args:
        repeats: Timed calls per fast row (one-shot and docker rows use fewer).
        docker: Include docker rows; ``None`` includes them when an engine answers.
        python: Interpreter for the plain and local rows.

    Returns:
        The rows, baseline first.

    Raises:
        SandboxError: If the local backend cannot run here.
    """
    from toolgym.sandbox.local import LocalBackend, LocalConfig

    argv = [python, "-I", "-S", "-c", SNIPPET]
    backend = LocalBackend(LocalConfig(python=python))
    plain: list[float] = []
    local: list[float] = []
    kernel_ms: list[float] = []
    with backend.open(limits=Limits()) as session:
        kernel = session.python()
        kernel.run("x = 41")
        session.exec(argv)  # start the session's sandbox outside the timing
        for _ in range(repeats):
            plain.append(_timed(lambda: subprocess.run(argv, capture_output=True, check=True)))
            local.append(_timed(lambda: session.exec(argv)))
            kernel_ms.append(_timed(lambda: kernel.run("x + 1")))

    def one_shot() -> None:
        with backend.open() as s:
            s.exec(argv)

    shots = [_timed(one_shot) for _ in range(max(5, repeats // 4))]
    rows = [
        _row("plain subprocess", plain, "python -I -S -c, no sandbox"),
        _row("local exec", local, "fresh process in an open bwrap session"),
        _row("local one-shot", shots, "open session + exec + close (new namespaces)"),
        _row("local kernel", kernel_ms, "call into the warm stateful Python kernel"),
    ]
    rows += _docker_rows(repeats, docker)
    return rows


def _docker_rows(repeats: int, docker: bool | None) -> list[BenchRow]:
    from toolgym.sandbox.container import DockerBackend, docker_unavailable_reason

    if docker is False:
        return []
    reason = docker_unavailable_reason()
    if reason is not None:
        if docker:
            from toolgym.errors import SandboxError

            raise SandboxError(f"Docker rows requested but {reason}.")
        return [BenchRow("docker", float("nan"), float("nan"), 0, f"skipped: {reason}")]
    backend = DockerBackend()
    argv = [backend.config.python, "-I", "-S", "-c", SNIPPET]
    try:
        execs: list[float] = []
        with backend.open() as session:
            session.exec(argv)
            execs = [_timed(lambda: session.exec(argv)) for _ in range(max(5, repeats // 2))]

        def episode() -> None:
            with backend.open():
                pass

        starts = [_timed(episode) for _ in range(max(3, repeats // 8))]
    finally:
        backend.close()
    return [
        _row("docker exec", execs, "docker exec of the launcher in a running container"),
        _row("docker session", starts, "container + volume create, start, remove (per episode)"),
    ]


def format_bench(rows: list[BenchRow]) -> str:
    """The rows as a plain-text table with a ratio to the baseline, then the targets."""
    base = rows[0].median_ms
    lines = [f"{'path':<18} {'median ms':>10} {'p90 ms':>9} {'x plain':>8}  {'n':>4}  what"]
    for r in rows:
        ratio = f"{r.median_ms / base:.2f}" if r.n else "-"
        med = f"{r.median_ms:.2f}" if r.n else "-"
        p90 = f"{r.p90_ms:.2f}" if r.n else "-"
        lines.append(f"{r.name:<18} {med:>10} {p90:>9} {ratio:>8}  {r.n:>4}  {r.note}")
    lines.append(targets_line(rows))
    return "\n".join(lines)


def targets_line(rows: list[BenchRow]) -> str:
    """One line saying whether the issue-3 targets are met by these rows."""
    by = {r.name: r for r in rows}
    if "local exec" not in by or "local kernel" not in by:
        return "targets: not measured"
    ratio = by["local exec"].median_ms / rows[0].median_ms
    warm = by["local kernel"].median_ms
    return (
        f"targets: local exec <= 1.5x plain: {ratio:.2f}x ({'met' if ratio <= 1.5 else 'MISSED'}); "
        f"kernel call <= 5 ms: {warm:.2f} ms ({'met' if warm <= 5 else 'MISSED'})"
    )
