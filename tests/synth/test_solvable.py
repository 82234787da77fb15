"""The solvability filter (``toolgym synth --solvable-by POLICY --k K``), through the real CLI.

A toy family, ``coin``, makes the random policy's success rate a property of each task: the
secret number lies in a range of width 0 (a random guess always hits), 1 or 2 (it sometimes
does) or a million (it never does), so one run holds all three fates and the test can check each
candidate's status against the random policy run by the eval path (``toolgym.policy.evaluate``).
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from typer.testing import CliRunner

from toolgym.cli import app
from toolgym.data.dataset import Dataset
from toolgym.envs.rollout import Step
from toolgym.envs.strict import Integer
from toolgym.envs.tools import as_tool, tool
from toolgym.errors import ConfigError
from toolgym.policy.evaluate import evaluate, make_policy
from toolgym.spec import TaskDraft
from toolgym.synth import get_family, register_family, unregister_family
from toolgym.synth.candidate import synthesize_world
from toolgym.synth.config import SynthConfig
from toolgym.synth.family import Family
from toolgym.synth.run import synthesize
from toolgym.synth.solvable import ALWAYS_SOLVED, UNSOLVED, judge, verdict

runner = CliRunner()
WIDTHS = (0, 1, 2, 10**6)  # of the range the secret lies in: random hits 1/(width+1) of the time


class Box:
    """A world holding one secret number."""

    def __init__(self, data: dict[str, Any]):
        self.data = data

    def to_json(self) -> dict[str, Any]:
        return self.data


@tool("read")
def peek(world: Box) -> int:
    """The secret number."""
    return world.data["secret"]


@tool("read")
def submit(world: Box, answer: Integer) -> str:
    """Submit the secret number.

    Args:
        answer: The secret.
    """
    return "submitted"


class Coin(Family):
    """Peek at the secret and submit it; a random guess from the prompt's range hits 1/(width+1) of the time."""

    id = "coin"
    env_name = "Coin"
    version = 0
    summary = "toy family whose random-guess odds vary by task (tests only)"

    def make_world(self, seed: int, difficulty: int) -> Box:
        return Box({"secret": random.Random(seed).randrange(100, 1000)})

    def load_world(self, data: dict[str, Any]) -> Box:
        return Box(data)

    def make_task(self, world: Box, difficulty: int, rng: random.Random) -> TaskDraft:
        width = rng.choice(WIDTHS)
        lo = world.data["secret"] - rng.randint(0, width)
        return TaskDraft(
            prompt=f"The secret number lies in [{lo}, {lo + width}]: find it and submit it.",
            params={"lo": lo, "hi": lo + width},
            verifier_spec={"kind": "exact", "expected": world.data["secret"]},
            tool_config={},
        )

    def tools(self, tool_config: dict[str, Any]) -> list:
        return [as_tool(peek), as_tool(submit)]

    def reference(self, params: dict[str, Any], tool_config: dict[str, Any]):
        (r,) = yield Step([("peek", {})], "peeking")
        return r["content"]

    def random_answer(self, world, task, rng):
        return rng.randint(task.params["lo"], task.params["hi"])

    def bluff_answer(self, task, rng):
        return task.params["lo"] - 1

    def perturb(self, world, task, answer, rng):
        return [answer + 10**7]


@pytest.fixture(scope="module", autouse=True)
def coin_family():
    register_family("coin", Coin)
    yield
    unregister_family("coin")


# The gates' own random and bluff agents are off, so tasks a random guess solves reach the filter.
GATES_OFF = ("--family", "coin", "--difficulty", "1", "--random-tries", 0, "--bluff-tries", 0, "--workers", 1)


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def rows(path) -> tuple[list[tuple], list[tuple]]:
    """The dataset's tasks (id, ordinal, world) and candidates (every column), in order."""
    with Dataset(path, read_only=True) as ds:
        tasks = ds.con.execute("SELECT task_id, ordinal, world_id FROM tasks ORDER BY ordinal").fetchall()
        cands = ds.con.execute("SELECT * FROM candidates ORDER BY world_index, task_index").fetchall()
    return tasks, cands


