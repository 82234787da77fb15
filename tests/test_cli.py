"""The CLI, through Typer's CliRunner: each command works, and bad input is one line with exit code 2."""

import json

import pytest
from typer.testing import CliRunner

from toolgym.cli import app
from toolgym.synth.dataset import Dataset

runner = CliRunner()


def run(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def error_line(result):
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_families():
    r = run("families")
    assert r.exit_code == 0 and "toolgym/TripPlanning-v0" in r.output


def test_synth_show_export_eval(tmp_path):
    ds = tmp_path / "d.duckdb"
    r = run("synth", "--count", 6, "--difficulty", "2-3", "--workers", 1, "--out", ds)
    assert r.exit_code == 0, r.output
    assert "shipped 6 tasks" in r.output
    with Dataset(ds, read_only=True) as d:
        tid = d.task_ids()[0]
    r = run("show", tid, "--dataset", ds)
    assert r.exit_code == 0 and "reference trajectory" in r.output and "get_all_cities" in r.output
    r = run("show", "--dataset", ds)
    assert r.exit_code == 0 and "quality gates" in r.output and "seed" in r.output
    r = run("export", ds, "--out", tmp_path / "x.jsonl")
    assert r.exit_code == 0 and "wrote 6 rows" in r.output
    assert len((tmp_path / "x.jsonl").read_text().splitlines()) == 6
    r = run("eval", "--dataset", ds, "--policy", "reference", "-n", 2, "-k", 1, "-k", 2)
    assert r.exit_code == 0, r.output
    assert "pass@1" in r.output and "1.000" in r.output
    r = run("eval", "--dataset", ds, "--policy", "random", "-n", 2)
    assert r.exit_code == 0 and "0.000" in r.output


def test_show_and_eval_without_a_dataset():
    r = run("show", "trip-fly-s3-d1")
    assert r.exit_code == 0 and "Requirements" in r.output
    r = run("eval", "--policy", "null", "--limit", 2, "-n", 1, "--difficulty", "1")
    assert r.exit_code == 0 and "0.000" in r.output


def test_play_a_task_by_hand():
    r = run("play", "trip-fly-s3-d1", input='get_all_cities\nget_hotel_info name=Nowhere\nsubmit {"answer": []}\n')
    assert r.exit_code == 0, r.output
    assert '"cities"' in r.output and "no hotel named" in r.output and "episode over: reward 0.0" in r.output
    r = run("play", "trip-fly-s3-d1", input="quit\n")
    assert r.exit_code == 0 and "stopped" in r.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("synth", "--count", 0), "count"),
        (("synth", "--difficulty", "0-9"), "difficulty range"),
        (("synth", "--difficulty", "hard"), "difficulty must look like"),
        (("synth", "--family", "trp"), "did you mean trip"),
        (("show", "nope"), "not an on-the-fly task id"),
        (("show",), "give a task id, or --dataset"),
        (("eval", "--policy", "oracle"), "unknown policy"),
        (("eval", "-n", 2, "-k", 5), "every k must be between"),
        (("export", "missing.duckdb", "--out", "x.jsonl"), "does not exist"),
        (("export", "missing.duckdb", "--out", "x.csv", "--format", "csv"), "format must be jsonl or parquet"),
    ],
)
def test_bad_arguments_are_one_line_with_exit_code_2(args, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert needle in error_line(run(*args))


def test_corrupt_dataset_is_named(tmp_path):
    bad = tmp_path / "bad.duckdb"
    bad.write_text("garbage" * 1000)
    assert "not a readable toolgym dataset" in error_line(run("show", "x", "--dataset", bad))


def test_synth_refuses_a_dataset_built_with_other_settings(tmp_path):
    ds = tmp_path / "d.duckdb"
    assert run("synth", "--count", 2, "--workers", 1, "--out", ds).exit_code == 0
    assert "different settings (seed)" in error_line(
        run("synth", "--count", 2, "--seed", 1, "--workers", 1, "--out", ds)
    )
    r = run("synth", "--count", 2, "--workers", 1, "--out", ds)
    assert r.exit_code == 0 and "shipped 0 tasks" in r.output  # already complete: nothing to do


def test_unknown_command_is_a_usage_error():
    r = run("sinth")
    assert r.exit_code == 2 and "No such command" in r.output


def test_export_rows_are_json(tmp_path, trip_dataset):
    out = tmp_path / "rows.jsonl"
    assert run("export", trip_dataset, "--out", out, "--split", "train").exit_code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and {r["split"] for r in rows} == {"train"}
