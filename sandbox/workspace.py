"""Host-side state of the local backend: the state directory, slot uids, and workspaces.

**Slot uids** (sandbox.md §3, fixes 1-2). When the gym runs as root, sandboxed code must never
run as host uid 0 (root is exempt from RLIMIT_NPROC: a fork bomb took the machine down), and
sandboxes running at the same time must not share a uid (RLIMIT_NPROC is counted per uid). So
each concurrent session holds one *slot*: an unprivileged host uid from a range that overlaps no
``/etc/subuid``/``/etc/subgid`` allocation and no user or group in ``/etc/passwd``/``/etc/group``.
A slot is claimed with an ``flock`` on ``<state>/slots/<uid>.lock``, so separate processes
(vector envs, test workers) never share one; a crashed holder releases it automatically.
Without root there is a single "slot": the caller's own uid, whose RLIMIT_NPROC is then set to
the caller's current thread count plus the limit (weaker; ``Capabilities`` says so).

**Workspaces.** One host directory per session, owned by the slot uid, bound read-write at
``/workspace``. As root it is a tmpfs of ``Limits.workspace_bytes`` mounted on that directory,
so neither one huge file nor many files can fill the host disk; without root (or without
CAP_SYS_ADMIN) it is a plain directory and only the per-file limit applies. The host reads and
writes it through file descriptors opened with ``O_NOFOLLOW`` one path component at a time, so a
symlink the agent planted (say ``out.txt -> /etc/shadow``) is never followed by the host, even
if it is swapped in while the host walks the path.

**State directory.** ``/run/toolgym-sandbox`` as root (root-owned, mode 0711: slot uids can
traverse it but not list or write it), else a private directory under ``XDG_RUNTIME_DIR`` or the
temp dir. Workspaces of dead processes found there are unmounted and removed at start-up.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import shutil
import stat
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from toolgym.errors import ConfigError, SandboxError

from .base import clean_relpath

MS_NOSUID, MS_NODEV = 2, 4
MNT_DETACH = 2
DEFAULT_BASE_UID = 1_990_000  # below 2**21 so ustar/tar archives can still carry it
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def state_dir(explicit: Path | None = None) -> Path:
    """Create (if needed) and return the backend's private state directory.

    Args:
        explicit: A directory to use instead of the default.

    Raises:
        SandboxError: If the directory is a symlink, not owned by us, or writable by others.
    """
    if explicit is not None:
        path = explicit
    elif os.geteuid() == 0:
        path = Path("/run/toolgym-sandbox")
    else:
        base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
        path = Path(base) / f"toolgym-sandbox-{os.geteuid()}"
    mode = 0o711 if os.geteuid() == 0 else 0o700
    try:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
    except OSError as exc:
        raise SandboxError(f"Cannot create the sandbox state directory {path}: {exc}.") from exc
    st = os.lstat(path)
    if (
        stat.S_ISDIR(st.st_mode)
        and st.st_uid == os.geteuid()
        and not st.st_mode & 0o022
        and stat.S_IMODE(st.st_mode) != mode
    ):
        os.chmod(path, mode)  # slot uids must traverse it (0711 as root); heal a mode changed under us
        st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise SandboxError(
            f"The sandbox state directory {path} is not a directory owned by uid "
            f"{os.geteuid()} and closed to others; remove it or pass another state_dir."
        )
    return path


def _id_ranges(path: str) -> list[tuple[int, int]]:
    """``(start, count)`` ranges of an ``/etc/subuid``-style file (missing file: none)."""
    out = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            out.append((int(parts[1]), int(parts[2])))
    return out


def _used_ids(path: str) -> set[int]:
    """Ids (third field) listed in an ``/etc/passwd``-style file."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return set()
    return {int(p[2]) for p in (ln.split(":") for ln in lines) if len(p) > 2 and p[2].isdigit()}


def pick_base_uid(count: int, preferred: int = DEFAULT_BASE_UID) -> int:
    """The first uid ``>= preferred`` starting ``count`` ids used by no one on this host.

    Avoids every ``/etc/subuid``/``/etc/subgid`` range (sandbox.md §3: a test user's subuid range
    overlapped the first range tried) and every uid/gid in ``/etc/passwd``/``/etc/group``.
    """
    taken = _id_ranges("/etc/subuid") + _id_ranges("/etc/subgid")
    taken += [(i, 1) for i in _used_ids("/etc/passwd") | _used_ids("/etc/group")]
    base = preferred
    while True:
        clash = [s + n for s, n in taken if s < base + count and base < s + n]
        if not clash:
            return base
        base = max(clash)


@dataclass
class Slot:
    """One claimed sandbox slot.

    Attributes:
        uid: Host uid the sandbox runs as (``None``: the caller's own).
        gid: Host gid likewise.
        lock_fd: The flock'ed lock file, or -1 when no lock is needed.
    """

    uid: int | None
    gid: int | None
    lock_fd: int = -1