def test_random_keeps_exactly_the_tasks_some_but_not_every_sample_solves(tmp_path):
    out, k = tmp_path / "coin.duckdb", 4
    r = run("synth", *GATES_OFF, "--count", 12, "--out", out, "--solvable-by", "random", "--k", k, "--seed", 3)
    assert r.exit_code == 0, r.output
    tasks, cands = rows(out)
    assert len(tasks) == 12
    # Every candidate's fate, recomputed with the eval path: k samples of the random policy seeded by --seed.
    config = SynthConfig(family="coin", difficulty=(1, 1), random_tries=0, bluff_tries=0, seed=3, workers=1)
    family = get_family("coin")
    items, want = [], {}
    for w in sorted({c[1] for c in cands}):
        res = synthesize_world(config, w)
        items += [(o.task, family.load_world(res.world.data)) for o in res.outcomes if o.task is not None]
    for result in evaluate(items, make_policy("random", seed=3), samples=k):
        c = result.correct
        want[result.task_id] = "shipped" if 0 < c < k else UNSOLVED if c == 0 else ALWAYS_SOLVED
    got = {f"coin-s3-w{w:06d}-t{t}": status for _, w, t, status, _ in cands}
    assert got == {tid: want.get(tid, "?") for tid in got}  # every candidate passed the gates here
    assert [t[0] for t in tasks] == [tid for tid, s in got.items() if s == "shipped"]
    assert {UNSOLVED, ALWAYS_SOLVED, "shipped"} <= set(got.values())  # all three fates occur
    assert "shipped 12 tasks" in r.output and "'unsolved'" in r.output and "'always_solved'" in r.output
    with Dataset(out, read_only=True) as ds:  # counted in the manifest like the gates
        counts = ds.summary()["gates"]["coin"]
        manifest = ds.manifest("coin")["config"]
    assert counts == {s: list(got.values()).count(s) for s in set(got.values())}
    assert (manifest["solvable_by"], manifest["solvable_k"], manifest["solvable_options"]) == ("random", k, {})
    reasons = {c[3]: c[4] for c in cands}
    assert reasons[UNSOLVED] == f"0/{k} samples of policy 'random' solved it"
    assert reasons[ALWAYS_SOLVED] == f"{k}/{k} samples of policy 'random' solved it"


def test_an_interrupted_or_extended_run_gives_the_same_rows_and_other_filter_settings_are_refused(tmp_path):
    whole, parts = tmp_path / "whole.duckdb", tmp_path / "parts.duckdb"
    args = ("synth", *GATES_OFF, "--solvable-by", "random", "--k", 3)
    assert run(*args, "--count", 10, "--out", whole).exit_code == 0
    for count in (1, 4, 10):  # each run resumes after the last committed candidate
        assert run(*args, "--count", count, "--out", parts).exit_code == 0
    assert rows(parts) == rows(whole)
    line = error_line(run(*args[:-1], 4, "--count", 12, "--out", parts))
    assert "different settings (solvable_k)" in line
    line = error_line(run(*args[:-3], "bluff", "--k", 3, "--count", 12, "--out", parts))
    assert "different settings (solvable_by)" in line
    line = error_line(run("synth", *GATES_OFF, "--count", 12, "--out", parts))  # the filter off is a change too
    assert "different settings (solvable_by, solvable_k, solvable_options)" in line


@pytest.mark.parametrize(("policy", "status"), [("reference", ALWAYS_SOLVED), ("null", UNSOLVED)])
def test_a_policy_that_always_or_never_solves_drops_everything_and_the_run_stops_at_the_candidate_limit(
    policy, status, tmp_path
):
    out = tmp_path / f"{policy}.duckdb"
    line = error_line(run("synth", "--family", "ledger", "--workers", 1, "--count", 1, "--out", out,
                          "--tasks-per-world", 4, "--solvable-by", policy, "--k", 2))  # fmt: skip
    # count 1 x max_candidates_per_task 20: stops at the first batch past 20 candidates (worlds of 4).
    assert (
        f"only 0 of 1 tasks shipped after 24 candidates (max_candidates_per_task 20); drops: {{'{status}': 24}}" in line
    )
    assert f"the --solvable-by policy {policy!r} mostly" in line
    with Dataset(out, read_only=True) as ds:  # what was judged is committed: a rerun resumes after it
        assert ds.gate_counts("ledger") == {"ledger": {status: 24}}
        assert ds.task_ids() == []


