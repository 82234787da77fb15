"""The sandbox's analysis libraries: numpy and pandas for the Python kernel, read-only.

Users of a code interpreter expect numpy and pandas; the sandbox Python (``/usr/bin/python3``,
run with ``-I -S``) has only the standard library. This module installs the two, with their
dependencies, into **one dedicated directory** (``pip install --target``, binary wheels for the
sandbox interpreter's own ``X.Y``), which the local backend binds **read-only** at
:data:`MOUNT` when ``LocalConfig(libs=...)`` names it; the kernel appends :data:`MOUNT` to its
``sys.path`` (after the standard library, so nothing there is shadowed).

Why a dedicated directory rather than the project venv's ``site-packages``: the venv holds
torch, the project itself and its secrets-adjacent tooling, and its interpreter may be another
Python than the sandbox's; the dedicated directory holds only what a kernel should import, built
for the interpreter that imports it.

Where: ``$TOOLGYM_SANDBOX_LIBS`` when set, else ``<sys.prefix>/share/toolgym/sandbox-libs-pyXY``
(inside the project's virtual environment, so a fresh checkout's ``.ci/run`` creates it with the
venv), or ``/var/lib/toolgym/…`` when that venv is out of the slot uids' reach (every directory
on the way must be traversable by them: a venv under a 0700 home is not; sandbox.md §3).

Set-up (a fresh machine; ``.ci/run`` does it)::

    python -m toolgym.sandbox.pylibs          # install, or say it is already there
    python -m toolgym.sandbox.pylibs --check  # exit 1 when missing

Thread pools are already pinned to one thread in every sandbox (``BASE_ENV``: OpenBLAS, OMP,
MKL), so ``import numpy`` stays inside the address-space and process limits.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from toolgym.errors import SandboxError

#: Where the directory appears inside every sandbox that binds it.
MOUNT = "/opt/toolgym/libs"
#: What gets installed (pinned ranges; pandas brings python-dateutil, tzdata and six).
REQUIREMENTS = ("numpy>=1.26,<3", "pandas>=2.1,<4")
#: Written last by :func:`install`: a directory without it is an interrupted install.
MARKER = ".toolgym-libs"
SANDBOX_PYTHON = "/usr/bin/python3"


def python_version(python: str = SANDBOX_PYTHON) -> str:
    """The ``X.Y`` of the sandbox interpreter.

    Raises:
        SandboxError: If it cannot be run.
    """
    try:
        out = subprocess.run(  # noqa: S603 - a fixed interpreter path
            [python, "-I", "-S", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxError(f"cannot run the sandbox Python {python}: {exc}") from exc
    return out.stdout.strip()


def candidates(version: str | None = None) -> list[Path]:
    """Where the libraries may live, in order of preference.

    ``$TOOLGYM_SANDBOX_LIBS`` alone when set; else ``<sys.prefix>/share/toolgym/sandbox-libs-pyXY``
    (with the project's venv), then ``/var/lib/toolgym/sandbox-libs-pyXY`` for a venv the slot
    uids cannot reach (a checkout under a 0700 home, run as root).
    """
    explicit = os.environ.get("TOOLGYM_SANDBOX_LIBS")
    if explicit:
        return [Path(explicit)]
    name = f"sandbox-libs-py{(version or python_version()).replace('.', '')}"
    return [Path(sys.prefix) / "share" / "toolgym" / name, Path("/var/lib/toolgym") / name]


def default_dir(version: str | None = None) -> Path:
    """Where :func:`install` puts the libraries: the first candidate the slot uids can reach."""
    options = candidates(version)
    return next((p for p in options if os.geteuid() != 0 or _traversable(p) is None), options[-1])


def find(path: Path | None = None) -> Path | None:
    """The installed libraries' directory (``path`` or the first installed candidate), or None."""
    try:
        options = [path] if path is not None else candidates()
    except SandboxError:
        return None
    return next((p for p in options if (p / MARKER).is_file()), None)


def _traversable(path: Path) -> Path | None:
    """The first existing directory on ``path``'s way that others cannot enter (no ``o+x``), or None."""
    full = path.absolute()
    for part in [*reversed(full.parents), full]:
        if part.is_dir() and not part.stat().st_mode & stat.S_IXOTH:
            return part
    return None


def install(path: Path | None = None, python: str = SANDBOX_PYTHON, quiet: bool = True) -> Path:
    """Install :data:`REQUIREMENTS` for ``python`` into ``path`` (default :func:`default_dir`).

    Uses this interpreter's pip with ``--target``, binary wheels only, for the sandbox Python's
    ``X.Y``; needs the network (PyPI) once. Idempotent: an installed directory is left alone.

    Returns:
        The directory.

    Raises:
        SandboxError: pip failed, or a directory on the way is closed to the slot uids.
    """
    version = python_version(python)
    where = path or default_dir(version)
    if find(where) is not None:
        return where
    where.mkdir(parents=True, exist_ok=True)
    closed = _traversable(where)
    if closed is not None and os.geteuid() == 0:
        raise SandboxError(f"{closed} is closed to others (no o+x): the sandbox's slot uids could not read {where}")
    argv = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--target", str(where)]
    argv += ["--python-version", version, "--only-binary=:all:", "--upgrade", *REQUIREMENTS]
    done = subprocess.run(argv, capture_output=quiet, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise SandboxError(f"installing {', '.join(REQUIREMENTS)} into {where} failed:\n{(done.stderr or '')[-2000:]}")
    for root, dirs, files in os.walk(where):  # readable by every slot uid, whatever the umask
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            p = os.path.join(root, name)
            os.chmod(p, os.stat(p).st_mode | 0o444)
    (where / MARKER).write_text(" ".join(REQUIREMENTS) + "\n")
    return where


def main(argv: list[str]) -> int:
    """``python -m toolgym.sandbox.pylibs [--check]``."""
    if "--check" in argv:
        found = find()
        print(found or f"not installed (expected at {default_dir()}); run: python -m toolgym.sandbox.pylibs")
        return 0 if found else 1
    print(install(quiet=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
