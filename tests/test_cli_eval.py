"""``toolgym eval``'s files (results.jsonl, summary.json, report.md and its PNGs), resume, and its one-line errors."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from toolgym.cli import app
from toolgym.errors import ConfigError
from toolgym.policy.report import PLOTS
from toolgym.policy.results import default_out, open_run, read_results
from toolgym.policy.runner import EpisodeRecord

runner = CliRunner()
FIELDS = ["task_id", "family", "difficulty", "sample", "reward", "reason", "turns", "tool_calls", "tokens", "text"]
ARGS = ("eval", "--policy", "random", "--limit", 4, "-n", 3, "--difficulty", "1-2")


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def error_line(result):
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def rows(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def keyed(out):
    return {(r["task_id"], r["sample"]): r for r in rows(out)}


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """One uninterrupted eval: what every resumed one must equal."""
    out = tmp_path_factory.mktemp("full") / "eval"
    r = run(*ARGS, "--out", out)
    assert r.exit_code == 0, r.output
    return out


def test_eval_writes_results_summary_report_and_valid_pngs(full):
    lines = rows(full)
    assert len(lines) == 12 and all(list(r) == FIELDS for r in lines)
    assert len({(r["task_id"], r["sample"]) for r in lines}) == 12
    assert all(r["tokens"] is None and r["text"].startswith("<|system|>") and r["turns"] >= 1 for r in lines)
    assert all(r["reason"] for r in lines)
    summary = json.loads((full / "summary.json").read_text())
    assert summary["complete"] and summary["episodes"] == 12 and summary["toolgym"]
    assert summary["families"] == {"trip": 1} and summary["policy"]["name"] == "random"
    assert summary["settings"]["samples"] == 3 and summary["settings"]["options"] == {"seed": 0}
    overall = summary["table"][-1]
    assert (overall["family"], overall["difficulty"], overall["tasks"]) == ("all", "all", 4)
    assert {"pass@1", "pass@3", "pass^1", "pass^3"} <= set(overall)
    report = (full / "report.md").read_text()
    assert "| family | difficulty |" in report and "pass@3" in report
    if importlib.util.find_spec("matplotlib") is None:  # a core dependency, but the fallback stays honest
        assert "No plots: matplotlib is not installed (`pip install matplotlib`)" in report
        assert not any((full / name).exists() for name in PLOTS)
        return
    from PIL import Image  # a dependency of matplotlib

    for name in PLOTS:
        assert f"]({name})" in report
        assert (full / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(full / name) as img:
            img.verify()
            assert img.size[0] > 100 and img.size[1] > 100


def test_resume_after_a_truncated_last_line_redoes_only_what_is_missing(full, tmp_path):
    out = tmp_path / "eval"
    (out).mkdir()
    (out / "summary.json").write_text((full / "summary.json").read_text())
    text = (full / "results.jsonl").read_text()
    kept = text.splitlines(keepends=True)[:5]
    (out / "results.jsonl").write_text("".join(kept) + kept[-1][:40])  # killed while writing line 6
    r = run(*ARGS, "--out", out)
    assert r.exit_code == 0, r.output
    assert "(5 resumed)" in r.output
    assert keyed(out) == keyed(full) and len(rows(out)) == 12  # nothing redone twice, nothing lost
    again = run(*ARGS, "--out", out, "-k", 2)  # complete: nothing runs; another -k is only another table
    assert again.exit_code == 0 and "(12 resumed)" in again.output and "pass@2" in again.output
    assert len(rows(out)) == 12


def test_a_killed_eval_resumes_to_the_same_results(full, tmp_path):
    out = tmp_path / "eval"
    cmd = [sys.executable, "-m", "toolgym.cli", *map(str, ARGS), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # killed at its first line
    deadline = time.monotonic() + 60
    results = out / "results.jsonl"
    while time.monotonic() < deadline and proc.poll() is None:
        if results.exists() and results.stat().st_size > 0:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert 0 < len(read_results(results)) < 12
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert keyed(out) == keyed(full) and len(rows(out)) == 12


def test_other_settings_in_the_same_out_are_refused_naming_them(full, tmp_path):
    out = tmp_path / "eval"
    assert run(*ARGS, "--out", out).exit_code == 0
    before = (out / "results.jsonl").read_bytes()
    line = error_line(run("eval", "--policy", "random", "--limit", 4, "-n", 2, "--difficulty", "1-3", "--out", out))
    assert "holds an eval with other settings" in line
    assert "samples (3 there, 2 here)" in line and "difficulty ([1, 2] there, [1, 3] here)" in line
    assert "seed" not in line
    line = error_line(run(*ARGS, "--seed", 7, "--out", out))
    assert "options ({'seed': 0} there, {'seed': 7} here)" in line
    assert (out / "results.jsonl").read_bytes() == before


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--policy", "rand"), "unknown policy 'rand'; did you mean random? (closest first; known: reference,"),
        (
            ("--policy", "random", "--checkpoint", "ckpt"),
            "policy 'random' does not take --checkpoint ckpt (it takes --seed)",
        ),
        (("--policy", "null", "--temperature", 0.5, "--top-p", 0.9), "does not take --temperature 0.5, --top-p 0.9"),
        (("--policy", "bluff", "--base-url", "http://x", "--api-key-env", "K"), "--base-url http://x, --api-key-env K"),
        (("--concurrency", 0), "Invalid value for '--concurrency'"),
    ],
)
def test_unknown_policies_and_options_are_one_line_and_write_nothing(args, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert needle in error_line(run("eval", *args, "--limit", 1, "-n", 1))
    assert list(tmp_path.iterdir()) == []


def test_only_the_options_given_reach_the_policy_entry(tmp_path, monkeypatch):
    from toolgym import POLICIES
    from toolgym.policy.evaluate import reference_policy

    got = []

    def entry(**options):
        got.append(options)
        return reference_policy(seed=options["seed"])

    POLICIES.register("spy", entry)
    try:
        monkeypatch.chdir(tmp_path)
        r = run("eval", "--policy", "spy", "--limit", 1, "-n", 1, "--difficulty", 1, "--temperature", 0, "--model", "m")
        assert r.exit_code == 0, r.output
        r = run("eval", "--policy", "spy", "--limit", 1, "-n", 1, "--difficulty", 1, "--concurrency", 2)
        assert r.exit_code == 0, r.output
    finally:
        POLICIES.unregister("spy")
    assert got == [{"seed": 0, "temperature": 0.0, "model": "m"}, {"seed": 0, "concurrency": 2}]
    outs = sorted((tmp_path / "runs" / "eval").iterdir())
    assert len(outs) == 2 and all(p.name.startswith("spy-") for p in outs)  # temperature/model change the settings


def test_default_out_is_deterministic_and_concurrency_does_not_change_it():
    a = {"policy": "p", "options": {"seed": 0}, "samples": 2}
    assert default_out("p", a) == default_out("p", dict(reversed(list(a.items()))))
    assert default_out("p", a) != default_out("p", {**a, "samples": 3})
    assert default_out("a/b", a).parent.as_posix() == "runs/eval" and "/" not in default_out("a/b", a).name


def _record(i):
    return EpisodeRecord("t", "trip", 1, i, 1.0, "correct", 2, 1, None, "x")


def test_read_results_drops_a_cut_line_and_refuses_a_corrupt_one(tmp_path):
    path = tmp_path / "results.jsonl"
    good = "".join(json.dumps(_record(i).to_json()) + "\n" for i in range(3))
    path.write_text(good + json.dumps(_record(3).to_json()))  # complete JSON, but no newline: cut short
    assert [r.sample for r in read_results(path)] == [0, 1, 2]
    assert path.read_text() == good  # the cut line is gone from the file, so appends start clean
    path.write_text(good.replace('"sample": 1', '"sampl'))
    with pytest.raises(ConfigError, match="line 2 is not an episode record"):
        read_results(path)
    # a line that is JSON but not a record, and a torn tail: refused, and the file left as it was
    corrupt = good.replace('"sample": 1', '"not_a_field": 1') + '{"task_id": "cut'
    path.write_text(corrupt)
    with pytest.raises(ConfigError, match="line 2 is not an episode record"):
        read_results(path)
    assert path.read_text() == corrupt


def test_open_run_refuses_results_without_a_summary(tmp_path):
    (tmp_path / "results.jsonl").write_text(json.dumps(_record(0).to_json()) + "\n")
    with pytest.raises(ConfigError, match="holds results.jsonl but no summary.json"):
        open_run(tmp_path, {"samples": 1}, {})
    assert open_run(tmp_path / "new", {"samples": 1}, {"toolgym": "x"}) == []
    assert json.loads((tmp_path / "new" / "summary.json").read_text())["complete"] is False
