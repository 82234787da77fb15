"""Build the docker backend's base image offline, from files already on this host.

No registry is reachable from the machines toolgym targets (sandbox.md §7), so the image is
assembled rather than pulled: a root filesystem holding the host's Python (the interpreter, its
standard library without tests, GUI and installer packages, its extension modules), every shared
library ``ldd`` lists for those, the dynamic loader, ``dash`` as ``/bin/sh``, the merged-usr
symlinks (``/bin -> usr/bin`` ...), and a two-line ``/etc/passwd``. It is tarred and handed to the
engine's ``import`` endpoint (``docker import``), with ``USER 1000:1000`` and ``WORKDIR
/workspace``. About 60 MB; a second of work. ``docker build FROM`` this image then works offline
for environments that need more.

**numpy and pandas.** The image carries the same analysis libraries as the local backend: the
project's dedicated environment (:mod:`.pylibs`, built for this same interpreter) is copied to
:data:`~toolgym.sandbox.pylibs.MOUNT` (``/opt/toolgym/libs``), owned by root, without write bits,
on a root filesystem the containers mount read-only. It goes on the interpreter's path the way the
local backend puts it on the kernel's: appended after the standard library (a ``.pth`` file in
the system ``dist-packages``, so every ``python3 -I`` in the image finds it; ``-S`` programs such
as the sandbox's own helper do not), so nothing of the standard library is shadowed. The libraries
are required unless ``--no-libs`` says otherwise (a silently poorer image would fail ``code``
tasks only later), and the image records what it holds in the label :data:`LIBS_LABEL`; an
existing image whose label differs from the installed libraries is rebuilt.

Run it::

    python -m toolgym.sandbox.build_image            # uses DOCKER_HOST
    python -m toolgym.sandbox.build_image --force --tag toolgym/sandbox:py3.11
    python -m toolgym.sandbox.build_image --rootfs-only /tmp/rootfs   # no engine needed
    python -m toolgym.sandbox.build_image --no-libs  # standard library only
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

from . import pylibs

DEFAULT_IMAGE = "toolgym/sandbox:py3.11"
#: The image label naming the analysis libraries it carries (:func:`libs_label`); absent: none.
LIBS_LABEL = "toolgym.libs"
#: Puts the libraries on ``sys.path`` of every interpreter started without ``-S``.
_LIBS_PTH = "/usr/lib/python3/dist-packages/toolgym-libs.pth"
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


def libs_label(libs: Path) -> str:
    """What a libraries directory holds, as the image label records it: its distributions.

    Args:
        libs: An installed :mod:`.pylibs` directory.

    Returns:
        The sorted ``name-version`` of every ``*.dist-info`` in it, space-separated, e.g.
        ``"numpy-2.2.6 pandas-2.3.3 ..."``.
    """
    return " ".join(sorted(p.name.removesuffix(".dist-info") for p in libs.glob("*.dist-info")))


def _add_libs(fs: _Rootfs, libs: Path) -> None:
    """Copy the libraries to ``/opt/toolgym/libs`` read-only and on the path, with what they link to."""
    target = fs.dest(Path(pylibs.MOUNT))
    shutil.copytree(libs, target, symlinks=True)
    for root, dirs, files in os.walk(target):
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode & 0o555 | 0o444)
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o555)
    target.chmod(0o555)
    fs.write(_LIBS_PTH, pylibs.MOUNT + "\n", mode=0o444)
    # Their extension modules need host libraries that wheels do not bundle (libstdc++, libm...).
    for lib in sorted(_shared_libraries(sorted(libs.rglob("*.so*")))):
        if not Path(os.path.realpath(lib)).is_relative_to(libs.resolve()):  # bundled ones came with the copy
            fs.add(lib)


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


def build_rootfs(dest: Path, python: str = PYTHON, libs: Path | None = None) -> Path:
    """Assemble the base image's root filesystem in ``dest`` (created; must not exist).

    Args:
        dest: Target directory.
        python: The host interpreter to copy (its stdlib is found from its version).
        libs: An installed :mod:`.pylibs` directory (built for ``python``) to carry at
            ``/opt/toolgym/libs``; ``None``: the standard library only.

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
    if libs is not None:
        _add_libs(fs, libs)
    return dest


def _owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Every file of the image belongs to root, whoever built it (the sandbox user owns nothing)."""
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _tar(rootfs: Path, out: Path) -> None:
    with tarfile.open(out, "w") as tar:
        for path in sorted(rootfs.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(rootfs)), recursive=False, filter=_owned_by_root)


def image_libs(with_libs: bool = True) -> Path | None:
    """The libraries directory an image should carry: the installed :mod:`.pylibs`, or None.

    Raises:
        SandboxError: ``with_libs`` and the libraries are not installed.
    """
    if not with_libs:
        return None
    libs = pylibs.find()
    if libs is None:
        raise SandboxError(
            "the sandbox's numpy/pandas are not installed, and the image should carry them: run "
            "`python -m toolgym.sandbox.pylibs` first (or build with --no-libs for the standard library only)"
        )
    return libs


def build_base_image(
    client: Any | None = None, tag: str = DEFAULT_IMAGE, force: bool = False, with_libs: bool = True
) -> str:
    """Build (or find) the base image and return its id.

    Args:
        client: A ``docker.DockerClient``; ``None`` uses ``docker.from_env()`` (``DOCKER_HOST``).
        tag: Image reference to create.
        force: Rebuild even if ``tag`` exists with the wanted libraries.
        with_libs: Carry the installed :mod:`.pylibs` (numpy, pandas) at ``/opt/toolgym/libs``.

    Returns:
        The image id.

    Raises:
        SandboxError: If the engine is unreachable or refuses the import, or ``with_libs`` and
            the libraries are not installed.
    """
    import docker
    import docker.errors

    libs = image_libs(with_libs)
    label = libs_label(libs) if libs is not None else ""
    try:
        client = client or docker.from_env(timeout=120)
        if not force:
            try:
                image = client.images.get(tag)
                if ((image.attrs.get("Config") or {}).get("Labels") or {}).get(LIBS_LABEL, "") == label:
                    return str(image.id)
            except docker.errors.ImageNotFound:
                pass
        repository, _, version = tag.partition(":")
        with tempfile.TemporaryDirectory(prefix="toolgym-image-") as tmp:
            rootfs = build_rootfs(Path(tmp) / "rootfs", libs=libs)
            archive = Path(tmp) / "rootfs.tar"
            _tar(rootfs, archive)
            changes = [
                "USER 1000:1000",
                "WORKDIR /workspace",
                "ENV PATH=/usr/local/bin:/usr/bin:/bin",
                "ENV LANG=C.UTF-8",
                'CMD ["/usr/bin/python3"]',
            ]
            if label:
                changes.append(f'LABEL {LIBS_LABEL}="{label}"')
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
    parser.add_argument("--no-libs", action="store_true", help="leave out numpy and pandas (sandbox/pylibs.py)")
    args = parser.parse_args(argv)
    try:
        if args.rootfs_only:
            build_rootfs(args.rootfs_only, libs=image_libs(not args.no_libs))
            print(args.rootfs_only)
            return 0
        client = None
        if args.base_url:
            import docker

            client = docker.DockerClient(base_url=args.base_url, timeout=120)
        print(build_base_image(client, args.tag, args.force, with_libs=not args.no_libs))
    except SandboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
