"""`toolgym bench grpo`: batch 1 and batched rollouts generate the same tokens; the step's parts add up."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from toolgym.bench.eval import micro_checkpoint
from toolgym.bench.grpo import GRPOBenchConfig, run_grpo_bench
from toolgym.cli import app


def test_batch_one_and_batched_run_the_same_episodes_and_the_step_parts_add_up(tmp_path):
    ck = micro_checkpoint(tmp_path / "micro")
    config = GRPOBenchConfig(checkpoint=ck, tasks=2, group_size=2, max_new_tokens=6, max_turns=2, rounds=2, threads=1)
    rows, parts = run_grpo_bench(config)
    assert [r.batch for r in rows] == [1, 4] and all(r.episodes == 4 for r in rows)
    assert rows[0].generated == rows[1].generated > 0  # seeded per episode: the same tokens either way
    assert all(r.seconds > 0 and r.tokens_per_s > 0 for r in rows)
    assert parts["train"] > 0  # the filters are off: every episode trains
    assert sum(parts[k] for k in ("generate", "prefill", "env", "train", "other")) == pytest.approx(
        parts["total"], rel=0.05
    )


def test_bench_grpo_refuses_bad_arguments_in_one_line(tmp_path):
    for args in (["--family", "nope"], ["--group-size", "1"], ["--checkpoint", str(tmp_path / "none")]):
        result = CliRunner().invoke(app, ["bench", "grpo", *args])
        assert result.exit_code == 2, (args, result.output)
        assert result.output.strip().startswith("error:") and len(result.output.strip().splitlines()) == 1, args