def test_max_turns_limits_the_filter_s_episodes_and_is_a_recorded_setting(tmp_path):
    """The reference solves every ledger task, but not in one turn: with --max-turns 1 all are unsolved."""
    out = tmp_path / "ledger.duckdb"
    args = ("synth", "--family", "ledger", "--workers", 1, "--count", 1, "--out", out, "--solvable-by", "reference")
    line = error_line(run(*args, "--k", 2, "--max-turns", 1))
    assert f"drops: {{'{UNSOLVED}': 21}}" in line  # worlds of 1 task: count 1 (cli.synth.default_tasks_per_world)
    with Dataset(out, read_only=True) as ds:
        assert ds.manifest("ledger")["config"]["solvable_options"] == {"max_turns": 1}
    assert "different settings (solvable_options)" in error_line(run(*args, "--k", 2, "--max-turns", 2))
    assert "--max-turns 1: policy options need --solvable-by" in error_line(
        run("synth", "--family", "ledger", "--count", 1, "--out", tmp_path / "y.duckdb", "--max-turns", 1)
    )


def test_usage_errors_are_one_line_before_any_file_is_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = ("synth", "--family", "ledger", "--count", 1, "--workers", 1, "--out", "x.duckdb")
    line = error_line(run(*base, "--solvable-by", "rando"))
    assert "unknown policy 'rando'" in line and "known: reference, null, random" in line
    assert "Invalid value for '--k'" in error_line(run(*base, "--solvable-by", "random", "--k", 0))
    line = error_line(run(*base, "--checkpoint", "runs/lm", "--temperature", 0.5))
    want = "--checkpoint runs/lm, --temperature 0.5: policy options need --solvable-by POLICY (the filter's policy)"
    assert line == f"error: {want}"
    line = error_line(run(*base, "--solvable-by", "random", "--max-new-tokens", 8))
    assert "policy 'random' does not take --max-new-tokens 8" in line
    line = error_line(run(*base, "--solvable-by", "model", "--checkpoint", "nowhere", "--device", "cpu"))
    assert line == "error: No checkpoint directory at nowhere."  # the policy is built before the dataset
    assert list(tmp_path.iterdir()) == []


def test_the_library_refuses_a_filter_without_a_solver_and_speed_options_do_not_change_the_resume_key(tmp_path):
    config = SynthConfig(family="ledger", count=1, workers=1, solvable_by="random")
    with pytest.raises(ConfigError, match="needs a solver"):
        synthesize(config, tmp_path / "x.duckdb")
    with pytest.raises(ConfigError, match="solvable_by is not set"):
        synthesize(SynthConfig(family="ledger", count=1, workers=1), tmp_path / "x.duckdb", solver=lambda i, k: [])
    assert list(tmp_path.iterdir()) == []
    fast = config.model_copy(update={"solvable_options": {"concurrency": 8}})
    assert fast.resume_key() == config.resume_key()
    assert "solvable_by" not in SynthConfig(family="ledger").resume_key()  # datasets made before the filter resume
    with pytest.raises(ValueError, match="need a solvable_by policy"):
        SynthConfig(family="ledger", solvable_options={"temperature": 1.0})
    with pytest.raises(ValueError, match="seeded with the run's seed"):
        SynthConfig(family="ledger", solvable_by="random", solvable_options={"seed": 1})


def test_judge_keeps_exactly_the_tasks_with_some_but_not_all_successes():
    config = SynthConfig(
        family="coin", difficulty=(1, 1), random_tries=0, bluff_tries=0, workers=1, tasks_per_world=8,
        solvable_by="random", solvable_k=5,
    )  # fmt: skip
    results = [synthesize_world(config, w) for w in range(3)]
    shipped = [(r.index, o.task_index) for r in results for o in r.outcomes if o.task is not None]
    counts = {key: i % 6 for i, key in enumerate(shipped)}  # 0 … 5 successes out of 5

    def solver(items, k):
        return [counts[(int(t.world_id[-6:]), int(t.task_id.rsplit("t", 1)[1]))] for t, _ in items]

    verdicts = judge(results, config, solver)
    assert {key for key in shipped if key not in verdicts} == {key for key, c in counts.items() if 0 < c < 5}
    assert {key for key, v in verdicts.items() if v[0] == UNSOLVED} == {key for key, c in counts.items() if c == 0}
    with pytest.raises(ValueError, match="2 counts for"):
        judge(results, config, lambda items, k: [1, 1])
    with pytest.raises(ValueError, match="6 successes out of 5"):
        verdict(6, 5, "random")
