r"""Sandboxes: run code that a policy or a synthesizer wrote, isolated, with limits, and fast.

One interface (:mod:`.base`), two backends:

``local`` (:mod:`.local`, the default, no daemon)
    bubblewrap with new user/pid/ipc/uts/net/cgroup namespaces, read-only system directories,
    sized tmpfs ``/tmp`` and ``/dev/shm``, ``/`` and ``/dev`` read-only, rlimits (address space,
    CPU, processes, files, file size, no core), a per-slot unprivileged host uid when run as root,
    wall clock and output caps enforced by the host. One sandbox per session; each call is a fresh
    process in it, and nothing outlives its call. Has a stateful Python kernel
    (:meth:`Session.python`, :mod:`.kernel`).
``docker`` (:mod:`.container`)
    one container per session on any Docker-API socket, ``exec`` per call; cgroup memory and
    pids limits, ``network=none``, read-only root, all capabilities dropped, no-new-privileges,
    non-root user, explicit ulimits. Its base image is built offline by :mod:`.build_image`.

Isolated in both: network (none at all), the host filesystem (only the workspace is writable;
host secrets, homes and the checkout are invisible), processes (own pid namespace, everything
killed at the end of each call and of each session), the caller's environment (programs start
from :data:`BASE_ENV`). **Not** isolated in either: the kernel is shared (no VM boundary; gVisor
only if the docker engine offers ``runsc``), and CPU has no fair share locally. Each backend's
module docstring lists the details; :meth:`Backend.capabilities` reports them at run time.

Code that *judges* an agent runs after the agent's session is closed, on a copy of its
workspace, in a sandbox of its own, and its verdict is read from its standard output
(:mod:`.judge`). ``toolgym bench sandbox`` measures every path (:mod:`.bench`).

Quick start::

    from toolgym.sandbox import get_backend

    with get_backend("local").open({"data.csv": "a,b\n1,2\n"}) as session:
        result = session.exec_code("print(open('data.csv').read())")
        kernel = session.python()
        kernel.run("x = 41")
        kernel.run("x + 1").stdout  # b"42\n"
"""

from __future__ import annotations

from typing import Any

from .base import (
    BASE_ENV,
    WORKSPACE,
    Backend,
    Capabilities,
    ExecResult,
    ExecStatus,
    Limits,
    PythonKernel,
    Session,
)


def get_backend(name: str = "local", **config: Any) -> Backend:
    """Create a backend by name (a line of the central table, ``toolgym.BACKENDS``).

    Args:
        name: ``"local"`` or ``"docker"`` (or any registered backend).
        **config: Fields of :class:`~toolgym.sandbox.local.LocalConfig` or
            :class:`~toolgym.sandbox.container.DockerConfig`.

    Raises:
        UnknownNameError: If the name is not a backend (the message lists them).
        SandboxError: If the backend cannot run here (the message says how to fix it).
    """
    from toolgym import BACKENDS

    backend: Backend = BACKENDS.get(name)(**config)
    return backend


__all__ = [
    "BASE_ENV",
    "WORKSPACE",
    "Backend",
    "Capabilities",
    "ExecResult",
    "ExecStatus",
    "Limits",
    "PythonKernel",
    "Session",
    "get_backend",
]
