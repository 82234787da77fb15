"""The exec wire format: the host's side (:mod:`toolgym.sandbox.wire`) against the sandbox's (inside.py).

inside.py is loaded from the very source the backends launch (``INSIDE_SOURCE``), and each
test runs one direction of the format through both sides; the last tests check that every
backend speaks it through :mod:`toolgym.sandbox.wire` and writes none of it itself.
"""

from __future__ import annotations

import ast
import os
import re
import resource
import types
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.errors import ConfigError
from toolgym.sandbox import wire
from toolgym.sandbox.base import BASE_ENV, WORKSPACE, Limits
from toolgym.sandbox.local import INSIDE_SOURCE

SANDBOX_DIR = Path(wire.__file__).parent


def _load_inside() -> types.ModuleType:
    module = types.ModuleType("toolgym_sandbox_inside")
    exec(compile(INSIDE_SOURCE, str(SANDBOX_DIR / "inside.py"), "exec"), module.__dict__)
    return module


inside = _load_inside()

texts = st.text(max_size=40)
rlimit_names = st.sampled_from(["RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_FSIZE"])
rlimit_lists = st.lists(st.tuples(rlimit_names, st.integers(-1, 2**40), st.integers(-1, 2**40)).map(list), max_size=6)
exec_requests = st.builds(
    lambda argv, env, rel, rl, stdin: wire.exec_request(argv, stdin=stdin, env=env, rel_cwd=rel, rlimits=rl),
    st.lists(texts, min_size=1, max_size=5),
    st.dictionaries(texts, texts, max_size=5),
    st.sampled_from([".", "src", "a/b c"]),
    rlimit_lists,
    st.binary(max_size=2000),
)
json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
responses = st.dictionaries(st.text(max_size=10), json_values, max_size=6)


def _through_pipe(data: bytes, read: Any) -> Any:
    """Write ``data`` into a pipe and let ``read(fd)`` parse it (data stays under the pipe buffer)."""
    r, w = os.pipe()
    try:
        os.write(w, data)
        os.close(w)
        w = -1
        return read(r)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_exec_request_maps_cwd_and_layers_env_on_base_env():
    req = wire.exec_request(["ls"], stdin=b"x", env={"A": "1", "HOME": "/h"}, rel_cwd="src", rlimits=[])
    assert req == {
        "argv": ["ls"],
        "env": {**BASE_ENV, "A": "1", "HOME": "/h"},
        "cwd": f"{WORKSPACE}/src",
        "rlimits": [],
        "stdin": b"x",
    }
    assert wire.exec_request(["ls"], stdin=b"", env=None, rel_cwd=".", rlimits=[])["cwd"] == WORKSPACE


def test_rlimits_are_those_each_backend_always_set():
    limits = Limits(wall_s=3.0, memory_bytes=1 << 30, max_open_files=64, max_file_bytes=1 << 20)
    cpu = limits.cpu_seconds
    assert cpu == 4
    tail = [["RLIMIT_NOFILE", 64, 64], ["RLIMIT_FSIZE", 1 << 20, 1 << 20], ["RLIMIT_CORE", 0, 0]]
    # local exec: address space, CPU, processes per slot uid
    assert wire.rlimits(limits, nproc=7) == [
        ["RLIMIT_AS", 1 << 30, 1 << 30],
        ["RLIMIT_CPU", cpu, cpu + 1],
        ["RLIMIT_NPROC", 7, 7],
        *tail,
    ]
    # local kernel: the CPU limit moves per call instead
    assert wire.rlimits(limits, nproc=7, cpu=False) == [["RLIMIT_AS", 1 << 30, 1 << 30], ["RLIMIT_NPROC", 7, 7], *tail]
    # docker: memory and processes are the cgroup's
    assert wire.rlimits(limits, memory=False) == [["RLIMIT_CPU", cpu, cpu + 1], *tail]
    for name, _, _ in wire.rlimits(limits, nproc=1):
        assert hasattr(resource, str(name)), name


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=5), st.integers(1, 17))
def test_frames_round_trip_however_the_bytes_arrive(payloads, chunk):
    stream = b"".join(wire.frame(p) for p in payloads)
    buf, got = bytearray(), []
    for i in range(0, len(stream), chunk):
        buf += stream[i : i + chunk]
        while (payload := wire.take_frame(buf)) is not None:
            got.append(payload)
    assert got == payloads and not buf
    # inside.py reads the same frames
    if payloads:
        assert _through_pipe(wire.frame(payloads[0]), inside.read_frame) == payloads[0]


def test_take_frame_leaves_an_incomplete_frame_untouched():
    buf = bytearray(wire.frame(b"hello")[:-1])
    before = bytes(buf)
    assert wire.take_frame(buf) is None and bytes(buf) == before
    assert wire.FRAME_LIMIT == inside.FRAME_LIMIT


