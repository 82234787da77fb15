"""The attack suite of issue 3, run against the local backend always and docker when an engine answers.

Every attack runs in a fresh session with small limits, must be contained (the assertion says
how), must leave the host unaffected (no process of the sandbox's uid left, no zombie, host can
still fork), and the next call in a fresh session must work. Bombs end by themselves after a few
seconds, so a containment bug cannot hang the run.
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from toolgym.sandbox import Backend, ExecStatus, Limits, get_backend, pylibs
from toolgym.sandbox.container import docker_unavailable_reason

MiB = 1 << 20
LIMITS = Limits(
    wall_s=2.0,
    memory_bytes=256 * MiB,
    max_processes=32,
    max_file_bytes=8 * MiB,
    tmp_bytes=16 * MiB,
    shm_bytes=8 * MiB,
    workspace_bytes=32 * MiB,
    output_bytes=64 * 1024,
)
CHECKOUT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "docker":
        reason = os.environ.get("TOOLGYM_DOCKER_SKIP_REASON") or docker_unavailable_reason()
        if reason:
            pytest.skip(f"docker backend: {reason}")
    # The local backend binds the sandbox's numpy/pandas when installed (sandbox/pylibs.py), as the
    # code family does: every attack must be contained with them there too.
    b = get_backend(request.param, **({"libs": pylibs.find()} if request.param == "local" else {}))
    yield b
    if request.param == "docker":
        b.close()  # type: ignore[attr-defined]


def _procs_of_uid(uid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            status = Path(f"/proc/{name}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields["Uid"].split()[0]) == uid and fields["State"].split()[0] not in "ZX":
            out.append(int(name))
    return out


def _our_zombies() -> list[int]:
    me, out = os.getpid(), []
    for name in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if stat[0] == "Z" and int(stat[1]) == me:
            out.append(int(name))
    return out


def attack(backend: Backend, code: str, **kw: object) -> object:
    """Run ``code`` in a fresh session, then check the host and a fresh session."""
    session = backend.open(limits=LIMITS)
    uid = getattr(getattr(session, "slot", None), "uid", None)
    try:
        result = session.exec_code(code, **kw)  # type: ignore[arg-type]
    finally:
        session.close()
    if uid is not None:  # local backend as root: nothing of the slot uid may survive
        deadline = time.monotonic() + 2
        while _procs_of_uid(uid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _procs_of_uid(uid) == [], "processes of the sandbox uid survived the session"
    assert _our_zombies() == [], "zombies left behind"
    assert subprocess.run(["true"]).returncode == 0, "the host cannot fork any more"
    with backend.open(limits=LIMITS) as fresh:
        after = fresh.exec_code("print('alive')")
    assert after.ok and after.stdout == b"alive\n", after
    return result


def test_fork_bomb_exponential(backend: Backend) -> None:
    code = (
        "import os, time\nend = time.time() + 6\n"
        "while time.time() < end:\n"
        "    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)\n"
    )
    start = time.monotonic()
    r = attack(backend, code)
    assert r.status is ExecStatus.TIMEOUT, r
    assert time.monotonic() - start < 15


def test_fork_bomb_capped(backend: Backend) -> None:
    code = (
        "import os, time\nn = 0\n"
        "try:\n"
        "    while n < 5000:\n"
        "        if os.fork() == 0:\n            time.sleep(4)\n            os._exit(0)\n"
        "        n += 1\n"
        "except OSError as e:\n    print('capped', n, e.errno)\n"
    )
    r = attack(backend, code)
    assert r.ok, r
    word, n, err = r.text.split()
    assert word == "capped" and int(err) == errno.EAGAIN
    assert int(n) < LIMITS.max_processes


def test_thread_bomb(backend: Backend) -> None:
    code = (
        "import threading, time\nn = 0\n"
        "try:\n"
        "    while n < 5000:\n"
        "        threading.Thread(target=time.sleep, args=(4,), daemon=True).start()\n"
        "        n += 1\n"
        "except (RuntimeError, MemoryError) as e:\n    print('capped', n)\n"
    )
    r = attack(backend, code)
    assert r.text.startswith("capped"), r
    assert int(r.text.split()[1]) < LIMITS.max_processes


def test_memory_bomb(backend: Backend) -> None:
    code = "chunks = []\nfor _ in range(80):\n    chunks.append(bytearray(50 << 20))\nprint('survived')\n"
    r = attack(backend, code)
    assert r.status is ExecStatus.OOM, r
    assert b"survived" not in r.stdout


def test_infinite_loop(backend: Backend) -> None:
    r = attack(backend, "while True:\n    pass\n")
    assert r.status is ExecStatus.TIMEOUT, r
    assert 1900 <= r.wall_ms < 8000


def test_sleep_past_timeout(backend: Backend) -> None:
    r = attack(backend, "import time\ntime.sleep(60)\n")
    assert r.status is ExecStatus.TIMEOUT, r
    assert r.wall_ms < 8000


def test_huge_file(backend: Backend) -> None:
    code = (
        "import errno\n"
        "for path in ('/tmp/big', '/workspace/big'):\n"
        "    try:\n"
        "        with open(path, 'wb') as f:\n"
        "            for _ in range(400):\n                f.write(b'x' * (1 << 20))\n"
        "        print(path, 'WROTE')\n"
        "    except OSError as e:\n        print(path, errno.errorcode[e.errno])\n"
    )
    r = attack(backend, code)
    assert r.ok, r
    assert r.text.split() == ["/tmp/big", "EFBIG", "/workspace/big", "EFBIG"]


def test_many_files(backend: Backend) -> None:
    code = (
        "import errno\n"
        "for base in ('/tmp', '/workspace'):\n"
        "    n = 0\n"
        "    try:\n"
        "        for i in range(200):\n"
        "            with open(f'{base}/f{i}', 'wb') as f:\n                f.write(b'x' * (4 << 20))\n"
        "            n += 1\n"
        "        print(base, 'WROTE', n)\n"
        "    except OSError as e:\n        print(base, errno.errorcode[e.errno], n)\n"
    )
    r = attack(backend, code)
    assert r.ok, r
    lines = [ln.split() for ln in r.text.splitlines()]
    assert lines[0][:2] == ["/tmp", "ENOSPC"] and int(lines[0][2]) <= 4
    caps = backend.capabilities()
    if caps.workspace_quota:
        assert lines[1][:2] == ["/workspace", "ENOSPC"] and int(lines[1][2]) <= 8


def test_fill_dev_shm(backend: Backend) -> None:
    code = (
        "import errno\nn = 0\n"
        "try:\n"
        "    with open('/dev/shm/fill', 'wb') as f:\n"
        "        for _ in range(200):\n            f.write(b'x' * (1 << 20))\n            f.flush()\n"
        "            n += 1\n"
        "    print('WROTE', n)\n"
        "except OSError as e:\n    print(errno.errorcode[e.errno], n)\n"
    )
    r = attack(backend, code)
    assert r.ok, r
    word, n = r.text.split()
    assert word in ("ENOSPC", "EFBIG") and int(n) <= 8


def test_write_system_dirs(backend: Backend) -> None:
    code = (
        "import errno\n"
        "for path in ('/x', '/dev/x', '/usr/x', '/usr/bin/x', '/etc/x'):\n"
        "    try:\n        open(path, 'w').write('x')\n        print(path, 'WROTE')\n"
        "    except OSError as e:\n        print(path, errno.errorcode[e.errno])\n"
    )
    r = attack(backend, code)
    assert r.ok, r
    for line in r.text.splitlines():
        assert line.split()[1] in ("EROFS", "EACCES", "EPERM"), line


def test_libraries_import_but_cannot_be_changed(backend: Backend) -> None:
    """numpy and pandas (pylibs) import in every sandbox; their directory refuses every write.

    The local backend binds them read-only; the docker image carries them (build_image.py).
    """
    if pylibs.find() is None:
        pytest.skip("the sandbox libraries are not installed (python -m toolgym.sandbox.pylibs)")
    code = (
        "import errno, os, sys\n"
        "sys.path.append('/opt/toolgym/libs')\n"
        "import numpy, pandas\n"
        "print('import', numpy.__version__, pandas.__version__)\n"
        "for path in ('/opt/toolgym/libs/x.py', numpy.__file__, '/opt/toolgym/x'):\n"
        "    try:\n        open(path, 'a').write('x')\n        print(path, 'WROTE')\n"
        "    except OSError as e:\n        print(path, errno.errorcode[e.errno])\n"
    )
    r = attack(backend, code, timeout=30)
    assert r.ok and r.text.startswith("import "), r
    for line in r.text.splitlines()[1:]:
        assert line.split()[1] in ("EROFS", "EACCES", "EPERM"), line
    if not backend.capabilities().stateful_python:
        return
    with backend.open(limits=LIMITS) as s:  # and the kernel finds them without any sys.path edit
        out = s.python().run("import pandas as pd; print(pd.DataFrame({'a': [1, 2]}).a.sum())", timeout=30)
    assert out.stdout == b"3\n", out


def test_read_host_files(backend: Backend) -> None:
    home = os.path.expanduser("~")
    host_home_entries = sorted(os.listdir(home))[:20] if os.path.isdir(home) else []
    code = (
        "import os, sys\n"
        "def probe(p):\n"
        "    try:\n        return 'LIST ' + ','.join(sorted(os.listdir(p))) if os.path.isdir(p)"
        " else 'READ ' + open(p).read(100)\n"
        "    except OSError as e:\n        return type(e).__name__\n"
        f"for p in ('/etc/shadow', {str(CHECKOUT)!r}, {str(CHECKOUT / 'pyproject.toml')!r}, {home!r}):\n"
        "    print(p, probe(p))\n"
    )
    r = attack(backend, code)
    assert r.ok, r
    lines = r.text.splitlines()
    assert lines[0].split()[1] in ("FileNotFoundError", "PermissionError"), lines[0]
    assert lines[1].endswith("FileNotFoundError"), lines[1]
    assert lines[2].endswith("FileNotFoundError"), lines[2]
    visible = lines[3].split(" ", 1)[1]
    for entry in host_home_entries:
        assert entry not in visible.split("LIST ", 1)[-1].split(","), f"host home entry {entry} visible"
    assert b"[project]" not in r.stdout


def test_proc_environ_has_no_secret(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "toolgym-secret-" + secrets.token_hex(8)
    monkeypatch.setenv("TOOLGYM_TEST_SECRET", secret)
    code = (
        "import os\n"
        "for pid in os.listdir('/proc'):\n"
        "    if pid.isdigit() or pid == 'self':\n"
        "        for f in ('environ', 'cmdline'):\n"
        "            try:\n                print(pid, f, open(f'/proc/{pid}/{f}', 'rb').read())\n"
        "            except OSError as e:\n                print(pid, f, type(e).__name__)\n"
    )
    r = attack(backend, code)
    assert r.ok, r
    assert b"/proc/1" not in r.stderr
    assert b"1 environ" in r.stdout
    assert secret.encode() not in r.stdout + r.stderr


def test_list_processes(backend: Backend) -> None:
    code = (
        "import os\npids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
        "print(len(pids))\n"
        "print(b' '.join(open(f'/proc/{p}/cmdline', 'rb').read() for p in pids))\n"
    )
    r = attack(backend, code)
    assert r.ok, r
    count, cmdlines = r.stdout.split(b"\n", 1)
    assert int(count) <= 5, r
    assert b"pytest" not in cmdlines


def test_nested_userns_and_remount(backend: Backend) -> None:
    code = (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "print('unshare', libc.unshare(0x10000000), ctypes.get_errno())\n"  # CLONE_NEWUSER
        "print('unshare_ns', libc.unshare(0x00020000), ctypes.get_errno())\n"  # CLONE_NEWNS
        "rc = libc.mount(b'none', b'/usr', None, 32 | 4096, None)\n"  # MS_REMOUNT | MS_BIND
        "print('mount', rc, ctypes.get_errno())\n"
        "print('write', os.access('/usr', os.W_OK))\n"
    )
    r = attack(backend, code)
    assert r.ok, r
    lines = dict((ln.split()[0], ln.split()[1:]) for ln in r.text.splitlines())
    assert lines["unshare"][0] == "-1" and lines["unshare_ns"][0] == "-1"
    assert lines["mount"][0] == "-1"
    assert lines["write"] == ["False"]


def _attack_host_listener(backend: Backend, family: int, address: object, code_for: Callable[[object], str]) -> object:
    """Listen on a host socket, run the attack code built from its address, assert no connection arrived."""
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(4)
    listener.setblocking(False)
    try:
        r = attack(backend, code_for(listener.getsockname()))
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
    return r


def test_tcp_to_host_port(backend: Backend) -> None:
    r = _attack_host_listener(
        backend,
        socket.AF_INET,
        ("127.0.0.1", 0),
        lambda addr: (
            "import socket\n"
            "try:\n"
            f"    s = socket.create_connection(('127.0.0.1', {addr[1]}), timeout=1)\n"
            "    print('CONNECTED', s.recv(100))\n"
            "except OSError as e:\n    print(type(e).__name__)\n"
        ),
    )
    assert r.ok, r
    assert b"CONNECTED" not in r.stdout
    assert r.text.strip() in ("ConnectionRefusedError", "OSError", "TimeoutError"), r


def test_host_abstract_unix_socket(backend: Backend) -> None:
    name = "\0toolgym-test-" + secrets.token_hex(6)
    r = _attack_host_listener(
        backend,
        socket.AF_UNIX,
        name,
        lambda _addr: (
            "import socket\n"
            "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
            "try:\n"
            f"    s.connect({name!r})\n    print('CONNECTED')\n"
            "except OSError as e:\n    print(type(e).__name__)\n"
        ),
    )
    assert r.ok, r
    assert r.text.strip() == "ConnectionRefusedError", r


def test_dns(backend: Backend) -> None:
    code = (
        "import socket\n"
        "try:\n    print('RESOLVED', socket.getaddrinfo('pypi.org', 443))\n"
        "except OSError as e:\n    print(type(e).__name__)\n"
        "try:\n"
        "    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "    u.sendto(b'x', ('1.1.1.1', 53))\n    print('SENT')\n"
        "except OSError as e:\n    print(type(e).__name__)\n"
    )
    r = attack(backend, code)
    assert r.ok, r
    assert b"RESOLVED" not in r.stdout and b"SENT" not in r.stdout, r


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_gigabyte_of_output(backend: Backend, stream: str) -> None:
    code = f"import sys\nchunk = b'x' * (1 << 20)\nfor _ in range(1024):\n    sys.{stream}.buffer.write(chunk)\n"
    start = time.monotonic()
    r = attack(backend, code)
    assert r.status is ExecStatus.OUTPUT_LIMIT, r
    data = getattr(r, stream)
    assert len(data) == LIMITS.output_bytes and getattr(r, f"{stream}_truncated")
    assert time.monotonic() - start < 15


def test_daemon_cannot_write_after_return(backend: Backend) -> None:
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        for fd in range(3):\n            os.close(fd)\n"
        "        time.sleep(1.5)\n"
        "        open('/workspace/daemon.txt', 'w').write('late')\n"
        "    os._exit(0)\n"
        "print('parent done')\n"
    )
    with backend.open(limits=LIMITS) as session:
        r = session.exec_code(code)
        assert r.ok and r.stdout == b"parent done\n", r
        assert r.wall_ms < 1500, "the call waited for the daemon"
        time.sleep(2.5)
        assert "daemon.txt" not in session.listdir(), "a daemon outlived its call"
        assert session.exec_code("print('next')").stdout == b"next\n"


def test_kill_pid_one(backend: Backend) -> None:
    with backend.open(limits=LIMITS) as session:
        r = session.exec_code(
            "import os, signal\nos.kill(1, signal.SIGKILL)\nimport time\ntime.sleep(0.2)\nprint('still here')"
        )
        assert r.ok and r.stdout == b"still here\n", r
        assert session.exec_code("print('next')").stdout == b"next\n"


def test_kill_everything(backend: Backend) -> None:
    with backend.open(limits=LIMITS) as session:
        r = session.exec_code("import os, signal\nos.kill(-1, signal.SIGKILL)\nprint('unreachable?')")
        assert r.status in (ExecStatus.KILLED, ExecStatus.OK), r
        assert session.exec_code("print('next')").stdout == b"next\n"
    # Killing the in-sandbox helper makes bwrap exit without reaping its init; the init is
    # reparented to this process (a child subreaper), which must reap it.
    assert _our_zombies() == []
