"""Forking kernels (``session.python(forks=True)``): ``restart`` forks a fresh interpreter in the
same sandbox, which keeps nothing of the previous one; a kernel that dies still reads as dead."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from toolgym.sandbox import ExecStatus, Limits, get_backend
from toolgym.sandbox.kernel import LocalKernel
from toolgym.sandbox.local import LocalBackend, LocalSession

SMALL = Limits(wall_s=5.0, output_bytes=4096, memory_bytes=256 << 20, workspace_bytes=8 << 20)


@pytest.fixture(scope="module")
def session() -> Iterator[LocalSession]:
    backend = get_backend("local")
    assert isinstance(backend, LocalBackend)
    with backend.open({"data.txt": "x"}, SMALL) as s:
        yield s


def kernel_of(session: LocalSession) -> LocalKernel:
    k = session.python(forks=True)
    assert isinstance(k, LocalKernel) and k.forks
    return k


def test_renewed_interpreter_keeps_nothing_of_the_previous_one(session: LocalSession) -> None:
    k = kernel_of(session)
    try:
        r = k.run(
            "import os, subprocess, json, sys\n"
            "secret = 41\n"
            "sys.path.insert(0, '/tmp'); os.environ['LEAK'] = '1'\n"
            "open('/tmp/left', 'w').write('x'); open('/dev/shm/left', 'w').write('x')\n"
            "daemon = subprocess.Popen(['sleep', '60'])\n"
            "os.chdir('/tmp')\n"
            "print(os.getpid())"
        )
        assert r.status is ExecStatus.OK, r.stderr
        first_pid = int(r.text.split()[-1])
        proc = k._proc
        k.restart()
        assert k._proc is proc  # the same sandbox: no new namespaces, no new interpreter start-up
        r = k.run(
            "import os, sys\n"
            "print(os.getpid(), os.getcwd(), os.listdir('/tmp'), os.listdir('/dev/shm'))\n"
            "print('json' in sys.modules, 'subprocess' in sys.modules, '/tmp' in sys.path, 'LEAK' in os.environ)\n"
            "print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) > 1))\n"
            "print('secret' in globals(), open('data.txt').read())"
        )
        assert r.status is ExecStatus.OK, r.stderr
        pid, cwd, tmp, shm, *_ = r.text.split("\n")[0].split(" ", 4)
        lines = r.text.strip().split("\n")
        assert int(pid) != first_pid and cwd == "/workspace"
        assert lines[0].endswith("[] []")  # /tmp and /dev/shm emptied
        assert lines[1] == "False False False False"  # imports, sys.path and environment are the zygote's
        assert len(eval(lines[2])) == 2  # the zygote and this interpreter: the daemon was killed
        assert lines[3] == "False x"
    finally:
        k.close()


def test_restart_of_an_unused_kernel_keeps_it_and_a_dead_child_reads_as_dead(session: LocalSession) -> None:
    k = kernel_of(session)
    try:
        assert k.run("x = 1").status is ExecStatus.OK
        k.restart()
        proc = k._proc
        k.restart()  # nothing ran since: already fresh
        assert k._proc is proc
        r = k.run("import os; os._exit(3)")
        assert r.status is ExecStatus.KILLED and r.state_lost  # as without forking: the sandbox is gone
        assert k.run("print('x' in globals())").text.strip() == "False"  # a new sandbox next
        r = k.run("import os, signal; os.kill(os.getpid(), signal.SIGXCPU)")
        assert r.status is ExecStatus.TIMEOUT and "SIGXCPU" in r.detail  # the zygote ends as its child did
    finally:
        k.close()


def test_plain_kernels_still_restart_by_a_new_sandbox(session: LocalSession) -> None:
    k = session.python()
    assert isinstance(k, LocalKernel) and not k.forks
    try:
        k.run("y = 2")
        k.restart()
        assert k._proc is None
        assert k.run("print('y' in globals())").text.strip() == "False"
    finally:
        k.close()


def test_clear_empties_the_workspace_whatever_it_holds(session: LocalSession) -> None:
    k = session.python()
    try:
        k.run("import os; os.makedirs('d/e'); open('d/e/f', 'w').write('1'); os.chmod('d', 0); os.symlink('/etc', 'l')")
        session.clear()
        assert session.listdir() == []
        session.put("data.txt", "x")  # usable again
        assert session.get("data.txt") == b"x"
    finally:
        k.close()
