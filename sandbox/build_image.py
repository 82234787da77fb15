"""Build the docker backend's base image offline, from files already on this host.

No registry is reachable from the machines toolgym targets (sandbox.md §7), so the image is
assembled rather than pulled: a root filesystem holding the host's Python (the interpreter, its
standard library without tests, GUI and installer packages, its extension modules), every shared
library ``ldd`` lists for those, the dynamic loader, ``dash`` as ``/bin/sh``, the merged-usr
symlinks (``/bin -> usr/bin`` ...), and a two-line ``/etc/passwd``. It is tarred and handed to the
engine's ``import`` endpoint (``docker import``), with ``USER 1000:1000`` and ``WORKDIR
/workspace``. About 60 MB; a second of work. ``docker build FROM`` this image then works offline
for environments that need more.

Run it::

    python -m toolgym.sandbox.build_image            # uses DOCKER_HOST
    python -m toolgym.sandbox.build_image --force --tag toolgym/sandbox:py3.11
    python -m toolgym.sandbox.build_image --rootfs-only /tmp/rootfs   # no engine needed
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from toolgym.errors import SandboxError

DEFAULT_IMAGE = "toolgym/sandbox:py3.11"
PYTHON = "/usr/bin/python3.11"
# Parts of the standard library no sandboxed program needs: tests, GUI, installers, the static
# libpython, byte-code of the excluded parts.
_STDLIB_SKIP = {"test", "tests", "idle_test", "idlelib", "tkinter", "turtledemo", "ensurepip"}
_STDLIB_SKIP_PREFIX = ("config-",)
_EXTRA_FILES = ("/usr/bin/dash", "/usr/bin/sh")
_LDD_PATH = re.compile(r"(/\S+)")


class _Rootfs:
    """A root filesystem being assembled under ``root``, copying host paths with their links."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def dest(self, host: Path) -> Path:
        return self.root / host.relative_to("/")

    def add(self, host_path: str, depth: int = 0) -> None:
        """Copy ``host_path`` to the same path in the rootfs, recreating every symlink on the way.

        For ``/lib64/ld-linux-x86-64.so.2`` this creates ``lib64 -> usr/lib64``, the loader's own
        symlink, and copies the file it finally points to.
        """
        if depth > 40:
            raise SandboxError(f"Too many symlinks resolving {host_path}.")
        parts = Path(host_path).parts
        cur = Path("/")
        for i, part in enumerate(parts[1:], start=1):
            nxt = cur / part
            if nxt.is_symlink():
                target = os.readlink(nxt)
                dest = self.dest(nxt)
                if not os.path.lexists(dest):
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(target, dest)
                base = Path(target) if os.path.isabs(target) else cur / target
                rest = Path(os.path.normpath(base)).joinpath(*parts[i + 1 :])
                self.add(str(rest), depth + 1)
                return
            cur = nxt
        dest = self.dest(cur)
        if cur.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        elif not os.path.lexists(dest):
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(cur, dest)

    def add_stdlib(self, stdlib: Path) -> None:
        def ignore(directory: str, names: list[str]) -> set[str]:
            return {n for n in names if n in _STDLIB_SKIP or n.startswith(_STDLIB_SKIP_PREFIX)}

        shutil.copytree(stdlib, self.dest(stdlib), symlinks=True, ignore=ignore)

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        dest = self.dest(Path(path))
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
        dest.chmod(mode)


def _shared_libraries(binaries: list[Path]) -> set[str]:
    """Absolute paths of every library ``ldd`` reports for ``binaries`` (loader included)."""
    libs: set[str] = set()
    for binary in binaries:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if "=>" in line:
                line = line.split("=>", 1)[1]
            match = _LDD_PATH.search(line)
            if match:
                libs.add(match.group(1))
    return libs


