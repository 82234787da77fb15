r"""The exec wire format between the host and :mod:`.inside`, the helper inside every sandbox.

This module is the host's side of it, in one place; :mod:`.inside` holds the sandbox's side
(it runs as ``python -I -S -c <source>`` with the standard library only, so it cannot import this
module). ``tests/sandbox/test_wire.py`` runs both sides against each other.

**Framing** (local backend, pipes): a frame is a 4-byte big-endian length, then the payload
(:func:`frame`, :func:`take_frame`). A payload is at most :data:`FRAME_LIMIT` bytes.

**Requests** (host → sandbox) are ``marshal`` version 4 data of plain dicts, lists, str, bytes and
numbers (:func:`encode`); the host is trusted, so the sandbox may unmarshal them.

* :class:`ExecRequest` — one program: ``argv``, ``env``, ``cwd`` (absolute, under
  :data:`~.base.WORKSPACE`), ``rlimits`` and ``stdin`` (bytes). The local backend sends it framed
  to ``serve`` mode; the docker backend passes it to ``once`` mode in environment variables
  (:func:`exec_environment`): the base64 text of the encoded request split into
  ``TOOLGYM_REQ_0..N`` (each under the kernel's 128 KiB per-string limit), and a fresh
  ``TOOLGYM_NONCE``. Environment, not argv: ``/proc/<pid>/cmdline`` is world-readable,
  ``/proc/<pid>/environ`` of the non-dumpable launcher is not.
* :class:`KernelSetup` — ``kernel`` mode's start-up (``rlimits``, ``cwd``, ``env``), passed as
  one base64 argv string (:func:`encode_setup`).
* :class:`KernelCall` — one cell: ``code`` and ``cpu_s``, framed.
* :class:`KernelRenew` — ``{"renew": true}``, framed: a forking kernel's fresh interpreter.

An rlimit is ``[name, soft, hard]`` with ``name`` a ``resource.RLIMIT_*`` name and -1 meaning
unlimited (:func:`rlimits`).

**Responses** (sandbox → host) are JSON objects (written by ``inside.to_json``), never
``marshal``: the host must not unmarshal bytes that code in the sandbox could forge. Each is
framed on the response pipe, except ``once`` mode's, which is a trailer ``\n<nonce>{json}`` at
the end of standard error (:func:`split_trailer`). The first frame of ``serve`` and ``kernel``
mode is ``{"ready": true}``. :class:`ExecResponse` and :class:`KernelResponse` give the keys;
since the sandbox can forge them, :func:`decode_response` checks only that the payload is a JSON
object and readers check each field's type (:func:`~.base.int_field`, :func:`~.base.float_field`).
"""

from __future__ import annotations

import base64
import json
import marshal
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict, cast

from toolgym.errors import ConfigError

from .base import BASE_ENV, WORKSPACE, Limits

FRAME_HEADER = 4
FRAME_LIMIT = 1 << 30  # inside.py's read_frame refuses bigger frames
MARSHAL_VERSION = 4
ENV_CHUNK = 100_000  # one argv/env string may not exceed 128 KiB (MAX_ARG_STRLEN)
ENV_REQUEST_LIMIT = 1_500_000  # argv and env together stay under ARG_MAX (2 MiB)
ENV_PREFIX = "TOOLGYM_REQ_"
ENV_NONCE = "TOOLGYM_NONCE"

#: ``[RLIMIT_NAME, soft, hard]``; -1 is unlimited.
Rlimit = list[str | int]


