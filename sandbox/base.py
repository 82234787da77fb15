"""The sandbox interface: limits, results, capabilities, and the Backend/Session contracts.

Every backend (``local`` bubblewrap, ``docker``) implements the same two classes:

* a :class:`Backend` opens sessions and says, through :meth:`Backend.capabilities`, which
  guarantees it can give on this machine (sandbox.md §5 "What each backend guarantees");
* a :class:`Session` owns one workspace and one sandbox for an episode: ``exec`` runs an argv
  (``exec_code`` a Python snippet) with stdin and a timeout, ``put``/``get``/``listdir`` move
  workspace files, ``close`` kills everything and removes the workspace (idempotent).

Design choices:

* :class:`Limits` is a pydantic model with ``extra="forbid"`` whose defaults are the defaults
  table of sandbox.md §5. A typo in a limit name is an error, never a silently ignored key.
* :class:`ExecResult` names *why* a call ended (:class:`ExecStatus`) instead of leaving callers to
  decode exit codes: ``ok`` means the program ran to completion inside its limits (its own exit
  code may still be non-zero); every other status means the sandbox stopped it.
* Paths given to ``put``/``get``/``listdir`` are relative to the workspace; :func:`clean_relpath`
  rejects absolute paths and ``..`` before any backend touches the disk.
"""

from __future__ import annotations

import enum
import posixpath
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from toolgym.errors import ConfigError, SandboxError

MiB = 1 << 20

#: Where the workspace appears inside every sandbox.
WORKSPACE = "/workspace"

#: The environment every sandboxed program starts with (sandbox.md §5 "environment"): nothing
#: from the caller, so no secret can leak in. Thread-count variables keep BLAS/OpenMP inside the
#: address-space limit (sandbox.md §3 "Other things learnt").
BASE_ENV: Mapping[str, str] = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "LANG": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MALLOC_ARENA_MAX": "2",
}


