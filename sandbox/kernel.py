"""The stateful Python kernel of the local backend: one warm interpreter in its own sandbox.

Like a Jupyter kernel: variables, imports and function definitions live between calls, and the
value of a trailing expression is echoed as the REPL does. One call is one request frame to
:mod:`.inside` in ``kernel`` mode and one JSON frame back (:mod:`.wire`), so a call costs well
under a millisecond of protocol on top of the code itself (``toolgym bench sandbox``).

Isolation is the local backend's (see :mod:`.local`): the kernel runs in a bwrap sandbox of its
own, as the session's slot uid, with the session's workspace bound at ``/workspace`` (its
``/tmp`` is its own, not the one ``Session.exec`` programs see). Limits per call:

* CPU: a budget of ``Limits.cpu_budget_s`` seconds of the cell's own CPU time (user + system,
  all threads), measured inside the sandbox by an ``ITIMER_PROF`` timer (:func:`.inside.run_cell`).
  Past it the cell is interrupted (its traceback says where) and the call reports ``timeout``
  with ``state_lost=True``; the kernel is replaced, so the next call starts fresh (why state is
  not kept: :meth:`LocalKernel._outcome`). Because the budget counts CPU the cell used, not
  time that passed, the same cell gets the same outcome on an idle and on a loaded host. Code
  that evades the interrupt (swallows it, ignores SIGPROF, loops in C) meets an RLIMIT_CPU soft
  limit moved to 1–2 s past the budget before each call (SIGXCPU: ``timeout`` too). Child
  processes a cell starts are not counted in its budget; each inherits that RLIMIT_CPU, and the
  wall clock ends them all;
* wall clock and output caps: enforced by the host; passing one kills the kernel's sandbox, the
  call reports the status with ``state_lost=True``, and the next call starts a fresh kernel.
  Where the CPU budget should decide, the wall clock (``Limits.wall_s``) is a generous backstop
  for cells that sleep or block (the code family sets it to several times the budget);
* memory: RLIMIT_AS for the whole kernel. A ``MemoryError`` is reported as status ``oom`` but
  the kernel survives with its state (Python recovers from failed allocations);
* processes, files, file size, core: as for ``exec``, set once when the kernel starts.

Not isolated *between calls of one kernel*: code can leave threads or child processes running;
their later output shows up in a later call's result (Jupyter shows it similarly). Everything
dies with the kernel's sandbox on restart or close. Such code can also end the kernel while it
is idle (a spinning thread passes the RLIMIT_CPU of the call that started it); the next call
then runs in a fresh interpreter and reports ``state_lost=True`` with a ``detail`` saying so.

**Forking kernels** (``forks=True``; synthesis's warm sandbox, :mod:`toolgym.synth.code.tools`):
the interpreter is a forked child of a zygote in the same sandbox (``inside.fork_server``), and
:meth:`LocalKernel.restart` asks for a fresh child instead of killing the sandbox: about a
millisecond (one fork, a ``/proc`` scan, ``/tmp`` emptied) instead of a new sandbox's ~40 ms of
namespaces and interpreter start-up. The fresh child has none of the previous one's variables,
imports, working directory, environment or processes, and ``/tmp`` and ``/dev/shm`` are empty;
what it *shares* with the previous one is the sandbox itself (namespaces, SysV IPC, the slot uid,
the workspace, which the caller resets) and the zygote, which the previous child's code could
have tampered with (same uid). So a renewed interpreter is a fresh interpreter for **trusted**
code (the generator's own reference and gate agents), not an isolation boundary against hostile
code: a policy's episode gets a sandbox of its own.
"""

from __future__ import annotations

import signal
import time

from toolgym.errors import SandboxError

from .base import BASE_ENV, WORKSPACE, ExecResult, ExecStatus, Limits, PythonKernel, sandbox_error
from .local import LocalSession
from .proc import SandboxProcess
from .wire import KernelSetup, decode_response, encode, encode_setup, frame, rlimits