class ExecRequest(TypedDict):
    """Run one program (``serve`` and ``once`` modes)."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    rlimits: list[Rlimit]
    stdin: bytes


class KernelSetup(TypedDict, total=False):
    """Start the stateful Python kernel (``kernel`` mode's argv).

    ``forks`` (optional, default false): run cells in a forked child of a zygote that serves a
    fresh interpreter on :class:`KernelRenew` (``inside.fork_server``).
    """

    rlimits: list[Rlimit]
    cwd: str
    env: dict[str, str]
    forks: bool


class KernelRenew(TypedDict):
    """Replace a forking kernel's interpreter by a fresh one; answered by ``{"ready": true}``."""

    renew: bool


class KernelCall(TypedDict):
    """Run one cell in the kernel."""

    code: str
    cpu_s: float  # the cell's CPU budget in seconds (Limits.cpu_budget_s)


class ExecResponse(TypedDict, total=False):
    """What the helper reports about one program (keys may be missing or forged)."""

    oom: bool
    exit_code: int | None
    signal: int | None
    cpu_ms: float
    clean: bool


class KernelResponse(TypedDict, total=False):
    """What the kernel reports about one cell: the exception's type name, or None."""

    error: str | None
    cpu_ms: float
    cpu_out: bool  # the cell passed its CPU budget and was interrupted


def frame(payload: bytes) -> bytes:
    """A length-prefixed frame.

    Args:
        payload: At most :data:`FRAME_LIMIT` bytes.

    Returns:
        The 4-byte big-endian length followed by ``payload``.
    """
    return len(payload).to_bytes(FRAME_HEADER, "big") + payload


def take_frame(buf: bytearray) -> bytes | None:
    """Remove the first complete frame from ``buf`` and return its payload.

    Args:
        buf: Bytes received so far; consumed in place.

    Returns:
        The payload, or None while the frame is still incomplete (``buf`` is then untouched).
    """
    if len(buf) < FRAME_HEADER:
        return None
    size = int.from_bytes(buf[:FRAME_HEADER], "big")
    if len(buf) < FRAME_HEADER + size:
        return None
    payload = bytes(buf[FRAME_HEADER : FRAME_HEADER + size])
    del buf[: FRAME_HEADER + size]
    return payload


def encode(request: ExecRequest | KernelSetup | KernelCall | KernelRenew) -> bytes:
    """The marshal payload of a request (not framed)."""
    return marshal.dumps(cast("dict[str, Any]", request), MARSHAL_VERSION)


def rlimits(limits: Limits, *, nproc: int | None = None, memory: bool = True, cpu: bool = True) -> list[Rlimit]:
    """The rlimit triples that apply ``limits`` inside the sandbox, in the order they are set.

    Args:
        limits: The call's limits.
        nproc: RLIMIT_NPROC to set, or None to leave it (docker caps processes by cgroup).
        memory: Set RLIMIT_AS to ``memory_bytes`` (docker caps memory by cgroup instead).
        cpu: Set RLIMIT_CPU to ``cpu_seconds`` soft (SIGXCPU, reported as a timeout) and one
            second more hard (SIGKILL); the kernel moves its CPU limit per call instead.

    Returns:
        ``[name, soft, hard]`` lists; RLIMIT_NOFILE, RLIMIT_FSIZE and RLIMIT_CORE=0 always.
    """
    out: list[Rlimit] = []
    if memory:
        out.append(["RLIMIT_AS", limits.memory_bytes, limits.memory_bytes])
    if cpu:
        out.append(["RLIMIT_CPU", limits.cpu_seconds, limits.cpu_seconds + 1])
    if nproc is not None:
        out.append(["RLIMIT_NPROC", nproc, nproc])
    out.append(["RLIMIT_NOFILE", limits.max_open_files, limits.max_open_files])
    out.append(["RLIMIT_FSIZE", limits.max_file_bytes, limits.max_file_bytes])
    out.append(["RLIMIT_CORE", 0, 0])
    return out


def exec_request(
    argv: Sequence[str], *, stdin: bytes, env: Mapping[str, str] | None, rel_cwd: str, rlimits: list[Rlimit]
) -> ExecRequest:
    """The request for one program.

    Args:
        argv: The program and its arguments.
        stdin: Its standard input.
        env: Variables on top of :data:`~.base.BASE_ENV`.
        rel_cwd: Working directory relative to the workspace, already checked
            (:func:`~.base.clean_relpath`); ``"."`` is the workspace itself.
        rlimits: From :func:`rlimits`.
    """
    return {
        "argv": list(argv),
        "env": {**BASE_ENV, **(env or {})},
        "cwd": WORKSPACE if rel_cwd == "." else f"{WORKSPACE}/{rel_cwd}",
        "rlimits": rlimits,
        "stdin": bytes(stdin),
    }


def encode_setup(setup: KernelSetup) -> str:
    """``kernel`` mode's setup argument: base64 text of the encoded setup."""
    return base64.b64encode(encode(setup)).decode()


def exec_environment(request: ExecRequest, nonce: str) -> dict[str, str]:
    """The environment that carries ``request`` and the trailer's nonce to ``once`` mode.

    Args:
        request: The program to run.
        nonce: A fresh secret; the trailer that reports the run starts with it.

    Returns:
        ``TOOLGYM_REQ_0..N`` (base64 chunks of :data:`ENV_CHUNK` characters) and ``TOOLGYM_NONCE``.

    Raises:
        ConfigError: If the encoded request passes :data:`ENV_REQUEST_LIMIT` characters.
    """
    blob = base64.b64encode(encode(request)).decode()
    if len(blob) > ENV_REQUEST_LIMIT:
        raise ConfigError(
            "The call's argv, env and stdin are too large for one docker exec; put large "
            "inputs in a workspace file instead."
        )
    chunks = [blob[i : i + ENV_CHUNK] for i in range(0, len(blob), ENV_CHUNK)] or [""]
    environment = {f"{ENV_PREFIX}{i}": c for i, c in enumerate(chunks)}
    environment[ENV_NONCE] = nonce
    return environment


def decode_response(payload: bytes | None) -> dict[str, object] | None:
    """A response payload as a dict; None if it is missing, not JSON or not a JSON object."""
    if payload is None:
        return None
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def split_trailer(stderr: bytes, nonce: str) -> tuple[bytes, dict[str, object] | None]:
    r"""Split ``once`` mode's standard error into the program's part and the trailer's response.

    Args:
        stderr: Everything read from standard error.
        nonce: The nonce sent with the request.

    Returns:
        The bytes before the last ``\n<nonce>`` and the decoded response after it; ``stderr``
        unchanged and None when there is no trailer. A trailer that does not decode is cut off
        and gives None.
    """
    marker = b"\n" + nonce.encode()
    cut = stderr.rfind(marker)
    if cut < 0:
        return stderr, None
    return stderr[:cut], decode_response(stderr[cut + len(marker) :])


__all__ = [
    "ExecRequest",
    "ExecResponse",
    "KernelCall",
    "KernelResponse",
    "KernelSetup",
    "Rlimit",
    "decode_response",
    "encode",
    "encode_setup",
    "exec_environment",
    "exec_request",
    "frame",
    "rlimits",
    "split_trailer",
    "take_frame",
]
