"""Malformed ``--difficulty`` ranges and Ctrl-C: each one ``error:`` line, never a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from toolgym.cli import app
from toolgym.cli.errors import parse_range
from toolgym.errors import ConfigError
from toolgym.synth.run import BATCH_SECONDS

runner = CliRunner()


@pytest.mark.parametrize("text", ["3-", "-3", "1-2-3", "5-1", "0-2", " ", "a", "", " 3", "+3", "1 -5", "3-6", "1-"])
@pytest.mark.parametrize("command", [("synth",), ("eval", "--policy", "null"), ("tasks", "-d", "nowhere.duckdb")])
def test_every_malformed_range_is_one_error_line(text, command, tmp_path):
    args = [*command, "--difficulty", text]
    if command[0] == "synth":
        args += ["--out", str(tmp_path / "d.duckdb")]
    r = runner.invoke(app, args)
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert lines[0].startswith("error: difficulty") and repr(text) in lines[0], r.output
    assert not (tmp_path / "d.duckdb").exists()


@settings(max_examples=400, deadline=None)
@given(
    st.text(alphabet="0123456789- +a", max_size=6)
    | st.tuples(st.integers(0, 7), st.integers(0, 7)).map("{0[0]}-{0[1]}".format)
)
def test_parse_range_accepts_exactly_n_and_lo_dash_hi(text):
    parts = text.split("-")
    wellformed = 1 <= len(parts) <= 2 and all(p.isdigit() and p.isascii() for p in parts)
    bounds = [int(p) for p in parts] if wellformed else []
    if wellformed and 1 <= bounds[0] <= bounds[-1] <= 5:
        assert parse_range(text) == (bounds[0], bounds[-1])
    else:
        with pytest.raises(ConfigError, match="^difficulty") as err:
            parse_range(text)
        assert str(err.value).endswith(f"got {text!r}")


def _synth(out, count, *extra):
    return [sys.executable, "-m", "toolgym.cli", "synth", "--count", str(count), "--out", str(out), *extra]


def _rows(path):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {
            table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
            for table in ("worlds", "tasks", "toolsets", "trajectories", "candidates")
        }
    finally:
        con.close()


@pytest.mark.slow  # synthesizes 2,000 tasks so the interrupt lands mid-run; the other Ctrl-C tests stay default
def test_ctrl_c_during_synth_is_one_line_exit_130_and_the_rerun_resumes_to_the_same_rows(tmp_path):
    """A terminal's Ctrl-C signals the whole foreground process group: the CLI and its pool workers."""
    # enough tasks to outlast the first batch (up to BATCH_SECONDS) on a fast machine: ~8 s at 268 tasks/s
    count, opts = 2000, ("--workers", "2", "--executor", "local", "--difficulty", "1-2")
    out = tmp_path / "interrupted.duckdb"
    proc = subprocess.Popen(
        _synth(out, count, *opts),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell's foreground job; SIGINT not ignored
    )
    deadline = time.monotonic() + 60
    while not out.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(BATCH_SECONDS + 0.5)  # past the first batch's commit
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, stdout, stderr)
    assert stderr.splitlines() == [
        "error: interrupted; the dataset keeps every committed batch; rerun the same command to resume"
    ], stderr
    resumed = subprocess.run(_synth(out, count, *opts), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0 and "resumed:" in resumed.stdout, (resumed.stdout, resumed.stderr)
    whole = tmp_path / "whole.duckdb"
    assert subprocess.run(_synth(whole, count, *opts), capture_output=True, timeout=300).returncode == 0
    assert _rows(out) == _rows(whole)


def test_ctrl_c_during_train_lm_says_it_resumes(tmp_path):
    """Ctrl-C after the first checkpoint: one line that says the rerun resumes (it used to say only 'interrupted')."""
    out = tmp_path / "lm run"  # a space in the path too
    args = ["--model", "micro", "--corpus-bytes", "100000", "--vocab-size", "300", "--batch-size", "2"]
    args += ["--seq-len", "64", "--steps", "100000", "--checkpoint-every", "2", "--eval-every", "50"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "toolgym.cli", "train", "lm", "--out", str(out), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while not (out / "config.json").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, stderr)
    assert stderr.splitlines() == [
        f"error: interrupted; {out} keeps the last checkpoint; rerun the same command to resume from it"
    ], stderr
