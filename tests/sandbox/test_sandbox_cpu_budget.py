"""A kernel cell's time limit is its own CPU time (measured in the sandbox), not time that passed.

So the same cell gets the same outcome on an idle and on a loaded host (issue 14: the code
family's rewards changed with load). The wall clock stays as a backstop for cells that sleep.
Every test here gives the wall clock a generous limit wherever the CPU budget is what is under
test, so a loaded host makes the tests slower, never flaky.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from toolgym.sandbox import ExecStatus, Limits, get_backend
from toolgym.sandbox.kernel import LocalKernel
from toolgym.sandbox.local import LocalBackend

GENEROUS_WALL_S = 600.0  # never reached by a CPU-bound cell unless the host is all but stopped


@pytest.fixture(scope="module")
def backend() -> LocalBackend:
    b = get_backend("local")
    assert isinstance(b, LocalBackend)
    return b


@pytest.fixture
def cpu_hogs() -> Iterator[int]:
    """Two busy processes outside the sandbox, pinned to one CPU; yields that CPU's number."""
    cpu = min(os.sched_getaffinity(0))
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        for hog in hogs:
            os.sched_setaffinity(hog.pid, {cpu})
        yield cpu
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def test_a_cpu_bound_cell_past_its_budget_is_a_timeout(backend: LocalBackend) -> None:
    with backend.open(limits=Limits(cpu_s=0.5, wall_s=GENEROUS_WALL_S)) as s:
        k = s.python()
        assert k.run("x = 1").ok
        r = k.run("while True:\n    x += 1")
        assert r.status is ExecStatus.TIMEOUT and r.state_lost, r
        assert r.detail.startswith("the call used more than 0.5 s of CPU time"), r
        assert b"CPUTimeExceeded" in r.stderr and r.cpu_ms is not None and r.cpu_ms >= 495, r
        assert b"NameError" in k.run("x").stderr  # the interrupted kernel was replaced
        # A cell that swallows the interrupt and goes on is stopped by the RLIMIT_CPU backstop.
        r = k.run("try:\n    while True:\n        x = 1\nexcept BaseException:\n    pass\nwhile True:\n    x = 2")
        assert r.status is ExecStatus.TIMEOUT and r.state_lost, r
        assert r.detail.startswith("the call used more than 0.5 s of CPU time (stopped by SIGXCPU)"), r
        assert k.run("2 + 2").stdout == b"4\n"


def test_a_cell_that_disarms_interrupt_and_backstop_is_still_over_budget(backend: LocalBackend) -> None:
    # With SIGPROF and SIGXCPU ignored, neither the interrupt nor RLIMIT_CPU stops the cell; it
    # ends by itself after 3x its budget of CPU, within the wall clock. It must still be a
    # timeout, or its outcome would depend on whether the wall clock (host load) came first.
    cell = (
        "import signal, time\n"
        "signal.signal(signal.SIGPROF, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGXCPU, signal.SIG_IGN)\n"
        "start = time.process_time()\n"
        "while time.process_time() - start < 1.5:\n"
        "    pass\n"
        "print('done')"
    )
    with backend.open(limits=Limits(cpu_s=0.5, wall_s=GENEROUS_WALL_S)) as s:
        k = s.python()
        assert k.run("x = 1").ok
        r = k.run(cell)
        assert r.status is ExecStatus.TIMEOUT and r.state_lost, r
        assert r.detail.startswith("the call used more than 0.5 s of CPU time"), r
        assert b"NameError" in k.run("x").stderr  # the over-budget kernel was replaced


def test_a_kernel_ended_between_calls_says_its_state_was_lost(backend: LocalBackend) -> None:
    # A thread left spinning uses up the RLIMIT_CPU set for the call that started it, and
    # SIGXCPU ends the idle kernel. The next call runs in a fresh one and must say so.
    spin = "import threading\ndef spin():\n    while True:\n        pass\n"
    spin += "threading.Thread(target=spin, daemon=True).start()"
    with backend.open(limits=Limits(cpu_s=0.5, wall_s=GENEROUS_WALL_S)) as s:
        k = s.python()
        assert k.run("x = 1").ok
        assert k.run(spin).ok
        assert isinstance(k, LocalKernel)
        assert k._proc is not None and k._proc.wait_exit(GENEROUS_WALL_S) is not None  # SIGXCPU ended it
        r = k.run("print('hello')")
        assert r.ok and r.stdout == b"hello\n", r
        assert r.state_lost and r.detail.startswith("the kernel died between calls (SIGXCPU"), r
        after = k.run("x")
        assert b"NameError" in after.stderr and not after.state_lost and after.detail == "", after


def test_a_sleeping_cell_still_ends_at_the_wall_clock_backstop(backend: LocalBackend) -> None:
    with backend.open(limits=Limits(cpu_s=5.0, wall_s=1.5)) as s:
        k = s.python()
        assert k.run("import time", timeout=GENEROUS_WALL_S).ok  # the kernel's start is not under test
        r = k.run("time.sleep(60)")
        assert r.status is ExecStatus.TIMEOUT and r.state_lost, r
        assert r.detail == "wall-clock limit of 1.5 s reached; the kernel was killed", r
        assert 1400 < r.wall_ms < 30_000, r


def test_a_cell_within_its_budget_succeeds_beside_cpu_hogs(backend: LocalBackend, cpu_hogs: int) -> None:
    # The cell shares one CPU with two busy processes, so ~0.6 s of CPU takes at least ~1.8 s of
    # wall time: a 1 s wall-clock limit would have cut it off; the 1 s CPU budget lets it finish.
    cell = (
        "import os, time\n"
        f"os.sched_setaffinity(0, {{{cpu_hogs}}})\n"
        "start = time.process_time()\n"
        "while time.process_time() - start < 0.6:\n"
        "    pass\n"
        "print('done')"
    )
    with backend.open(limits=Limits(cpu_s=1.0, wall_s=GENEROUS_WALL_S)) as s:
        k = s.python()
        assert k.run("pass").ok  # start the kernel first: the wall time below is the cell's alone
        r = k.run(cell)
    assert r.ok and r.stdout == b"done\n", r
    assert r.cpu_ms is not None and 600 <= r.cpu_ms < 1000, r
    assert r.wall_ms > 1000, f"the hogs did not slow the cell down, so this test shows nothing: {r}"