def build_rootfs(dest: Path, python: str = PYTHON) -> Path:
    """Assemble the base image's root filesystem in ``dest`` (created; must not exist).

    Args:
        dest: Target directory.
        python: The host interpreter to copy (its stdlib is found from its version).

    Returns:
        ``dest``.

    Raises:
        SandboxError: If the interpreter or ``ldd`` is missing.
    """
    binary = Path(python)
    if not binary.exists() or shutil.which("ldd") is None:
        raise SandboxError(f"Building the image needs {python} and ldd on the host.")
    version = re.search(r"python(\d+\.\d+)", binary.resolve().name)
    if version is None:
        raise SandboxError(f"Cannot tell the version of {python}.")
    ver = version.group(1)
    stdlib = Path(f"/usr/lib/python{ver}")
    dest.mkdir(parents=True)
    fs = _Rootfs(dest)
    for name in ("bin", "sbin", "lib", "lib64"):
        host = Path("/") / name
        if host.is_symlink():
            os.symlink(os.readlink(host), dest / name)
    fs.add(str(binary))
    fs.add_stdlib(stdlib)
    if Path(f"/etc/python{ver}").is_dir():
        shutil.copytree(f"/etc/python{ver}", fs.dest(Path(f"/etc/python{ver}")), symlinks=True)
    (dest / "usr/bin/python3").unlink(missing_ok=True)
    os.symlink(f"python{ver}", dest / "usr/bin/python3")
    extensions = sorted((stdlib / "lib-dynload").glob("*.so"))
    for extra in _EXTRA_FILES:
        if os.path.lexists(extra):
            fs.add(extra)
    for lib in sorted(_shared_libraries([binary, *extensions, Path("/usr/bin/dash")])):
        fs.add(lib)
    fs.write("/etc/passwd", "root:x:0:0:root:/root:/usr/sbin/nologin\n"
             "sandbox:x:1000:1000:sandbox:/tmp:/usr/sbin/nologin\n")  # fmt: skip
    fs.write("/etc/group", "root:x:0:\nsandbox:x:1000:\n")
    for d in ("tmp", "workspace", "proc", "dev", "sys", "etc", "root"):
        (dest / d).mkdir(exist_ok=True)
    (dest / "tmp").chmod(0o1777)
    return dest


def _tar(rootfs: Path, out: Path) -> None:
    with tarfile.open(out, "w") as tar:
        for path in sorted(rootfs.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(rootfs)), recursive=False)


def build_base_image(client: Any | None = None, tag: str = DEFAULT_IMAGE, force: bool = False) -> str:
    """Build (or find) the base image and return its id.

    Args:
        client: A ``docker.DockerClient``; ``None`` uses ``docker.from_env()`` (``DOCKER_HOST``).
        tag: Image reference to create.
        force: Rebuild even if ``tag`` exists.

    Returns:
        The image id.

    Raises:
        SandboxError: If the engine is unreachable or refuses the import.
    """
    import docker
    import docker.errors

    try:
        client = client or docker.from_env(timeout=120)
        if not force:
            try:
                return str(client.images.get(tag).id)
            except docker.errors.ImageNotFound:
                pass
        repository, _, version = tag.partition(":")
        with tempfile.TemporaryDirectory(prefix="toolgym-image-") as tmp:
            rootfs = build_rootfs(Path(tmp) / "rootfs")
            archive = Path(tmp) / "rootfs.tar"
            _tar(rootfs, archive)
            changes = [
                "USER 1000:1000",
                "WORKDIR /workspace",
                "ENV PATH=/usr/local/bin:/usr/bin:/bin",
                "ENV LANG=C.UTF-8",
                'CMD ["/usr/bin/python3"]',
            ]
            with open(archive, "rb") as f:
                client.api.import_image(src=f, repository=repository, tag=version or "latest", changes=changes)
        return str(client.images.get(tag).id)
    except docker.errors.DockerException as exc:
        raise SandboxError(f"Cannot build the base image {tag}: {exc}.") from exc


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python -m toolgym.sandbox.build_image``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default=DEFAULT_IMAGE, help="image reference to create")
    parser.add_argument("--force", action="store_true", help="rebuild if it exists")
    parser.add_argument("--base-url", help="Docker API socket (default: DOCKER_HOST)")
    parser.add_argument("--rootfs-only", type=Path, help="only assemble the rootfs here")
    args = parser.parse_args(argv)
    try:
        if args.rootfs_only:
            build_rootfs(args.rootfs_only)
            print(args.rootfs_only)
            return 0
        client = None
        if args.base_url:
            import docker

            client = docker.DockerClient(base_url=args.base_url, timeout=120)
        print(build_base_image(client, args.tag, args.force))
    except SandboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
