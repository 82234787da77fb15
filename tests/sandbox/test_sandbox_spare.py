"""Spare sandboxes of the local backend: launched ahead, handed out fresh, never shared or leaked."""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator

import pytest

from toolgym.sandbox import Limits, get_backend
from toolgym.sandbox.local import LocalBackend, LocalSession
from toolgym.sandbox.proc import SandboxProcess

SMALL = Limits(wall_s=5.0, output_bytes=4096, memory_bytes=256 << 20, workspace_bytes=8 << 20)


@pytest.fixture
def backend() -> Iterator[LocalBackend]:
    b = get_backend("local", spare_kernels=1)
    assert isinstance(b, LocalBackend)
    yield b
    LocalBackend._close_spare_of(weakref.ref(b))


def test_open_hands_out_the_spare_fresh_and_launches_the_next(backend: LocalBackend) -> None:
    first = backend.open({"a.txt": "first"}, SMALL)
    spare = backend._spare
    assert spare is not None and spare is not first and spare._spare_kernel is not None
    k1 = first.python()
    assert k1.run("secret = 41; open('a.txt').read()").text.strip() == "'first'"
    k1.run("open('/tmp/left', 'w').write('x'); open('dropped.txt', 'w').write('x')")
    first.close()

    second = backend.open({"b.txt": "second"}, SMALL)
    assert second is spare  # the sandbox launched during the first episode
    assert backend._spare is not None and backend._spare is not second  # and the next is launched
    k2 = second.python()
    assert k2 is not None and second._spare_kernel is None
    r = k2.run(
        "import os; print(sorted(os.listdir('.')), open('b.txt').read(), 'secret' in globals(), "
        "os.path.exists('/tmp/left'))"
    )
    assert r.text.strip() == "['b.txt'] second False False", r
    assert second.python() is not k2  # only the first call claims the launched kernel
    second.close()


def test_spare_with_other_limits_is_closed_not_used(backend: LocalBackend) -> None:
    backend.open(limits=SMALL).close()
    spare = backend._spare
    assert spare is not None
    other = Limits(wall_s=3.0)
    s = backend.open({"x.txt": "x"}, other)
    assert s is not spare and spare.closed
    assert not spare.workspace.path.exists()  # its workspace is gone
    assert backend._spare is not None and backend._spare.limits == other
    assert s.python().run("print(open('x.txt').read())").text.strip() == "x"
    s.close()


def _launched_spare(backend: LocalBackend) -> tuple[LocalSession, SandboxProcess | None]:
    """Open and close one session; return the spare it launched and its kernel's process."""
    backend.open(limits=SMALL).close()
    spare = backend._spare
    assert spare is not None and spare._spare_kernel is not None
    return spare, spare._spare_kernel._proc


def test_dead_spare_is_replaced(backend: LocalBackend) -> None:
    spare, proc = _launched_spare(backend)
    assert proc is not None
    proc.kill()  # e.g. killed from outside while it waited
    s = backend.open(limits=SMALL)
    assert s is not spare and spare.closed
    assert s.python().run("print(6 * 7)").text.strip() == "42"
    s.close()


def test_closing_an_unclaimed_launched_kernel_kills_its_sandbox(backend: LocalBackend) -> None:
    spare, proc = _launched_spare(backend)
    assert proc is not None and not proc.ready  # launched, never waited for
    bwrap = proc._proc
    assert bwrap is not None
    LocalBackend._close_spare_of(weakref.ref(backend))
    assert backend._spare is None and spare.closed
    assert bwrap.poll() is not None  # bwrap is gone (and with it the pid namespace)
    assert not spare.workspace.path.exists()


def test_a_forked_child_does_not_close_the_parents_sandboxes(backend: LocalBackend) -> None:
    s = backend.open({"keep.txt": "kept"}, SMALL)
    k = s.python()
    assert k.run("v = 1").ok
    pid = os.fork()
    if pid == 0:  # the child drops its copies of the session and the backend, then exits normally
        code = 0
        try:
            del s, k
            LocalBackend._close_spare_of(weakref.ref(backend))
            import gc

            gc.collect()
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert k.run("print(v + 1)").text.strip() == "2"  # the parent's kernel survived
    assert s.get("keep.txt") == b"kept"
    assert backend._spare is not None and not backend._spare.closed
    s.close()
