r"""The helper program that runs *inside* every sandbox (stdlib only, never imported on the host).

The host reads this file's source and starts it as ``python3 -I -S -c <source> <mode> ...``
inside the sandbox, so nothing from the host has to be bound in. It has four modes:

``serve REQ_FD RESP_FD``
    The local backend's per-session exec server. For each request frame it forks a fresh
    process, applies the call's rlimits, gives it the request's stdin through a memfd, starts a
    new session (``setsid``) and execs the argv; standard output and error are the server's own,
    which are pipes the host reads and caps. When the program exits, every other process in the
    sandbox's pid namespace is killed (so no daemon outlives its call) and a response frame with
    the exit status and CPU time goes back.
``kernel REQ_FD RESP_FD SETUP_B64``
    The stateful Python kernel: one warm interpreter whose namespace lives between calls. A
    trailing expression is echoed like the REPL (``sys.displayhook``). CPU time per call is a
    budget measured here (an ``ITIMER_PROF`` timer, :func:`run_cell`), backed by an RLIMIT_CPU
    soft limit moved forward before each call. With ``"forks": true`` in the set-up
    the interpreter is a forked child of a zygote that serves a fresh one on ``{"renew": true}``
    (:func:`fork_server`).
``once``
    The docker backend's per-exec launcher: the same fork/limits/exec/kill-leftovers as
    ``serve`` for one request (read from the environment), then a trailer ``\n<NONCE>{json}``
    on standard error.
``idle``
    PID 1 of a docker session container: reaps orphans and otherwise sleeps.

The wire format is given in :mod:`toolgym.sandbox.wire`, the host's side of it; this file is the
sandbox's side. In short: frames are a 4-byte big-endian length followed by the payload;
host-to-sandbox requests are ``marshal`` data (version 4: plain dicts, lists, str, bytes,
numbers; the host is trusted); sandbox-to-host responses are JSON written by :func:`to_json`,
because the host parses them and must never unmarshal untrusted bytes. The helper imports
nothing heavy (no ``json``, ``re``, ``enum``: they cost ~15 ms of start-up on the target
machines); ``ctypes`` is the exception, for :func:`undumpable`.

Trust: this code runs as the sandbox user, next to the code it runs. Code of the same session
can tamper with it (ptrace it, kill it, forge frames); the host therefore treats its answers as
describing that session only, caps everything it reads, and enforces wall clock and output caps
itself. Tampering can only hurt the tampering session.
"""

import _signal
import binascii
import marshal
import os
import resource
import sys
import time

FRAME_LIMIT = 1 << 30


def undumpable():
    """Make this process non-dumpable, so same-uid programs cannot read its memory or fds.

    Requests (and a judge's stdin nonce) pass through this process; without this, code of the
    same session could read them from ``/proc/<pid>/mem``.
    """
    try:
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except Exception:  # noqa: BLE001 - best effort; ctypes may be missing from an image
        pass


def _json_str(text):
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch < " " or ch > "~":
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else ch)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def to_json(value):
    """JSON for None, bools, numbers, strings, lists and str-keyed dicts, without ``json``."""
    if value is None or value is True or value is False:
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int | float):
        return repr(value) if value == value and abs(value) != float("inf") else "null"
    if isinstance(value, str):
        return _json_str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(to_json(v) for v in value) + "]"
    return "{" + ", ".join(_json_str(k) + ": " + to_json(v) for k, v in value.items()) + "}"


def respond(fd, value):
    """Write one JSON response frame."""
    write_frame(fd, to_json(value).encode())


