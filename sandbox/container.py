r"""The ``docker`` backend: one container per session, one ``exec`` per call, via the docker SDK.

Talks to any Docker-API socket (``dockerd``, or rootful ``podman system service`` with ``runc``;
never rootless podman, which ignores memory and pids limits on cgroup v1, sandbox.md §7): the
``base_url`` given, else ``DOCKER_HOST``. Use it for environments that need their own image; the
default image is built offline from host files by :mod:`.build_image`, and carries numpy and
pandas read-only at ``/opt/toolgym/libs`` (on every ``python3 -I``'s path) when the project's
:mod:`.pylibs` are installed, as the local backend binds them.

A session is a container whose pid 1 is :mod:`.inside` in ``idle`` mode (it reaps orphans and
ignores signals from inside), plus a tmpfs-backed named volume mounted at ``/workspace`` that
outlives container restarts. Each call is an ``exec`` of :mod:`.inside` in ``once`` mode, which
forks the program with the call's rlimits, waits, kills every leftover process, and appends a
status trailer (``\n<nonce>{json}``) to standard error. Files move with ``put_archive`` and
``get_archive``.

What is isolated (every container is created with these):

* ``network_mode="none"``: no interfaces but loopback, no DNS;
* ``read_only=True`` root, a sized tmpfs at ``/tmp``, ``shm_size`` for ``/dev/shm``, a sized
  tmpfs volume for the workspace (so total workspace size is capped);
* ``mem_limit`` = ``memswap_limit`` (RSS, OOM-kill), ``pids_limit``, ``nano_cpus``;
* ``cap_drop=["ALL"]``, ``no-new-privileges``, a non-root ``user``, the engine's default
  seccomp profile, optional ``runtime`` (e.g. ``runsc`` for gVisor);
* explicit ``ulimits`` (nofile, nproc, fsize, core=0): rootful podman's defaults exceed the hard
  limits here and fail with EPERM once capabilities are dropped;
* wall clock and output caps enforced by the client: past either, the container is frozen,
  a fresh one is started, and the old one removed (``state_lost=True``). The fresh one starts
  first because a tmpfs volume keeps its files only while some container has it mounted.
  Containers and volumes are always removed, also when opening fails (killing the daemon would
  leave them running).

What is **not** isolated: the kernel is shared (unless ``runtime="runsc"``); ``nproc`` is
counted per host uid across containers, so it is only a backstop set above ``pids_limit``; the
launcher is non-dumpable, so the call's own processes can neither read its request nor the
status trailer's nonce, but they can kill it (the call is then reported ``killed``). There is
no stateful Python kernel in this backend.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from toolgym.errors import ConfigError, SandboxError

from . import pylibs
from .archive import build_tar, first_regular_file, regular_files
from .base import (
    BASE_ENV,
    WORKSPACE,
    Backend,
    Capabilities,
    ExecResult,
    ExecStatus,
    Limits,
    Session,
    classify,
    clean_relpath,
    float_field,
    int_field,
    sandbox_error,
)
from .build_image import DEFAULT_IMAGE
from .local import INSIDE_SOURCE
from .proc import Capture
from .wire import exec_environment, exec_request, rlimits, split_trailer

LABEL = {"toolgym.sandbox": "1"}
_TRAILER_ROOM = 4096
_GO_MODE_DIR, _GO_MODE_SYMLINK = 1 << 31, 1 << 27  # Go os.FileMode bits in archive stats


class DockerConfig(BaseModel):
    """Settings of the docker backend.

    Attributes:
        base_url: Docker API socket (``unix:///…``, ``tcp://…``); ``None`` reads
            ``DOCKER_HOST``.
        image: Image of every session container.
        python: Interpreter inside the image.
        user: ``uid:gid`` the programs run as (never root).
        runtime: OCI runtime, e.g. ``"runsc"``; ``None`` for the engine's default.
        build_image: Build :data:`~toolgym.sandbox.build_image.DEFAULT_IMAGE` when it is
            the configured image and missing, or lacks the installed numpy/pandas
            (:mod:`.pylibs`; with them installed, the image carries them).
        api_timeout_s: Timeout of each API request.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str | None = None
    image: str = DEFAULT_IMAGE
    python: str = "/usr/bin/python3"
    user: str = "1000:1000"
    runtime: str | None = None
    build_image: bool = True
    api_timeout_s: float = 60.0


def _client(base_url: str | None, timeout: float) -> Any:
    import docker

    if base_url:
        return docker.DockerClient(base_url=base_url, timeout=int(timeout))
    return docker.from_env(timeout=int(timeout))


def docker_unavailable_reason(base_url: str | None = None) -> str | None:
    """Why no Docker engine can be used here, or ``None`` when one answers.

    Args:
        base_url: Socket to try; ``None`` reads ``DOCKER_HOST``.
    """
    try:
        client = _client(base_url, 5)
    except Exception as exc:  # noqa: BLE001 - any failure is a reason to report
        return f"no Docker engine reachable ({type(exc).__name__}: {exc})"
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        return f"the Docker engine does not answer ({type(exc).__name__}: {exc})"
    finally:
        client.close()
    return None


class DockerBackend(Backend):
    """Containers on a Docker-API engine (see the module docstring for what is isolated).

    Args:
        config: Backend settings.

    Raises:
        SandboxError: If the engine is unreachable or the image is missing and cannot be built.
    """

    name = "docker"

    def __init__(self, config: DockerConfig | None = None) -> None:
        import docker.errors

        self.config = config or DockerConfig()
        self._errors = docker.errors
        try:
            self.client = _client(self.config.base_url, self.config.api_timeout_s)
            self.client.ping()
        except docker.errors.DockerException as exc:
            raise SandboxError(
                f"No Docker engine reachable ({exc}); start one (see .ci/docker.sh) and set "
                "DOCKER_HOST, or use the local backend."
            ) from exc
        self._ensure_image()

    def _ensure_image(self) -> None:
        """Find the image; build the default one when missing or without the installed pylibs.

        Raises:
            SandboxError: If the image is missing and is not the default one (or building is
                off), or the build fails.
        """
        from .build_image import LIBS_LABEL, build_base_image, libs_label

        try:
            image = self.client.images.get(self.config.image)
        except self._errors.ImageNotFound:
            image = None
        if not (self.config.build_image and self.config.image == DEFAULT_IMAGE):
            if image is None:
                raise SandboxError(f"Image {self.config.image} is not on the engine.")
            return
        libs = pylibs.find()
        labels = ((image.attrs.get("Config") or {}).get("Labels") or {}) if image is not None else {}
        if image is None or (libs is not None and labels.get(LIBS_LABEL, "") != libs_label(libs)):
            build_base_image(self.client, self.config.image, with_libs=libs is not None)

    def capabilities(self) -> Capabilities:
        """What this backend guarantees (cgroup limits; no stateful kernel)."""
        return Capabilities(
            backend=self.name,
            network_off=True,
            host_fs_hidden=True,
            pid_isolation=True,
            memory="cgroup",
            processes="cgroup_pids",
            workspace_quota=True,
            stateful_python=False,
            custom_image=True,
            notes=("the nproc ulimit is per host uid; pids_limit is the per-session cap",),
        )

    def open(self, files: Mapping[str, bytes | str] | None = None, limits: Limits | None = None) -> DockerSession:
        """Open a session: a workspace volume and a running container."""
        session = DockerSession(self, limits or Limits())
        try:
            session.start()
            if files:
                session.put_many(files)
        except BaseException:
            session.close()
            raise
        return session

    def close(self) -> None:
        """Close the API client."""
        self.client.close()


class DockerSession(Session):
    """A docker session; see :class:`~toolgym.sandbox.base.Session`."""

    def __init__(self, backend: DockerBackend, limits: Limits) -> None:
        self.backend = backend
        self.limits = limits
        self.name = f"toolgym-{secrets.token_hex(6)}"
        self._container: Any = None
        self._volume: Any = None
        self._closed = False

    @property
    def python_path(self) -> str:
        """The interpreter inside the image."""
        return self.backend.config.python

    @property
    def closed(self) -> bool:
        """Whether the session is closed."""
        return self._closed

    @property
    def api(self) -> Any:
        """The low-level API client."""
        return self.backend.client.api

    def start(self) -> None:
        """Create the workspace volume (once) and a fresh container."""
        from docker.types import Ulimit

        cfg, lim = self.backend.config, self.limits
        try:
            if self._volume is None:
                uid, _, gid = cfg.user.partition(":")
                self._volume = self.backend.client.volumes.create(
                    name=f"{self.name}-ws",
                    driver="local",
                    driver_opts={
                        "type": "tmpfs",
                        "device": "tmpfs",
                        "o": f"size={lim.workspace_bytes},uid={uid},gid={gid or uid},mode=0700",
                    },
                    labels=LABEL,
                )
            nofile, fsize = lim.max_open_files, lim.max_file_bytes
            self._container = self.backend.client.containers.run(
                cfg.image,
                [cfg.python, "-I", "-S", "-c", INSIDE_SOURCE, "idle"],
                name=f"{self.name}-{secrets.token_hex(3)}",
                detach=True,
                user=cfg.user,
                network_mode="none",
                mem_limit=lim.memory_bytes,
                memswap_limit=lim.memory_bytes,
                pids_limit=lim.max_processes,
                nano_cpus=int(lim.cpus * 1e9),
                read_only=True,
                tmpfs={"/tmp": f"size={lim.tmp_bytes},mode=1777"},
                shm_size=lim.shm_bytes,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                ulimits=[
                    Ulimit(name="nofile", soft=nofile, hard=nofile),
                    Ulimit(name="nproc", soft=16 * lim.max_processes, hard=16 * lim.max_processes),
                    Ulimit(name="fsize", soft=fsize, hard=fsize),
                    Ulimit(name="core", soft=0, hard=0),
                ],
                volumes={self._volume.name: {"bind": WORKSPACE, "mode": "rw"}},
                working_dir=WORKSPACE,
                environment=dict(BASE_ENV),
                hostname="sandbox",
                labels=LABEL,
                runtime=cfg.runtime,
                stop_signal="SIGKILL",
            )
        except self.backend._errors.DockerException as exc:
            raise SandboxError(f"Cannot start the session container: {exc}.") from exc

    def _drop_container(self) -> None:
        if self._container is not None:
            try:
                self._container.remove(force=True)
            except self.backend._errors.DockerException:
                pass
            self._container = None

    def _replace_container(self) -> None:
        """Freeze the current container, start a fresh one, then remove the old one.

        The order keeps the tmpfs workspace volume mounted throughout, so its files survive.
        If the fresh container cannot start, the session has no container until the next call.
        """
        old = self._container
        if old is not None:
            try:
                old.pause()
            except self.backend._errors.DockerException:
                pass
        self._container = None
        try:
            if not self._closed:
                self.start()
        finally:
            if old is not None:
                try:
                    old.unpause()  # the engine waits ~20 s to force-remove a frozen container
                except self.backend._errors.DockerException:
                    pass
                try:
                    old.remove(force=True)
                except self.backend._errors.DockerException:
                    pass

    def _ensure_container(self) -> None:
        if self._closed:
            raise SandboxError("The session is closed; open a new one.")
        if self._container is None:
            self.start()

    def exec(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes = b"",
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str = ".",
    ) -> ExecResult:
        """Run ``argv`` via ``docker exec`` of the launcher (see :class:`Session`)."""
        if not argv or not all(isinstance(a, str) for a in argv):
            raise ConfigError("argv must be a non-empty sequence of strings.")
        started = time.monotonic()
        limits = self.limits
        # Memory and processes are capped by the container's cgroup, not by rlimits.
        triples = rlimits(limits, memory=False)
        req = exec_request(argv, stdin=stdin, env=env, rel_cwd=clean_relpath(cwd), rlimits=triples)
        nonce = secrets.token_hex(16)
        request_env = exec_environment(req, nonce)
        cmd = [self.python_path, "-I", "-S", "-c", INSIDE_SOURCE, "once"]
        try:
            self._ensure_container()
            exec_id = self.api.exec_create(
                self._container.id,
                cmd,
                stdout=True,
                stderr=True,
                user=self.backend.config.user,
                environment=request_env,
            )["Id"]
        except (SandboxError, self.backend._errors.DockerException) as exc:
            self._drop_container()
            return sandbox_error(f"docker exec failed: {exc}", started)
        replaced_before = self._container
        wall = timeout if timeout is not None else limits.wall_s
        reason, out, err = self._stream(exec_id, started + wall)
        data = bytes(err.data)
        response: dict[str, object] | None = None
        if reason == "frame":
            data, response = split_trailer(data, nonce)
        user_err_total = err.total - (len(err.data) - len(data))
        if reason == "frame" and response is None:
            reason = "eof"
        if reason == "eof" and self._container_oom():
            response, reason = {"oom": True, "signal": 9, "exit_code": None}, "frame"
        status, detail = classify(reason, response, data[-4096:], limits)
        if status is ExecStatus.OK and user_err_total > limits.output_bytes:
            status, detail = ExecStatus.OUTPUT_LIMIT, "standard error passed the output cap"
        lost = reason != "frame" or not (response or {}).get("clean", False)
        if lost and self._container is replaced_before:
            try:
                self._replace_container()
            except SandboxError:
                pass  # reported by the next call
        return ExecResult(
            status=status,
            exit_code=int_field(response, "exit_code"),
            signal=int_field(response, "signal"),
            stdout=bytes(out.data),
            stderr=data[: limits.output_bytes],
            stdout_truncated=out.truncated,
            stderr_truncated=user_err_total > limits.output_bytes,
            wall_ms=(time.monotonic() - started) * 1000.0,
            cpu_ms=float_field(response, "cpu_ms"),
            state_lost=lost,
            detail=detail,
        )

    def _stream(self, exec_id: str, deadline: float) -> tuple[str, Capture, Capture]:
        """Read the exec's output in a thread; kill the container on timeout or cap."""
        cap = self.limits.output_bytes
        out, err = Capture(cap), Capture(cap + _TRAILER_ROOM)
        state = {"reason": "frame"}
        done = threading.Event()

        sock_box: list[Any] = []

        def reader() -> None:
            from docker.utils.socket import frames_iter

            try:
                sock = self.api.exec_start(exec_id, socket=True)
                sock_box.append(sock)
                for stream_id, chunk in frames_iter(sock, tty=False):
                    if (out if stream_id == 1 else err).feed(chunk):
                        state["reason"] = "output_limit"
                        break
            except Exception:  # noqa: BLE001 - the stream breaks when we kill the container
                if state["reason"] == "frame":
                    state["reason"] = "eof"
            finally:
                # Stop dockerd from writing to a connection nobody reads any more; until it
                # gets EPIPE it keeps the exec, and with it the container kill, waiting.
                for sock in sock_box:
                    _shutdown(sock)
                done.set()

        thread = threading.Thread(target=reader, name="toolgym-docker-exec", daemon=True)
        thread.start()
        if not done.wait(max(0.0, deadline - time.monotonic())):
            state["reason"] = "timeout"
        if state["reason"] in ("timeout", "output_limit"):
            try:
                self._replace_container()  # removing the old container ends the stream
            except SandboxError:
                pass  # reported by the next call
        thread.join(timeout=10)
        return state["reason"], out, err

    def _container_oom(self) -> bool:
        """Whether the engine says the container was OOM-killed."""
        try:
            self._container.reload()
            return bool(self._container.attrs["State"].get("OOMKilled"))
        except Exception:  # noqa: BLE001
            return False

    # -- workspace files -------------------------------------------------------------------

    def put(self, path: str, data: bytes | str) -> None:
        """Write a workspace file through ``put_archive`` (see :class:`Session`)."""
        self.put_many({path: data})

    def put_many(self, files: Mapping[str, bytes | str]) -> None:
        """Write several workspace files in one archive."""
        self._ensure_container()
        uid, _, gid = self.backend.config.user.partition(":")
        data = build_tar(files, int(uid), int(gid or uid))
        try:
            self._container.put_archive(WORKSPACE, data)
        except self.backend._errors.DockerException as exc:
            raise SandboxError(f"Cannot write workspace files: {exc}.") from exc

    def _archive(self, rel: str, max_bytes: int, regular: bool) -> bytes:
        """The workspace path as a tar archive (checked against ``max_bytes`` first)."""
        self._ensure_container()
        target = WORKSPACE if rel == "." else f"{WORKSPACE}/{rel}"
        try:
            stream, stat = self._container.get_archive(target)
        except self.backend._errors.NotFound as exc:
            raise FileNotFoundError(f"No workspace path {rel!r}.") from exc
        except self.backend._errors.DockerException as exc:
            raise SandboxError(f"Cannot read the workspace: {exc}.") from exc
        mode = int(stat.get("mode", 0))
        if regular and (stat.get("linkTarget") or mode & (_GO_MODE_DIR | _GO_MODE_SYMLINK)):
            stream.close()
            raise FileNotFoundError(f"Workspace path {rel!r} is not a regular file.")
        if regular and int(stat.get("size", 0)) > max_bytes:
            stream.close()
            raise SandboxError(f"Workspace file {rel!r} has {stat['size']} bytes, over {max_bytes}.")
        data = bytearray()
        for chunk in stream:
            data += chunk
            if len(data) > max_bytes + (1 << 20):  # tar headers take a little room
                raise SandboxError(f"Workspace path {rel!r} holds more than {max_bytes} bytes.")
        return bytes(data)

    def get(self, path: str, max_bytes: int | None = None) -> bytes:
        """Read a workspace file through ``get_archive``; links are never followed."""
        rel = clean_relpath(path)
        limit = max_bytes or self.limits.workspace_bytes
        content = first_regular_file(self._archive(rel, limit, regular=True), limit)
        if content is not None:
            return content
        raise FileNotFoundError(f"Workspace path {rel!r} is not a regular file.")

    def listdir(self, path: str = ".") -> list[str]:
        """List a workspace directory (one small exec)."""
        rel = clean_relpath(path)
        code = (
            "import json,os,sys\np=sys.argv[1]\n"
            "print(json.dumps(sorted(e.name+('/' if e.is_dir(follow_symlinks=False) else '')"
            " for e in os.scandir(p))) if os.path.isdir(p) and not os.path.islink(p) else 'null')"
        )
        target = WORKSPACE if rel == "." else f"{WORKSPACE}/{rel}"
        res = self.exec([self.python_path, "-I", "-S", "-c", code, target], timeout=30)
        if not res.ok:
            raise SandboxError(f"Cannot list the workspace: {res.detail or res.stderr[-300:]!r}.")
        names = json.loads(res.stdout)
        if names is None:
            raise FileNotFoundError(f"No directory at workspace path {rel!r}.")
        return [str(n) for n in names]

    def snapshot(self, max_bytes: int | None = None) -> dict[str, bytes]:
        """Every regular workspace file, from one ``get_archive`` of the workspace."""
        limit = max_bytes or self.limits.workspace_bytes
        return regular_files(self._archive(".", limit, regular=False), limit)

    def close(self) -> None:
        """Remove the container and the workspace volume. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._drop_container()
        if self._volume is not None:
            try:
                self._volume.remove(force=True)
            except self.backend._errors.DockerException:
                pass
            self._volume = None


def _shutdown(sock: Any) -> None:
    """Shut down a docker-py raw socket (a ``SocketIO`` wrapper or the socket itself)."""
    raw = getattr(sock, "_sock", sock)
    try:
        raw.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def docker_backend(**config: Any) -> DockerBackend:
    """The central table's entry: a :class:`DockerBackend` from :class:`DockerConfig` fields.

    Raises:
        pydantic.ValidationError: A bad config field.
        SandboxError: If the backend cannot run here.
    """
    return DockerBackend(DockerConfig(**config))