class Limits(BaseModel):
    """Resource limits of one sandboxed call; the defaults are sandbox.md §5.

    Attributes:
        wall_s: Wall-clock seconds per call, enforced by the host (kill, status ``timeout``).
            Where the CPU budget is what should decide (a Python kernel's cells: their outcome
            must not depend on how loaded the host is), set ``cpu_s`` and make this a generous
            backstop that only ends calls which sleep or block.
        cpu_s: CPU seconds per call (user + system). Programs (``exec``) get it as RLIMIT_CPU in
            whole seconds (:attr:`cpu_seconds`); a Python kernel's cell gets it exactly, measured
            inside the sandbox (:attr:`cpu_budget_s`, :mod:`.kernel`). ``None`` means
            ``wall_s + 1``, a backstop in case the host dies. At most a day, as ``wall_s``.
        memory_bytes: Address space (local, RLIMIT_AS) or memory+swap cgroup (docker).
        max_processes: Processes and threads per sandbox slot (RLIMIT_NPROC on the slot's own
            host uid locally, ``pids_limit`` in docker). Counts the sandbox's own helper
            processes (at most 3 per running sandbox).
        max_open_files: RLIMIT_NOFILE.
        max_file_bytes: Largest single file a program may write (RLIMIT_FSIZE).
        tmp_bytes: Size of the ``/tmp`` tmpfs (tmpfs pages are not counted by RLIMIT_AS).
        shm_bytes: Size of the ``/dev/shm`` tmpfs.
        workspace_bytes: Size of the workspace, where the backend can enforce it (a tmpfs when
            the local backend runs as root, a tmpfs volume in docker); see
            ``Capabilities.workspace_quota``.
        output_bytes: Bytes kept per output stream; past it the call is killed and marked
            truncated (status ``output_limit``).
        cpus: CPU share for the docker backend (``nano_cpus``); the local backend has no share
            and relies on the CPU rlimit plus the wall clock.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    wall_s: float = Field(default=10.0, gt=0, le=24 * 3600)
    cpu_s: float | None = Field(default=None, gt=0, le=24 * 3600)  # finite: it becomes an integer rlimit
    memory_bytes: int = Field(default=1024 * MiB, ge=32 * MiB)
    max_processes: int = Field(default=64, ge=4, le=4096)
    max_open_files: int = Field(default=256, ge=16)
    max_file_bytes: int = Field(default=64 * MiB, ge=0)
    tmp_bytes: int = Field(default=64 * MiB, ge=MiB)
    shm_bytes: int = Field(default=16 * MiB, ge=MiB)
    workspace_bytes: int = Field(default=256 * MiB, ge=MiB)
    output_bytes: int = Field(default=1 * MiB, ge=1024)
    cpus: float = Field(default=1.0, gt=0, le=256)

    @model_validator(mode="after")
    def _cpu_covers_wall(self) -> Limits:
        if self.cpu_s is not None and self.cpu_s < 0.1:
            raise ValueError("cpu_s must be at least 0.1 seconds (or None for wall_s + 1).")
        return self

    @property
    def cpu_seconds(self) -> int:
        """The CPU rlimit in whole seconds (rounded up, at least 1)."""
        value = self.cpu_s if self.cpu_s is not None else self.wall_s + 1.0
        return max(1, int(-(-value // 1)))

    @property
    def cpu_budget_s(self) -> float:
        """The CPU budget of one kernel cell in seconds: ``cpu_s``, or ``wall_s + 1`` when unset."""
        return self.cpu_s if self.cpu_s is not None else self.wall_s + 1.0


class ExecStatus(enum.StrEnum):
    """Why a call ended."""

    OK = "ok"  # ran to completion inside its limits; see exit_code
    TIMEOUT = "timeout"  # wall clock (host), CPU rlimit, or a kernel cell's CPU budget
    OUTPUT_LIMIT = "output_limit"  # stdout or stderr passed Limits.output_bytes
    OOM = "oom"  # memory limit: MemoryError / ENOMEM locally, OOM-kill in docker
    KILLED = "killed"  # ended by a signal that was not one of the above
    SANDBOX_ERROR = "sandbox_error"  # the sandbox itself failed; see detail


@dataclass(frozen=True, slots=True)
class ExecResult:
    """The outcome of one sandboxed call.

    Attributes:
        status: Why the call ended.
        exit_code: The program's exit code, or ``None`` when it was killed by a signal or never
            ran.
        signal: The signal that ended the program, when one did.
        stdout: Captured standard output, at most ``Limits.output_bytes``.
        stderr: Captured standard error, at most ``Limits.output_bytes``.
        stdout_truncated: Output was cut at the cap.
        stderr_truncated: Output was cut at the cap.
        wall_ms: Host-measured wall time of the call.
        cpu_ms: User+system CPU time of the program and its waited-for children, when known.
        state_lost: The sandbox was torn down after this call (limit hit, crash): processes,
            ``/tmp`` and, for a Python kernel, all variables are gone. The workspace survives.
            For a Python kernel also: it had died since the last call (code that call left
            running ended it), so this call ran in a fresh interpreter (``detail`` says so).
        detail: A sentence for ``sandbox_error`` and for limit kills.
    """

    status: ExecStatus
    exit_code: int | None
    signal: int | None
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    wall_ms: float = 0.0
    cpu_ms: float | None = None
    state_lost: bool = False
    detail: str = ""

    def __repr__(self) -> str:
        def short(b: bytes) -> str:
            return repr(b[:200]) + (f"...(+{len(b) - 200} bytes)" if len(b) > 200 else "")

        return (
            f"ExecResult(status={self.status.value!r}, exit_code={self.exit_code}, "
            f"signal={self.signal}, stdout={short(self.stdout)}, stderr={short(self.stderr)}, "
            f"truncated=({self.stdout_truncated}, {self.stderr_truncated}), "
            f"wall_ms={self.wall_ms:.1f}, cpu_ms={self.cpu_ms}, state_lost={self.state_lost}, "
            f"detail={self.detail!r})"
        )

    @property
    def ok(self) -> bool:
        """True when the call ran inside its limits and exited with code 0."""
        return self.status is ExecStatus.OK and self.exit_code == 0

    @property
    def text(self) -> str:
        """Standard output decoded as UTF-8 (invalid bytes replaced)."""
        return self.stdout.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Capabilities:
    """Which guarantees a backend gives on this machine (sandbox.md §5).

    Attributes:
        backend: The backend's name.
        network_off: No network at all (own empty network namespace / ``network_mode=none``).
        host_fs_hidden: Only explicitly bound host paths are visible; system dirs read-only.
        pid_isolation: Own pid namespace; everything is killed reliably at the end.
        memory: How memory is capped: ``"rlimit_as"`` (virtual, blunt) or ``"cgroup"`` (RSS).
        processes: How processes are capped: ``"rlimit_nproc_slot_uid"`` (per-slot host uid),
            ``"rlimit_nproc_shared_uid"`` (the caller's uid, not root), or ``"cgroup_pids"``.
        workspace_quota: The workspace has a size limit.
        stateful_python: ``Session.python()`` is available.
        custom_image: Sessions can run in an image other than the host userland.
        notes: Sentences about anything weaker than the table in sandbox.md §5.
    """

    backend: str
    network_off: bool
    host_fs_hidden: bool
    pid_isolation: bool
    memory: str
    processes: str
    workspace_quota: bool
    stateful_python: bool
    custom_image: bool
    notes: tuple[str, ...] = field(default=())


def clean_relpath(path: str) -> str:
    """Normalize a workspace-relative path, rejecting anything that could leave the workspace.

    Args:
        path: A path relative to the workspace, such as ``"data/x.csv"`` or ``"."``.

    Returns:
        The normalized path (``"."`` for the workspace root).

    Raises:
        ConfigError: If the path is absolute, contains ``..``, a NUL byte, or is empty.
    """
    if not path or "\x00" in path:
        raise ConfigError(f"Workspace path {path!r} is empty or has a NUL byte; use 'dir/file'.")
    if path.startswith("/"):
        if path == WORKSPACE or path.startswith(WORKSPACE + "/"):
            path = path[len(WORKSPACE) :].lstrip("/") or "."
        else:
            raise ConfigError(f"Workspace path {path!r} is absolute; give it relative to the workspace.")
    norm = posixpath.normpath(path)
    if norm == ".." or norm.startswith("../"):
        raise ConfigError(f"Workspace path {path!r} leaves the workspace; remove the '..'.")
    return norm


_MEMORY_MARKERS = (b"MemoryError", b"Cannot allocate memory", b"std::bad_alloc", b"out of memory")


def classify(
    reason: str, response: Mapping[str, object] | None, stderr_tail: bytes, limits: Limits
) -> tuple[ExecStatus, str]:
    """The status of a finished call, and a sentence for every status but ``ok``.

    Args:
        reason: How the host-side wait ended: ``frame`` (the in-sandbox helper reported),
            ``timeout``, ``output_limit`` or ``eof`` (the sandbox died first).
        response: The helper's report (``exit_code``, ``signal``, ``cpu_ms``, ``oom``).
        stderr_tail: The end of the program's standard error.
        limits: The call's limits.
    """
    if reason == "timeout":
        return ExecStatus.TIMEOUT, "wall-clock limit reached; the sandbox was killed"
    if reason == "output_limit":
        return ExecStatus.OUTPUT_LIMIT, (f"output passed {limits.output_bytes} bytes; the sandbox was killed")
    if reason != "frame" or response is None:
        return ExecStatus.KILLED, "the sandbox died during the call (was its helper killed?)"
    sig = response.get("signal")
    cpu_ms = response.get("cpu_ms")
    cpu_out = isinstance(cpu_ms, int | float) and cpu_ms >= 950 * limits.cpu_seconds
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_out):
        return ExecStatus.TIMEOUT, "CPU-time limit reached"
    if response.get("oom") is True:
        return ExecStatus.OOM, "memory limit reached (OOM-killed)"
    failed = response.get("exit_code") not in (0, None)
    if failed and any(m in stderr_tail for m in _MEMORY_MARKERS):
        return ExecStatus.OOM, "memory limit reached"
    if sig is not None:
        return ExecStatus.KILLED, f"killed by signal {sig}"
    return ExecStatus.OK, ""


def python_argv(code: str, python: str = "/usr/bin/python3") -> list[str]:
    """The argv that ``Session.exec_code`` runs: an isolated interpreter (``-I``) on ``code``."""
    return [python, "-I", "-c", code]


class Session(ABC):
    """One sandbox with one workspace, for one episode. Use as a context manager.

    Not thread-safe: one caller at a time per session (sessions are cheap; open one per
    episode).
    """

    limits: Limits

    @abstractmethod
    def exec(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes = b"",
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str = ".",
    ) -> ExecResult:
        """Run ``argv`` in a fresh process inside the session's sandbox.

        Args:
            argv: Program and arguments; the program is looked up on the sandbox's PATH.
            stdin: Bytes given to the program's standard input (then EOF).
            timeout: Wall-clock seconds; defaults to ``limits.wall_s``.
            env: Extra environment variables on top of :data:`BASE_ENV`.
            cwd: Working directory, relative to the workspace.

        Returns:
            The result; sandbox failures are reported as ``sandbox_error``, never raised.

        Raises:
            SandboxError: If the session is closed.
        """

    def exec_code(
        self,
        code: str,
        *,
        stdin: bytes = b"",
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ExecResult:
        """Run a Python snippet in a fresh isolated interpreter (``python3 -I -c code``).

        Args:
            code: Python source.
            stdin: Bytes for standard input.
            timeout: Wall-clock seconds; defaults to ``limits.wall_s``.
            env: Extra environment variables.

        Returns:
            The result of the run.
        """
        return self.exec(python_argv(code, self.python_path), stdin=stdin, timeout=timeout, env=env)

    @property
    @abstractmethod
    def python_path(self) -> str:
        """The Python interpreter inside this sandbox."""

    @abstractmethod
    def put(self, path: str, data: bytes | str) -> None:
        """Write a workspace file (parents created), replacing any existing file.

        Raises:
            ConfigError: If the path leaves the workspace.
            SandboxError: If the file cannot be written.
        """

    @abstractmethod
    def get(self, path: str, max_bytes: int | None = None) -> bytes:
        """Read a workspace file. Symlinks are never followed.

        Args:
            path: Workspace-relative path.
            max_bytes: Refuse files larger than this (defaults to ``limits.workspace_bytes``).

        Raises:
            ConfigError: If the path leaves the workspace.
            FileNotFoundError: If there is no regular file at ``path``.
        """

    @abstractmethod
    def listdir(self, path: str = ".") -> list[str]:
        """Sorted entry names of a workspace directory; directories end with ``/``.

        Raises:
            ConfigError: If the path leaves the workspace.
            FileNotFoundError: If there is no directory at ``path``.
        """

    def readlink(self, path: str) -> str | None:
        """The target text of the symlink at ``path`` (never followed), or ``None``.

        ``None`` also when the backend cannot tell (the container backend); the local
        backend reads it with ``readlinkat``.

        Raises:
            ConfigError: If the path leaves the workspace.
        """
        clean_relpath(path)
        return None

    @abstractmethod
    def snapshot(self, max_bytes: int | None = None) -> dict[str, bytes]:
        """Every regular file of the workspace as ``{relative path: bytes}``.

        Symlinks, fifos and devices are skipped (never followed). Used to copy a workspace into
        a judging sandbox (:mod:`toolgym.sandbox.judge`).

        Raises:
            SandboxError: If the files together exceed ``max_bytes``.
        """

    def python(self, limits: Limits | None = None) -> PythonKernel:
        """Start a stateful Python kernel that shares this session's workspace.

        Raises:
            SandboxError: If this backend has no stateful Python (see capabilities).
        """
        raise SandboxError(f"{type(self).__name__} has no stateful Python kernel.")

    @abstractmethod
    def close(self) -> None:
        """Kill every process of the session and remove its workspace. Idempotent."""

    @property
    @abstractmethod
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class PythonKernel(ABC):
    """A warm interpreter inside a sandbox whose variables live between calls (like Jupyter).

    ``run`` echoes the value of a trailing expression like the REPL does. After a limit is
    hit, the kernel is torn down; that call's result has ``state_lost=True`` and the next call
    starts a fresh interpreter.
    """

    @abstractmethod
    def run(self, code: str, *, timeout: float | None = None) -> ExecResult:
        """Execute ``code`` in the kernel's namespace.

        Args:
            code: Python source (one cell).
            timeout: Wall-clock seconds; defaults to the kernel's ``limits.wall_s``.

        Returns:
            The result: stdout holds prints and the echoed value; stderr the traceback, if
            any (then ``exit_code`` is 1).
        """

    @abstractmethod
    def restart(self) -> None:
        """Drop all state and start a fresh interpreter."""

    @abstractmethod
    def close(self) -> None:
        """Stop the kernel. Idempotent."""


class Backend(ABC):
    """A way to run sandboxes: opens sessions and reports its guarantees."""

    name: str

    @abstractmethod
    def capabilities(self) -> Capabilities:
        """Which guarantees this backend gives on this machine."""

    @abstractmethod
    def open(self, files: Mapping[str, bytes | str] | None = None, limits: Limits | None = None) -> Session:
        """Open a session: a fresh workspace holding ``files``, and a sandbox with ``limits``.

        Args:
            files: Initial workspace files, ``{relative path: content}``.
            limits: Limits for every call of the session (defaults: sandbox.md §5).

        Returns:
            The open session; close it (or use ``with``).

        Raises:
            SandboxError: If the sandbox cannot be created here.
        """


def sandbox_error(detail: str, started: float) -> ExecResult:
    """The result of a call the sandbox itself failed to run (``started``: ``time.monotonic()``)."""
    return ExecResult(
        status=ExecStatus.SANDBOX_ERROR,
        exit_code=None,
        signal=None,
        stdout=b"",
        stderr=b"",
        wall_ms=(time.monotonic() - started) * 1000.0,
        state_lost=True,
        detail=detail,
    )


def int_field(response: Mapping[str, object] | None, key: str) -> int | None:
    """An int field of a helper's JSON response (bools are not ints), or None."""
    value = response.get(key) if response else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def float_field(response: Mapping[str, object] | None, key: str) -> float | None:
    """A numeric field of a helper's JSON response as float, or None."""
    value = response.get(key) if response else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