def read_exact(fd, n):
    """Read exactly ``n`` bytes from ``fd``; EOF raises EOFError."""
    chunks = []
    while n > 0:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError("protocol stream closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd):
    """Read one length-prefixed frame."""
    size = int.from_bytes(read_exact(fd, 4), "big")
    if size > FRAME_LIMIT:
        raise ValueError("frame too large")
    return read_exact(fd, size)


def write_all(fd, data):
    """Write every byte of ``data`` to ``fd``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_frame(fd, payload):
    """Write one length-prefixed frame."""
    write_all(fd, len(payload).to_bytes(4, "big") + payload)


def read_request(fd):
    """Read one request frame and unmarshal it."""
    return marshal.loads(read_frame(fd))


def decode_setup(text):
    """The ``kernel`` mode setup from its base64 argv string."""
    return marshal.loads(binascii.a2b_base64(text))


def request_from_env(environ):
    """Take ``once`` mode's request and nonce out of ``environ`` (they are removed from it)."""
    chunks, i = [], 0
    while f"TOOLGYM_REQ_{i}" in environ:
        chunks.append(environ.pop(f"TOOLGYM_REQ_{i}"))
        i += 1
    nonce = environ.pop("TOOLGYM_NONCE")
    return marshal.loads(binascii.a2b_base64("".join(chunks))), nonce


def trailer(nonce, value):
    r"""``once`` mode's status trailer: ``\n<nonce>{json}``."""
    return b"\n" + nonce.encode() + to_json(value).encode()


def apply_rlimits(triples):
    """Set each ``(RLIMIT_NAME, soft, hard)``; -1 means unlimited."""
    for name, soft, hard in triples:
        soft = resource.RLIM_INFINITY if soft < 0 else soft
        hard = resource.RLIM_INFINITY if hard < 0 else hard
        resource.setrlimit(getattr(resource, name), (soft, hard))


def spawn(req, stdin):
    """Fork and exec one request; returns the child's pid. The child never returns."""
    pid = os.fork()
    if pid:
        return pid
    try:
        os.setsid()
        apply_rlimits(req["rlimits"])
        if stdin:
            fd = os.memfd_create("stdin", 0)
            write_all(fd, stdin)
            os.lseek(fd, 0, os.SEEK_SET)
        else:
            fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(fd, 0)
        os.chdir(req["cwd"])
        os.closerange(3, 1 << 16)
        _signal.signal(_signal.SIGPIPE, _signal.SIG_DFL)
        _signal.signal(_signal.SIGXFSZ, _signal.SIG_DFL)
        os.execvpe(req["argv"][0], req["argv"], req["env"])
    except BaseException as exc:  # noqa: BLE001 - report any failure to exec, then exit
        try:
            os.write(2, f"sandbox: cannot run {req['argv'][0]!r}: {exc}\n".encode())
        finally:
            os._exit(127)
    return 0  # unreachable


def others():
    """Pids of live processes in this pid namespace other than pid 1 and this one."""
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in (1, me):
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in (b"Z", b"X"):
            found.append(int(name))
    return found


def reap_nohang():
    """Reap any exited children without blocking."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_leftovers(budget_s=2.0):
    """SIGKILL every other process in the namespace until none is left; False if some survive."""
    end = time.monotonic() + budget_s
    while True:
        if not others():
            return True
        try:
            os.kill(-1, _signal.SIGKILL)
        except ProcessLookupError:
            pass
        reap_nohang()
        if time.monotonic() > end:
            return False
        time.sleep(0.0005)


def oom_kills():
    """The memory cgroup's OOM-kill counter (cgroup v1 or v2), or -1 when not visible."""
    for path in ("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events"):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("oom_kill "):
                        return int(line.split()[1])
        except (OSError, ValueError):
            continue
    return -1


def run_one(req, stdin):
    """Run one request to completion; returns the response dict."""
    ooms = oom_kills()
    pid = spawn(req, stdin)
    _, status, usage = os.wait4(pid, 0)
    clean = kill_leftovers()
    reap_nohang()
    return {
        "oom": ooms >= 0 and oom_kills() > ooms,
        "exit_code": os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "cpu_ms": (usage.ru_utime + usage.ru_stime) * 1000.0,
        "clean": clean,
    }


def serve(req_fd, resp_fd):
    """The local backend's exec server loop (mode ``serve``)."""
    undumpable()
    for fd in (req_fd, resp_fd):
        os.set_inheritable(fd, False)
    respond(resp_fd, {"ready": True})
    while True:
        try:
            req = read_request(req_fd)
        except EOFError:
            return
        respond(resp_fd, run_one(req, req.pop("stdin")))


def once():
    """Run one request and append the status trailer to stderr (mode ``once``).

    The request arrives base64-encoded in the environment variables ``TOOLGYM_REQ_0..N`` and
    the trailer's nonce in ``TOOLGYM_NONCE`` (not in argv: ``/proc/<pid>/cmdline`` is readable
    by everyone, ``/proc/<pid>/environ`` of a non-dumpable process is not).
    """
    undumpable()
    req, nonce = request_from_env(os.environ)
    result = run_one(req, req.pop("stdin"))
    write_all(2, trailer(nonce, result))


def idle():
    """PID 1 of a docker session container: reap orphans forever (mode ``idle``)."""
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            time.sleep(0.05)


def clear_dir(path):
    """Delete everything under ``path`` (the directory stays); entries that resist are skipped."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                os.chmod(entry.path, 0o700)
                clear_dir(entry.path)
                os.rmdir(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            pass


def mirror_exit(status):
    """End this process the way a child with wait ``status`` ended (same signal or exit code)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        _signal.signal(sig, _signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def fork_server():
    """Serve fresh interpreters by forking (``kernel`` mode with ``"forks": true``).

    This process (the *zygote*) never runs a cell. It forks a child that runs the kernel loop on
    the same pipes; a ``{"renew": true}`` request makes that child report on a private pipe and
    exit, and the zygote then kills every other process in the sandbox, empties ``/tmp`` and
    ``/dev/shm``, and forks the next child, which answers ``{"ready": true}``. The new child
    starts from the zygote's pristine state: no variable, import, working-directory or
    environment change of the previous child survives. A child that ends any other way
    (``os._exit``, a signal) ends the zygote the same way, so the host sees what it sees
    without forking. Returns in each child (the write end of its renew pipe).
    """
    while True:
        renew_r, renew_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(renew_r)
            return renew_w
        os.close(renew_w)
        _, status = os.waitpid(pid, 0)
        kill_leftovers()
        reap_nohang()
        os.set_blocking(renew_r, False)
        try:
            renewed = os.read(renew_r, 1) == b"r"
        except OSError:
            renewed = False
        os.close(renew_r)
        if not renewed:
            mirror_exit(status)
        clear_dir("/tmp")
        clear_dir("/dev/shm")


def kernel(req_fd, resp_fd, setup_b64):
    """The stateful Python kernel (mode ``kernel``): set-up, then the cell loop."""
    import ast  # noqa: F401 - imported before any fork, so every child has it warm
    import builtins  # noqa: F401
    import traceback  # noqa: F401

    for fd in (req_fd, resp_fd):
        os.set_inheritable(fd, False)
    limits = decode_setup(setup_b64)
    apply_rlimits(limits["rlimits"])
    os.chdir(limits["cwd"])
    os.environ.clear()
    os.environ.update(limits["env"])
    sys.argv = [""]
    if os.path.isdir("/opt/toolgym/libs"):  # numpy and pandas, bound read-only (pylibs.py)
        sys.path.append("/opt/toolgym/libs")
    renew_w = fork_server() if limits.get("forks") else -1
    cells(req_fd, resp_fd, renew_w)


class CPUTimeExceeded(BaseException):
    """Raised in a cell that used up its CPU budget (a BaseException, like KeyboardInterrupt)."""


def run_cell(code, namespace, budget):
    """Run one cell under a CPU-time budget; returns ``(error type name or None, budget passed)``.

    The budget is an ``ITIMER_PROF`` timer (user + system time of this process, all threads,
    measured by the kernel) set to ``budget`` seconds when the cell starts. When it fires, the
    handler raises :class:`CPUTimeExceeded` in the cell (once: the timer does not repeat), whose
    traceback says where the cell was. A cell that swallows it, ignores SIGPROF or spends its
    time in C code that never returns to the interpreter is stopped by the RLIMIT_CPU backstop
    (:func:`cells`) or the host's wall clock. The timer can fire after the cell, in this
    function's own code; that is caught here and still counts as the budget passed. A cell
    that disarms the interrupt and the backstop (ignores SIGPROF and SIGXCPU, or raises its
    RLIMIT_CPU) and ends within the wall clock has still passed the budget when the CPU time
    it used exceeds it: the outcome must not depend on whether the wall clock came first.
    """
    import ast
    import traceback

    state = {"armed": True, "hit": False}

    def on_sigprof(signum, frame):
        if state["armed"]:
            state["armed"] = False
            state["hit"] = True
            raise CPUTimeExceeded(f"the call used more than {budget:g} s of CPU time")

    _signal.signal(_signal.SIGPROF, on_sigprof)
    error = None
    start = time.process_time()  # the same clock as ITIMER_PROF: this process's user + system time
    try:
        try:
            _signal.setitimer(_signal.ITIMER_PROF, budget)
            tree = ast.parse(code, "<cell>", "exec")
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            exec(compile(tree, "<cell>", "exec"), namespace)
            if last is not None:
                single = ast.Interactive(body=[last])
                exec(compile(single, "<cell>", "single"), namespace)
        except BaseException as exc:  # noqa: BLE001 - the cell's error is its output
            error = type(exc).__name__
            try:
                # A SyntaxError comes from ast.parse: its frames are the parser's, not the cell's, and
                # the error prints its own line and caret.
                tb = None if isinstance(exc, SyntaxError) else exc.__traceback__.tb_next if exc.__traceback__ else None
                traceback.print_exception(type(exc), exc, tb)
            except BaseException:  # noqa: BLE001 - a broken sys.stderr must not kill us
                pass
        finally:
            state["armed"] = False
            _signal.setitimer(_signal.ITIMER_PROF, 0)
    except CPUTimeExceeded:  # fired in the lines above, after the cell's own code
        _signal.setitimer(_signal.ITIMER_PROF, 0)
    return error, state["hit"] or time.process_time() - start > budget


def cells(req_fd, resp_fd, renew_w):
    """The cell loop: one request frame per cell, one response frame back.

    Each cell has a CPU budget of ``req["cpu_s"]`` seconds (:func:`run_cell`), backed by an
    RLIMIT_CPU soft limit moved to 1–2 s past it before each call (SIGXCPU kills the kernel:
    the host reports a timeout and starts a fresh one).

    ``renew_w`` >= 0 (a forked child of :func:`fork_server`): a ``{"renew": true}`` request
    writes ``r`` on it and exits, and the zygote forks the next interpreter.
    """
    import builtins

    namespace = {"__name__": "__main__", "__builtins__": builtins}
    cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    respond(resp_fd, {"ready": True})
    while True:
        try:
            req = read_request(req_fd)
        except EOFError:
            return
        if req.get("renew") and renew_w >= 0:
            write_all(renew_w, b"r")
            os._exit(0)
        used = time.process_time()  # this process's user + system time, as ITIMER_PROF counts it
        soft = int(used + req["cpu_s"] + 1.0) + 1
        if cpu_hard != resource.RLIM_INFINITY:
            soft = min(soft, cpu_hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, cpu_hard))
        error, cpu_out = run_cell(req["code"], namespace, float(req["cpu_s"]))
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001
                pass
        cpu_ms = (time.process_time() - used) * 1000.0
        respond(resp_fd, {"error": error, "cpu_ms": cpu_ms, "cpu_out": cpu_out})


def main(argv):
    """Dispatch on the mode in ``argv[1]``."""
    mode = argv[1]
    if mode == "serve":
        serve(int(argv[2]), int(argv[3]))
    elif mode == "kernel":
        kernel(int(argv[2]), int(argv[3]), argv[4])
    elif mode == "once":
        once()
    elif mode == "idle":
        idle()
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv)