class SlotPool:
    """Per-slot host uids for root; the caller's uid otherwise.

    Args:
        root: The state directory.
        size: Number of slots (the most sessions open at once across all processes).
        base_uid: First slot uid; ``None`` picks one with :func:`pick_base_uid`.
    """

    def __init__(self, root: Path, size: int, base_uid: int | None = None) -> None:
        self.per_slot_uid = os.geteuid() == 0
        self.size = size
        self.base = base_uid if base_uid is not None else pick_base_uid(size)
        self._dir = root / "slots"
        if self.per_slot_uid:
            self._dir.mkdir(mode=0o700, exist_ok=True)
        self._lock = threading.Lock()

    def acquire(self) -> Slot:
        """Claim a free slot.

        Raises:
            SandboxError: If all slots are in use.
        """
        if not self.per_slot_uid:
            return Slot(None, None)
        with self._lock:
            for uid in range(self.base, self.base + self.size):
                fd = os.open(self._dir / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                return Slot(uid, uid, fd)
        raise SandboxError(f"All {self.size} sandbox slots are in use; close sessions or raise LocalConfig.slots.")

    @staticmethod
    def release(slot: Slot) -> None:
        """Give a slot back (closing its lock file releases the flock)."""
        if slot.lock_fd >= 0:
            os.close(slot.lock_fd)
            slot.lock_fd = -1


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


class HostWorkspace:
    """A session's workspace directory on the host, read and written without following links.

    Args:
        path: The directory to create (must not exist).
        owner: ``(uid, gid)`` that should own it, or ``None`` for the caller.
        quota_bytes: Mount a tmpfs of this size on it (root only); ``None``: a plain directory.
    """

    def __init__(self, path: Path, owner: tuple[int, int] | None, quota_bytes: int | None) -> None:
        self.path = path
        self.owner = owner
        self.mounted = False
        path.mkdir(mode=0o700)
        if quota_bytes is not None and os.geteuid() == 0:
            uid, gid = owner or (0, 0)
            opts = f"size={quota_bytes},mode=0700,uid={uid},gid={gid}".encode()
            res = _libc().mount(b"tmpfs", bytes(path), b"tmpfs", MS_NOSUID | MS_NODEV, opts)
            self.mounted = res == 0
        if not self.mounted and owner is not None:
            os.chown(path, *owner)

    # -- fd-based walking --------------------------------------------------------------

    def _open_parent(self, rel: str, create: bool) -> tuple[int, str]:
        """Open the directory holding ``rel`` (component by component, no symlinks)."""
        parts = rel.split("/")
        fd = os.open(self.path, _O_DIR)
        try:
            for part in parts[:-1]:
                if create:
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                        if self.owner is not None:
                            os.chown(part, *self.owner, dir_fd=fd, follow_symlinks=False)
                    except FileExistsError:
                        pass
                nfd = os.open(part, _O_DIR, dir_fd=fd)
                os.close(fd)
                fd = nfd
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                raise FileNotFoundError(f"No directory on the way to workspace path {rel!r}.") from exc
            raise
        return fd, parts[-1]

    def put(self, path: str, data: bytes | str) -> None:
        """Write a file atomically (temp file, then rename over whatever was there)."""
        rel = clean_relpath(path)
        if rel == ".":
            raise ConfigError("Cannot write to the workspace root; give a file name.")
        blob = data.encode() if isinstance(data, str) else bytes(data)
        dfd, name = self._open_parent(rel, create=True)
        tmp = f".toolgym-put-{os.getpid()}-{threading.get_ident()}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dfd)
            try:
                view = memoryview(blob)
                while view:
                    view = view[os.write(fd, view) :]
                if self.owner is not None:
                    os.fchown(fd, *self.owner)
            finally:
                os.close(fd)
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except OSError as exc:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
            raise SandboxError(f"Cannot write workspace file {rel!r}: {exc}.") from exc
        finally:
            os.close(dfd)

    def get(self, path: str, max_bytes: int) -> bytes:
        """Read a regular file; symlinks, fifos and devices count as missing (never followed).

        Raises:
            FileNotFoundError: No regular file there; the message says when it is a link.
            SandboxError: The file is larger than ``max_bytes`` or its mode denies reading.
        """
        rel = clean_relpath(path)
        dfd, name = self._open_parent(rel, create=False)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise SandboxError(f"Cannot read workspace file {rel!r}: permission denied.") from exc
            target = _readlink_at(dfd, name) if exc.errno == errno.ELOOP else None
            if target is not None:
                raise FileNotFoundError(
                    f"Workspace path {rel!r} is a symbolic link to {target!r}; not followed."
                ) from exc
            raise FileNotFoundError(f"No file at workspace path {rel!r}.") from exc
        finally:
            os.close(dfd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise FileNotFoundError(f"Workspace path {rel!r} is not a regular file.")
            if st.st_size > max_bytes:
                raise SandboxError(f"Workspace file {rel!r} has {st.st_size} bytes, more than {max_bytes}.")
            chunks, left = [], max_bytes + 1
            while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
                chunks.append(chunk)
                left -= len(chunk)
            if left <= 0:
                raise SandboxError(f"Workspace file {rel!r} grew past {max_bytes} bytes.")
            return b"".join(chunks)
        finally:
            os.close(fd)

    def readlink(self, path: str) -> str | None:
        """The target text of a symlink (only read, never followed), or ``None`` if not a link.

        The target is the string the link holds, such as ``"trips.csv"`` or ``"/etc/passwd"``;
        nothing it points to is opened, so reporting it leaks nothing the agent did not write.
        """
        rel = clean_relpath(path)
        if rel == ".":
            return None
        try:
            dfd, name = self._open_parent(rel, create=False)
        except OSError:
            return None
        try:
            return _readlink_at(dfd, name)
        finally:
            os.close(dfd)

    def listdir(self, path: str = ".") -> list[str]:
        """Sorted names in a directory; directories get a trailing ``/``."""
        rel = clean_relpath(path)
        if rel == ".":
            fd = os.open(self.path, _O_DIR)
        else:
            dfd, name = self._open_parent(rel, create=False)
            try:
                fd = os.open(name, _O_DIR, dir_fd=dfd)
            except OSError as exc:
                raise FileNotFoundError(f"No directory at workspace path {rel!r}.") from exc
            finally:
                os.close(dfd)
        try:
            out = []
            with os.scandir(fd) as it:
                for entry in it:
                    is_dir = entry.is_dir(follow_symlinks=False)
                    out.append(entry.name + "/" if is_dir else entry.name)
            return sorted(out)
        finally:
            os.close(fd)

    def snapshot(self, max_bytes: int) -> dict[str, bytes]:
        """Every regular file as ``{relative path: bytes}``; links and specials skipped."""
        files: dict[str, bytes] = {}
        total = 0
        root_fd = os.open(self.path, _O_DIR)
        try:
            for dirpath, _dirs, names, dfd in os.fwalk(".", dir_fd=root_fd, follow_symlinks=False):
                for name in names:
                    try:
                        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
                    except OSError:
                        continue  # symlink (ELOOP) or vanished
                    try:
                        st = os.fstat(fd)
                        if not stat.S_ISREG(st.st_mode):
                            continue
                        total += st.st_size
                        if total > max_bytes:
                            raise SandboxError(f"The workspace holds more than {max_bytes} bytes; cannot snapshot it.")
                        with os.fdopen(os.dup(fd), "rb") as f:
                            data = f.read(st.st_size + 1)
                        rel = os.path.normpath(os.path.join(dirpath, name))
                        files[rel] = data[: st.st_size]
                    finally:
                        os.close(fd)
        finally:
            os.close(root_fd)
        return files

    def clear(self) -> None:
        """Delete every entry in the directory, whatever the agent made unreadable; it stays, empty."""
        for entry in os.scandir(self.path):
            if entry.is_dir(follow_symlinks=False):
                remove_tree(Path(entry.path))
            else:
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    pass

    def remove(self) -> None:
        """Unmount (if mounted) and delete the directory. Idempotent."""
        if self.mounted:
            _libc().umount2(bytes(self.path), MNT_DETACH)
            self.mounted = False
        remove_tree(self.path)


def _readlink_at(dfd: int, name: str) -> str | None:
    """``readlink`` of ``name`` in the directory ``dfd``; ``None`` when it is no link (or gone)."""
    try:
        return os.readlink(name, dir_fd=dfd)
    except OSError:
        return None


def can_mount_tmpfs(root: Path) -> bool:
    """Whether this process can mount (and unmount) a tmpfs: root with CAP_SYS_ADMIN."""
    if os.geteuid() != 0:
        return False
    probe = Path(tempfile.mkdtemp(prefix="probe-", dir=root))
    try:
        libc = _libc()
        if libc.mount(b"tmpfs", bytes(probe), b"tmpfs", MS_NOSUID | MS_NODEV, b"size=65536") != 0:
            return False
        libc.umount2(bytes(probe), MNT_DETACH)
        return True
    finally:
        probe.rmdir()


def remove_tree(path: Path) -> None:
    """Delete a tree even if the agent made parts of it unreadable (``chmod 000``)."""
    top = os.path.abspath(path)

    def onexc(func: object, p: str, exc: BaseException) -> None:
        parent = os.path.dirname(p)
        try:
            if os.path.abspath(p) != top:  # never touch what lies above the tree (the shared state directory)
                os.chmod(parent, 0o700)
            os.chmod(p, 0o700, follow_symlinks=False)
        except OSError:
            pass
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            try:
                os.unlink(p)
            except OSError:
                pass

    if path.exists() or path.is_symlink():
        shutil.rmtree(path, onerror=lambda f, p, e: onexc(f, p, e[1]))


def sweep_stale(root: Path) -> int:
    """Remove workspaces left by processes that died (``ws-<pid>-<token>``); returns how many."""
    removed = 0
    for entry in root.glob("ws-*"):
        try:
            pid = int(entry.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # owner alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        if os.geteuid() == 0:
            _libc().umount2(bytes(entry), MNT_DETACH)
        remove_tree(entry)
        removed += 1
    return removed