class LocalKernel(PythonKernel):
    """A stateful Python kernel inside a local sandbox.

    Args:
        session: The session whose workspace and slot uid the kernel shares.
        limits: Limits per call (``wall_s``, ``cpu_s``, ``output_bytes``) and for the kernel
            process as a whole (memory, processes, files).
    """

    def __init__(self, session: LocalSession, limits: Limits, forks: bool = False) -> None:
        self.session = session
        self.limits = limits
        self.forks = forks
        self._proc: SandboxProcess | None = None
        self._closed = False
        self._used = False  # a cell ran since the interpreter started (or was renewed)

    @property
    def launched_alive(self) -> bool:
        """A sandbox process exists and has not died (it may still be starting)."""
        return self._proc is not None and self._proc.alive

    def launch(self) -> None:
        """Launch the kernel's sandbox now without waiting for it; the first ``run`` waits.

        Raises:
            SandboxError: If bwrap cannot be executed.
        """
        if self._closed or self.session.closed:
            raise SandboxError("The Python kernel is closed; start a new one.")
        if self._proc is None:
            self._proc = self._start(wait=False)

    def _start(self, wait: bool = True) -> SandboxProcess:
        limits = self.limits
        # The CPU limit moves per call; the kernel as a whole has none.
        triples = rlimits(limits, nproc=self.session.nproc_limit(limits), cpu=False)
        setup: KernelSetup = {"rlimits": triples, "cwd": WORKSPACE, "env": dict(BASE_ENV)}
        if self.forks:
            setup["forks"] = True
        self._used = False
        return self.session.spawn("kernel", encode_setup(setup), wait=wait)

    def run(self, code: str, *, timeout: float | None = None) -> ExecResult:
        """Execute one cell (see :class:`~toolgym.sandbox.base.PythonKernel`).

        Raises:
            SandboxError: If the kernel or its session is closed.
        """
        if self._closed or self.session.closed:
            raise SandboxError("The Python kernel is closed; start a new one.")
        started = time.monotonic()
        fresh = self._proc is None or not self._proc.alive
        died = self._died_between_calls() if fresh else ""
        try:
            if fresh:
                self._drop()
                self._proc = self._start()
            elif not self._proc.ready:  # launched ahead (``launch``): finish starting it
                self._proc.wait_ready()
        except SandboxError as exc:
            self._proc = None  # wait_ready killed it
            return sandbox_error(str(exc), started)
        assert self._proc is not None
        limits = self.limits
        wall = timeout if timeout is not None else limits.wall_s
        budget = limits.cpu_budget_s
        request = frame(encode({"code": code, "cpu_s": budget}))
        self._used = True
        ex = self._proc.exchange(request, deadline=started + wall, cap=limits.output_bytes)
        response = decode_response(ex.payload)
        status, detail, lost = self._outcome(ex.reason, response, wall)
        if lost:
            self._drop()
        cpu = response.get("cpu_ms") if response else None
        return ExecResult(
            status=status,
            exit_code=None if lost else (0 if response and response.get("error") is None else 1),
            signal=None,
            stdout=bytes(ex.stdout.data),
            stderr=bytes(ex.stderr.data),
            stdout_truncated=ex.stdout.truncated,
            stderr_truncated=ex.stderr.truncated,
            wall_ms=(time.monotonic() - started) * 1000.0,
            cpu_ms=float(cpu) if isinstance(cpu, int | float) else None,
            state_lost=lost or bool(died),
            detail=detail or died,
        )

    def _died_between_calls(self) -> str:
        """The sentence for a kernel that ran cells and then died while idle; "" if it did not.

        Code a cell left running (a thread, a child process) can end the kernel between calls,
        e.g. a spinning thread that uses up the RLIMIT_CPU set for the last call (SIGXCPU). The
        next call runs in a fresh interpreter, and its result must say the variables are gone.
        """
        if self._proc is None or not self._used:
            return ""
        sig = _signal_name(self._proc.wait_exit(0.5))
        return (
            f"the kernel died between calls ({sig or 'no signal'}; code left running, such as a thread, "
            "can end it), so this call ran in a fresh one; state was lost"
        )

    def _outcome(self, reason: str, response: dict[str, object] | None, wall: float) -> tuple[ExecStatus, str, bool]:
        """A finished call's status, its sentence, and whether the kernel's state is lost.

        A cell past its CPU budget is a ``timeout`` whose state is lost, as when a limit kills
        the kernel: the interrupt lands at whatever bytecode the cell had reached, which depends
        on the machine's speed, so keeping the half-updated namespace (a half-imported module, a
        half-built frame) would make the following calls machine-dependent too.
        """
        limits = self.limits
        budget = f"{limits.cpu_budget_s:g}"
        if reason == "timeout":
            return ExecStatus.TIMEOUT, f"wall-clock limit of {wall:g} s reached; the kernel was killed", True
        if reason == "output_limit":
            return ExecStatus.OUTPUT_LIMIT, f"output passed {limits.output_bytes} bytes; the kernel was killed", True
        if reason != "frame" or response is None:
            assert self._proc is not None
            sig = _signal_name(self._proc.wait_exit(0.5))
            if sig == "SIGXCPU":
                detail = f"the call used more than {budget} s of CPU time (stopped by SIGXCPU); state was lost"
                return ExecStatus.TIMEOUT, detail, True
            return ExecStatus.KILLED, f"the kernel died during the call ({sig or 'no signal'}); state was lost", True
        if response.get("cpu_out") is True:
            return ExecStatus.TIMEOUT, f"the call used more than {budget} s of CPU time; the kernel was stopped", True
        if response.get("error") == "MemoryError":
            return ExecStatus.OOM, "memory limit reached (the kernel kept its state)", False
        return ExecStatus.OK, "", False

    def _drop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc = None

    def restart(self) -> None:
        """Drop all state; the next call starts a fresh interpreter.

        A forking kernel whose sandbox is up gets its fresh interpreter forked in the same
        sandbox now (see the module docstring), unless it ran no cell since it started (it is
        already fresh). Otherwise, or when the renewal fails, the sandbox is
        killed and the next call starts a new one.
        """
        proc = self._proc
        if not self.forks or proc is None or not proc.alive:
            self._drop()
            return
        if not self._used:
            return
        if proc.ready:
            ex = proc.exchange(frame(encode({"renew": True})), deadline=time.monotonic() + 10.0, cap=1 << 16)
            if ex.reason == "frame" and decode_response(ex.payload) == {"ready": True}:
                self._used = False
                return
        self._drop()

    def close(self) -> None:
        """Stop the kernel. Idempotent."""
        self._closed = True
        self._drop()


def _signal_name(bwrap_exit: int | None) -> str | None:
    """The signal behind a bwrap exit code (bwrap exits with 128 + signal)."""
    if bwrap_exit is None or bwrap_exit <= 128:
        return None
    try:
        return signal.Signals(bwrap_exit - 128).name
    except ValueError:
        return None
