"""Host-side process plumbing for the local backend: the long-lived sandbox process and its pipes.

A :class:`SandboxProcess` is one running ``bwrap`` whose command is :mod:`.inside` in ``serve``
or ``kernel`` mode. The host talks to it with frames (:mod:`.wire`) on two pipes and reads the
sandbox's standard output and error itself, so that

* the **wall clock** is enforced here (a deadline on the select loop, then SIGKILL), not by code
  in the sandbox that could be tampered with;
* **output caps** are enforced here: past ``Limits.output_bytes`` the sandbox is killed and the
  stream marked truncated, so a program printing 1 GB costs 1 MiB of host memory;
* **killing** is reliable: the sandbox's pid 1 (bwrap's init, whose host pid bwrap reports on its
  ``--info-fd``) is signalled through a pidfd, which tears down the whole pid namespace, and the
  outer bwrap is killed too.

Zombies (sandbox.md §3, fix 5): when the program inside ends by itself, bwrap's outer process
exits as soon as its init reports the status, without reaping that init, which is then
reparented. :func:`become_subreaper` makes this process a child subreaper so the orphaned init is
reparented *here*, and :meth:`SandboxProcess.kill` reaps it by pidfd. Side effect, documented in
the package docstring: orphans of any other child of this process are reparented here too.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from toolgym.errors import SandboxError

from .wire import take_frame

PR_SET_CHILD_SUBREAPER = 36
_subreaper_set = False


def become_subreaper() -> bool:
    """Mark this process a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER, 1)``), once.

    Returns:
        Whether the flag is set.
    """
    global _subreaper_set
    if not _subreaper_set:
        libc = ctypes.CDLL(None, use_errno=True)
        _subreaper_set = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    return _subreaper_set


@dataclass
class Capture:
    """Bytes read from one output stream, kept up to ``cap``."""

    cap: int
    data: bytearray = field(default_factory=bytearray)
    total: int = 0

    @property
    def truncated(self) -> bool:
        """More bytes arrived than were kept."""
        return self.total > self.cap

    def feed(self, chunk: bytes) -> bool:
        """Keep what fits; returns True once the cap is passed."""
        self.total += len(chunk)
        room = self.cap - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        return self.total > self.cap


@dataclass
class Exchange:
    """The outcome of one request/response exchange with a sandbox process.

    Attributes:
        reason: ``frame`` (a response arrived), ``timeout``, ``output_limit`` or ``eof`` (the
            sandbox process died).
        payload: The response frame's payload, for ``frame``.
        stdout: What the sandbox wrote on standard output during the exchange.
        stderr: What it wrote on standard error.
    """

    reason: Literal["frame", "timeout", "output_limit", "eof"]
    payload: bytes | None
    stdout: Capture
    stderr: Capture


def _read_available(fd: int) -> bytes | None:
    """Read what a non-blocking fd has; b"" on EOF, None when it would block."""
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return None


class SandboxProcess:
    """One running bwrap whose inner program speaks frames on a request and a response pipe.

    Args:
        argv_for: Builds the full argv given ``(info_fd, req_fd, resp_fd)``; the inner program
            must use those fd numbers (``pass_fds`` keeps numbers across exec).
        user: Host uid to run bwrap as (``None``: the caller's).
        group: Host gid to run bwrap as.
        start_timeout: Seconds to wait for the inner program's ready frame.
    """

    def __init__(
        self,
        argv_for: Callable[[int, int, int], Sequence[str]],
        user: int | None,
        group: int | None,
        start_timeout: float = 10.0,
    ) -> None:
        self._argv_for = argv_for
        self._user = user
        self._group = group
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._pidfd: int | None = None
        self._req_w = -1
        self._resp_r = -1
        self._info_r = -1  # bwrap's --info-fd, open from launch until ready
        self._resp_buf = bytearray()
        self._sel: selectors.BaseSelector | None = None

    @property
    def alive(self) -> bool:
        """The bwrap process is running."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def ready(self) -> bool:
        """The inner program has sent its ready frame (``start`` or ``wait_ready`` returned)."""
        return self._proc is not None and self._info_r < 0

    def start(self) -> None:
        """Start bwrap and wait for the inner program's ready frame.

        Raises:
            SandboxError: If bwrap or the inner program fails to start (with bwrap's message).
        """
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start bwrap without waiting for the sandbox: ``wait_ready`` (or ``start``) finishes it.

        Most of a sandbox's start-up is the kernel building namespaces, which sleeps rather than
        computes; launching one ahead of need overlaps that with the caller's own work.

        Raises:
            SandboxError: If bwrap cannot be executed.
        """
        req_r, req_w = os.pipe2(os.O_CLOEXEC)
        resp_r, resp_w = os.pipe2(os.O_CLOEXEC)
        info_r, info_w = os.pipe2(os.O_CLOEXEC)
        argv = self._argv_for(info_w, req_r, resp_w)
        try:
            self._proc = subprocess.Popen(  # noqa: S603 - argv is built by this package
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(req_r, resp_w, info_w),
                # Fix 4 of sandbox.md §3: bwrap itself (pid 1 inside, readable through
                # /proc/1/environ) gets no environment from the caller.
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                start_new_session=True,
                close_fds=True,
                # Fixes 1-2: never host uid 0; the slot's own uid (None: stay the caller).
                user=self._user,
                group=self._group,
                extra_groups=[] if self._user is not None else None,
            )
        except OSError as exc:
            for fd in (req_r, req_w, resp_r, resp_w, info_r, info_w):
                os.close(fd)
            raise SandboxError(f"Cannot start bwrap ({argv[0]}): {exc}.") from exc
        for fd in (req_r, resp_w, info_w):
            os.close(fd)
        self._req_w, self._resp_r, self._info_r = req_w, resp_r, info_r
        assert self._proc.stdout is not None and self._proc.stderr is not None
        for fd in (req_w, resp_r, self._proc.stdout.fileno(), self._proc.stderr.fileno()):
            os.set_blocking(fd, False)
        self._sel = selectors.DefaultSelector()

    def wait_ready(self) -> None:
        """Wait for a launched sandbox's ready frame (no-op once ready).

        Raises:
            SandboxError: If the sandbox did not start (with bwrap's message); it is killed.
        """
        if self._proc is None:
            raise SandboxError("The sandbox process was never launched or is already gone.")
        info_r = self._info_r
        if info_r < 0:
            return
        try:
            child_pid = self._read_info(info_r)
            try:
                self._pidfd = os.pidfd_open(child_pid)
            except ProcessLookupError:
                self._pidfd = None  # already gone; the ready exchange below reports why
            ready = self.exchange(b"", deadline=time.monotonic() + self._start_timeout, cap=1 << 16)
        finally:
            if self._info_r >= 0:  # _read_info kills (and closes it) on failure
                os.close(self._info_r)
                self._info_r = -1
        if ready.reason != "frame":
            message = bytes(ready.stderr.data).decode("utf-8", "replace").strip()
            self.kill()
            raise SandboxError(f"The sandbox did not start ({ready.reason}): {message or 'no message'}.")

    def _read_info(self, info_r: int) -> int:
        """Read bwrap's ``--info-fd`` JSON and return the sandbox init's host pid."""
        assert self._proc is not None and self._proc.stderr is not None
        pid = _info_pid(info_r, time.monotonic() + self._start_timeout)
        if pid is not None:
            return pid
        try:
            self._proc.wait(timeout=2)
            err = self._proc.stderr.read() or b""
        except subprocess.TimeoutExpired:
            err = b""
        self.kill()
        raise SandboxError(
            "bwrap failed to create the sandbox: "
            f"{err.decode('utf-8', 'replace').strip() or 'no message'}. Unprivileged user "
            "namespaces must be enabled (sysctl kernel.unprivileged_userns_clone=1, "
            "user.max_user_namespaces > 0); inside a container, bwrap needs seccomp=unconfined "
            "and an unmasked /proc (sandbox.md §7)."
        )

    def exchange(
        self,
        request: bytes,
        *,
        deadline: float,
        cap: int,
    ) -> Exchange:
        """Send ``request`` (already framed) and wait for one response frame.

        Reads standard output and error all along, keeping at most ``cap`` bytes of each.

        Args:
            request: Bytes to write to the request pipe (may be empty).
            deadline: ``time.monotonic()`` value at which to give up with ``timeout``.
            cap: Bytes kept per output stream; passing it ends with ``output_limit``.

        Returns:
            The exchange's outcome. The process is left running whatever the reason; callers
            kill it on anything but ``frame``.
        """
        assert self._proc is not None and self._sel is not None
        assert self._proc.stdout is not None and self._proc.stderr is not None
        out, err = Capture(cap), Capture(cap)
        streams = {self._proc.stdout.fileno(): out, self._proc.stderr.fileno(): err}
        sel = self._sel
        pending = memoryview(request)
        for fd in streams:
            sel.register(fd, selectors.EVENT_READ)
        sel.register(self._resp_r, selectors.EVENT_READ)
        if pending:
            sel.register(self._req_w, selectors.EVENT_WRITE)
        try:
            while True:
                payload = take_frame(self._resp_buf)
                if payload is not None:
                    self._drain(streams)
                    return Exchange("frame", payload, out, err)
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    return Exchange("timeout", None, out, err)
                for key, _ in sel.select(timeout):
                    fd = key.fd
                    if fd == self._req_w:
                        try:
                            pending = pending[os.write(fd, pending) :]
                        except BrokenPipeError:
                            pending = pending[:0]
                        if not pending:
                            sel.unregister(fd)
                        continue
                    chunk = _read_available(fd)
                    if chunk is None:
                        continue
                    if fd == self._resp_r:
                        if not chunk:
                            self._drain(streams)
                            return Exchange("eof", None, out, err)
                        self._resp_buf += chunk
                    elif not chunk:
                        sel.unregister(fd)
                    elif streams[fd].feed(chunk):
                        return Exchange("output_limit", None, out, err)
        finally:
            for registered in list(sel.get_map()):
                sel.unregister(registered)

    @staticmethod
    def _drain(streams: dict[int, Capture]) -> None:
        """Read what is already in the output pipes (the writers have exited)."""
        for fd, capture in streams.items():
            while True:
                chunk = _read_available(fd)
                if not chunk:
                    break
                capture.feed(chunk)

    def wait_exit(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` s for bwrap to exit by itself; its exit code, or None.

        bwrap exits with the inner program's code, or 128 + the signal that killed it.
        """
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """Kill the sandbox (its whole pid namespace) and reap what bwrap left. Idempotent."""
        if self._info_r >= 0 and self._pidfd is None and self.alive:
            # Launched, never waited for: learn the init's pid so it is killed and reaped too.
            pid = _info_pid(self._info_r, time.monotonic() + self._start_timeout)
            if pid is not None:
                try:
                    self._pidfd = os.pidfd_open(pid)
                except ProcessLookupError:
                    pass
        proc, pidfd = self._proc, self._pidfd
        if pidfd is not None:
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc is not None:
            # The outer bwrap reaps its init and exits by itself once the init is dead; give
            # it a moment, then force it.
            try:
                proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        if pidfd is not None:
            _reap_pidfd(pidfd)
            os.close(pidfd)
        for fd in (self._req_w, self._resp_r, self._info_r):
            if fd >= 0:
                os.close(fd)
        if self._sel is not None:
            self._sel.close()
        self._proc, self._pidfd, self._sel = None, None, None
        self._req_w = self._resp_r = self._info_r = -1
        self._resp_buf.clear()


def _info_pid(info_r: int, deadline: float) -> int | None:
    """The sandbox init's host pid from bwrap's ``--info-fd`` JSON; None if bwrap never wrote it."""
    buf = b""
    sel = selectors.DefaultSelector()
    sel.register(info_r, selectors.EVENT_READ)
    try:
        while time.monotonic() < deadline:
            try:
                return int(json.loads(buf)["child-pid"])
            except (ValueError, KeyError):
                pass
            if not sel.select(max(0.0, deadline - time.monotonic())):
                return None
            chunk = os.read(info_r, 4096)
            if not chunk:
                return None
            buf += chunk
    finally:
        sel.close()
    return None


def _reap_pidfd(pidfd: int, budget_s: float = 2.0) -> None:
    """Reap the process behind ``pidfd`` if it became our child (subreaper); else do nothing."""
    end = time.monotonic() + budget_s
    while True:
        try:
            if os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG) is not None:
                return
        except ChildProcessError:
            return  # reaped by the outer bwrap, or reparented elsewhere
        except OSError as exc:
            if exc.errno != errno.EINTR:
                return
        if time.monotonic() > end:
            return
        time.sleep(0.002)
