"""Tar archives for the docker backend's workspace files (``put_archive`` / ``get_archive``).

The engine moves files in and out of a container as tar streams. Building and reading them is
kept here, apart from container lifecycle, with the rules that make it safe: every path is
checked by :func:`~toolgym.sandbox.base.clean_relpath` before it goes into an archive, files
land owned by the sandbox user, and only regular-file members are ever read back (a symlink the
agent planted is skipped, never followed; the engine resolves paths inside the container anyway).
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Mapping

from toolgym.errors import ConfigError, SandboxError

from .base import clean_relpath


def build_tar(files: Mapping[str, bytes | str], uid: int, gid: int) -> bytes:
    """A tar holding ``files`` (workspace-relative paths) and their parent directories.

    Raises:
        ConfigError: If a path leaves the workspace or names its root.
    """
    buf = io.BytesIO()
    seen: set[str] = set()
    now = int(time.time())
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, content in files.items():
            rel = clean_relpath(path)
            if rel == ".":
                raise ConfigError("Cannot write to the workspace root; give a file name.")
            parts = rel.split("/")
            for i in range(1, len(parts)):
                directory = "/".join(parts[:i])
                if directory not in seen:
                    seen.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type, info.mode, info.uid, info.gid, info.mtime = tarfile.DIRTYPE, 0o755, uid, gid, now
                    tar.addfile(info)
            blob = content.encode() if isinstance(content, str) else bytes(content)
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.uid, info.gid, info.mtime = len(blob), 0o644, uid, gid, now
            tar.addfile(info, io.BytesIO(blob))
    return buf.getvalue()


def first_regular_file(data: bytes, limit: int) -> bytes | None:
    """The content of the first regular-file member of a tar, at most ``limit`` bytes."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        for member in tar.getmembers():
            f = tar.extractfile(member) if member.isreg() else None
            if f is not None:
                return f.read(limit)
    return None


def regular_files(data: bytes, limit: int) -> dict[str, bytes]:
    """Every regular-file member of a tar of a directory, keyed by path below that directory.

    Raises:
        SandboxError: If the files together exceed ``limit`` bytes.
    """
    files: dict[str, bytes] = {}
    total = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        for member in tar.getmembers():
            if not member.isreg():
                continue
            total += member.size
            if total > limit:
                raise SandboxError(f"The workspace holds more than {limit} bytes.")
            name = member.name.split("/", 1)[1] if "/" in member.name else member.name
            f = tar.extractfile(member)
            if f is not None:
                files[name] = f.read()
    return files