@settings(max_examples=60, deadline=None)
@given(exec_requests)
def test_exec_request_round_trips_through_serve_framing(req):
    got = _through_pipe(wire.frame(wire.encode(req)), inside.read_request)
    assert got == req


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=200), st.floats(0.1, 10**6))
def test_kernel_call_and_setup_round_trip(code, cpu_s):
    call: wire.KernelCall = {"code": code, "cpu_s": cpu_s}
    assert _through_pipe(wire.frame(wire.encode(call)), inside.read_request) == call
    setup: wire.KernelSetup = {"rlimits": [["RLIMIT_NOFILE", 8, 8]], "cwd": WORKSPACE, "env": {"K": code}}
    assert inside.decode_setup(wire.encode_setup(setup)) == setup


@settings(max_examples=40, deadline=None)
@given(exec_requests, st.binary(max_size=150_000), st.text("0123456789abcdef", min_size=32, max_size=32))
def test_exec_request_round_trips_through_the_docker_environment(req, big, nonce):
    req["stdin"] = big  # past ENV_CHUNK, so the request spans several variables
    environment = wire.exec_environment(req, nonce)
    assert all(len(v) <= wire.ENV_CHUNK for v in environment.values())
    taken = dict(environment, UNRELATED="1")
    assert inside.request_from_env(taken) == (req, nonce)
    assert taken == {"UNRELATED": "1"}  # the request never reaches the program's environment


def test_a_request_too_large_for_one_docker_exec_is_refused():
    req = wire.exec_request(["cat"], stdin=b"\0" * 1_200_000, env=None, rel_cwd=".", rlimits=[])
    with pytest.raises(ConfigError, match="too large"):
        wire.exec_environment(req, "n" * 32)


@settings(max_examples=80, deadline=None)
@given(responses)
def test_responses_round_trip_through_inside_json(value):
    r, w = os.pipe()
    try:
        inside.respond(w, value)
        os.close(w)
        w = -1
        buf = bytearray()
        while chunk := os.read(r, 1 << 16):
            buf += chunk
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    assert wire.decode_response(wire.take_frame(buf)) == value


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=500), responses, st.text("0123456789abcdef", min_size=32, max_size=32))
def test_once_trailer_splits_off_the_programs_stderr(stderr, value, nonce):
    forged = b"\n" + nonce.encode() + b'{"clean": true}'  # a program that learnt the nonce, earlier
    data = stderr + forged + inside.trailer(nonce, value)
    assert wire.split_trailer(data, nonce) == (stderr + forged, value)
    assert wire.split_trailer(stderr.replace(b"\n", b""), nonce) == (stderr.replace(b"\n", b""), None)


@pytest.mark.parametrize("payload", [None, b"", b"not json", b"[1, 2]", b"3", b'"s"'])
def test_decode_response_refuses_anything_but_an_object(payload):
    assert wire.decode_response(payload) is None


def _imports(tree: ast.Module) -> tuple[set[str], set[str]]:
    """(absolute modules imported, relative ``from .x`` modules) anywhere in the file."""
    absolute, relative = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            absolute |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            (relative if node.level else absolute).add(node.module)
    return absolute, relative


@pytest.mark.parametrize("module", ["local", "container", "kernel", "proc"])
def test_every_backend_speaks_the_format_through_wire_only(module):
    tree = ast.parse((SANDBOX_DIR / f"{module}.py").read_text())
    absolute, relative = _imports(tree)
    assert "wire" in relative
    assert not absolute & {"marshal", "base64", "binascii", "struct"}, "encode requests with toolgym.sandbox.wire"
    methods = {n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
    assert not methods & {"to_bytes", "from_bytes", "rfind"}, f"{module}.py frames or parses by hand"
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    written = {v for v in strings if re.fullmatch(r"RLIMIT_[A-Z]+|TOOLGYM_\w+", v)}
    assert not written, f"{module}.py writes wire fields itself: {written}"


def test_inside_uses_its_wire_helpers_in_every_mode():
    tree = ast.parse(INSIDE_SOURCE)
    calls = {
        fn.name: {n.func.id for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        for fn in tree.body
        if isinstance(fn, ast.FunctionDef)
    }
    assert {"read_request", "respond"} <= calls["serve"]
    assert "decode_setup" in calls["kernel"] and "cells" in calls["kernel"]  # set-up, then the cell loop
    assert {"read_request", "respond"} <= calls["cells"]
    assert {"request_from_env", "trailer"} <= calls["once"]
    assert f'"{wire.ENV_PREFIX}' in INSIDE_SOURCE and f'"{wire.ENV_NONCE}"' in INSIDE_SOURCE
