"""The docker backend against a real engine (marker ``docker``), and the offline image builder.

The engine tests skip, saying why, when no engine answers (``.ci/docker.sh start`` starts one).
The rootfs tests need no engine: they run the assembled rootfs under bubblewrap.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from toolgym.errors import ConfigError
from toolgym.sandbox import ExecStatus, Limits, get_backend, pylibs
from toolgym.sandbox.build_image import DEFAULT_IMAGE, LIBS_LABEL, build_base_image, build_rootfs, libs_label
from toolgym.sandbox.container import LABEL, DockerBackend, docker_unavailable_reason
from toolgym.sandbox.judge import judge_session
from toolgym.sandbox.local import find_bwrap

MiB = 1 << 20
SMALL = Limits(wall_s=3.0, memory_bytes=256 * MiB, max_processes=32, output_bytes=8192, workspace_bytes=16 * MiB)


def _in_rootfs(rootfs: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``python3 -I -c code`` with ``rootfs`` as ``/``, under bubblewrap (no engine needed)."""
    bwrap = str(find_bwrap())
    argv = [bwrap, "--unshare-all", "--ro-bind", str(rootfs), "/", "--proc", "/proc", "--dev", "/dev"]
    argv += ["--tmpfs", "/tmp", "/usr/bin/python3", "-I", "-c", code]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})


def test_rootfs_is_self_contained(tmp_path: Path) -> None:
    rootfs = build_rootfs(tmp_path / "rootfs")
    assert (rootfs / "usr/bin/python3.11").is_file() and (rootfs / "bin").is_symlink()
    assert not (rootfs / "usr/lib/python3.11/test").exists()
    assert "sandbox:x:1000" in (rootfs / "etc/passwd").read_text()
    assert not (rootfs / "opt").exists()  # no libraries unless asked for
    code = (
        "import json, sqlite3, ssl, ctypes, decimal, subprocess\n"
        "print(subprocess.run(['sh', '-c', 'echo sh'], capture_output=True).stdout)"
    )
    out = _in_rootfs(rootfs, code)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "b'sh\\n'\n"


def test_rootfs_carries_numpy_and_pandas_on_the_path_without_write_bits(tmp_path: Path) -> None:
    libs = pylibs.find()
    if libs is None:
        pytest.skip("the sandbox libraries are not installed (python -m toolgym.sandbox.pylibs)")
    rootfs = build_rootfs(tmp_path / "rootfs", libs=libs)
    target = rootfs / "opt/toolgym/libs"
    modes = [p.stat().st_mode for p in [target, *target.rglob("*")] if not p.is_symlink()]
    assert modes and not any(m & 0o222 for m in modes)  # nothing writable, even by its owner
    assert libs_label(libs).startswith("numpy-") and " pandas-" in libs_label(libs)
    code = (
        "import sys, numpy, pandas\n"
        "print(numpy.__file__, pandas.DataFrame({'a': [1, 2]}).a.sum())\n"
        "print(sys.path.index('/opt/toolgym/libs') > sys.path.index('/usr/lib/python3.11'))"
    )
    out = _in_rootfs(rootfs, code)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "/opt/toolgym/libs/numpy/__init__.py 3\nTrue\n"  # after the standard library


@pytest.fixture(scope="module")
def backend() -> Iterator[DockerBackend]:
    reason = os.environ.get("TOOLGYM_DOCKER_SKIP_REASON") or docker_unavailable_reason()
    if reason:
        pytest.skip(f"docker backend: {reason}")
    b = get_backend("docker")
    assert isinstance(b, DockerBackend)
    yield b
    b.close()


def _ours(backend: DockerBackend) -> tuple[list[object], list[object]]:
    filters = {"label": "toolgym.sandbox"}
    return backend.client.containers.list(all=True, filters=filters), backend.client.volumes.list(filters=filters)


@pytest.mark.docker
def test_image_build_is_idempotent(backend: DockerBackend) -> None:
    with_libs = pylibs.find() is not None
    first = build_base_image(backend.client, DEFAULT_IMAGE, with_libs=with_libs)
    assert build_base_image(backend.client, DEFAULT_IMAGE, with_libs=with_libs) == first
    config = backend.client.images.get(DEFAULT_IMAGE).attrs["Config"]
    assert config["User"] == "1000:1000"
    libs = pylibs.find()
    assert (config.get("Labels") or {}).get(LIBS_LABEL, "") == (libs_label(libs) if libs else "")


@pytest.mark.docker
def test_image_carries_numpy_and_pandas_read_only(backend: DockerBackend) -> None:
    """A ``code`` task that imports pandas works under docker as under the local backend."""
    if pylibs.find() is None:
        pytest.skip("the sandbox libraries are not installed (python -m toolgym.sandbox.pylibs)")
    code = (
        "import errno, numpy, pandas\n"  # no sys.path edit: the image puts them on the path
        "print(numpy.__file__, pandas.DataFrame({'a': [1, 2]}).a.sum())\n"
        "for path in ('/opt/toolgym/libs/x.py', numpy.__file__):\n"
        "    try:\n        open(path, 'a').write('x')\n        print(path, 'WROTE')\n"
        "    except OSError as e:\n        print(path, errno.errorcode[e.errno])\n"
    )
    with backend.open(limits=Limits(wall_s=120, memory_bytes=512 * MiB, output_bytes=8192)) as s:
        r = s.exec_code(code)
    assert r.ok, r
    first, *writes = r.text.splitlines()
    assert first == "/opt/toolgym/libs/numpy/__init__.py 3", r
    assert len(writes) == 2 and all(line.split()[1] in ("EROFS", "EACCES") for line in writes), r


@pytest.mark.docker
def test_container_hardening(backend: DockerBackend) -> None:
    with backend.open(limits=SMALL) as s:
        s._container.reload()
        host = s._container.attrs["HostConfig"]
        assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
        assert host["Memory"] == host["MemorySwap"] == 256 * MiB and host["PidsLimit"] == 32
        assert {u["Name"] for u in host["Ulimits"]} == {"nofile", "nproc", "fsize", "core"}
        assert s._container.attrs["Config"]["User"] == "1000:1000"
        r = s.exec_code("import os; print(os.getuid(), os.getgid())")
        assert r.stdout == b"1000 1000\n"
    caps = backend.capabilities()
    assert caps.memory == "cgroup" and caps.custom_image and not caps.stateful_python


@pytest.mark.docker
def test_exec_and_files(backend: DockerBackend) -> None:
    with backend.open({"data/in.txt": "hello\n"}, SMALL) as s:
        r = s.exec([s.python_path, "-c", "print(open('in.txt').read(), end='')"], cwd="data")
        assert r.ok and r.stdout == b"hello\n"
        big = os.urandom(300_000)  # several env chunks
        r = s.exec_code("import sys, hashlib; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())", stdin=big)
        assert r.ok and r.text.strip() == hashlib.sha256(big).hexdigest(), r
        s.put("a/b.txt", b"deep")
        assert s.get("a/b.txt") == b"deep" and s.listdir() == ["a/", "data/"] and s.listdir("a") == ["b.txt"]
        s.exec_code("import os; open('made.txt', 'w').write('m'); os.symlink('/etc/passwd', 'link')")
        with pytest.raises(FileNotFoundError):
            s.get("link")
        with pytest.raises(FileNotFoundError):
            s.get("a")
        snap = s.snapshot()
        assert snap == {"data/in.txt": b"hello\n", "a/b.txt": b"deep", "made.txt": b"m"}
        with pytest.raises(ConfigError):
            s.put("../x", "x")
        with pytest.raises(ConfigError):
            s.exec_code("pass", stdin=b"x" * 2_000_000)


@pytest.mark.docker
def test_workspace_survives_a_limit_kill(backend: DockerBackend) -> None:
    with backend.open({"keep.txt": "kept"}, SMALL) as s:
        first = s._container.id
        r = s.exec_code("import time; time.sleep(30)", timeout=1)
        assert r.status is ExecStatus.TIMEOUT and r.state_lost
        assert s._container.id != first
        r = s.exec_code("print(open('keep.txt').read())")
        assert r.ok and r.stdout == b"kept\n", r


@pytest.mark.docker
def test_containers_and_volumes_are_always_removed(backend: DockerBackend) -> None:
    before = tuple(len(x) for x in _ours(backend))
    with pytest.raises(ConfigError):
        backend.open({"../escape": "x"}, SMALL)
    s = backend.open(limits=SMALL)
    s.exec_code("print(1)", timeout=1)
    s.close()
    s.close()
    assert tuple(len(x) for x in _ours(backend)) == before
    assert LABEL == {"toolgym.sandbox": "1"}


@pytest.mark.docker
def test_judge_on_docker(backend: DockerBackend) -> None:
    agent = backend.open({"sol.py": "def add(a, b):\n    return a + b\n"}, SMALL)
    judge = (
        "import subprocess, sys\n"
        "r = subprocess.run([sys.executable, '-c', 'import sol; print(sol.add(2, 3))'], capture_output=True,"
        " text=True, cwd='/workspace')\n"
        "emit_verdict(1.0 if r.stdout.strip() == '5' else 0.0)\n"
    )
    run = judge_session(backend, agent, judge, limits=SMALL)
    assert run.passed and agent.closed, run
