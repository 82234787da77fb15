"""`toolgym bench train`: SFT vs `train lm` tokens/s on the same model, on tiny real settings."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from toolgym.bench.train import TrainBenchConfig, run_train_bench
from toolgym.cli import app

TINY = dict(models=["micro"], steps=1, warmup=0, rounds=1, batch_size=1, seq_len=2048, tasks=2, family="trip")
TINY["corpus_bytes"] = 100_000


def test_rows_count_what_each_loop_fed():
    lines: list[str] = []
    lm, sft = run_train_bench(TrainBenchConfig(**TINY), log=lines.append)
    assert (lm.model, lm.kind, sft.model, sft.kind) == ("micro", "lm", "micro", "sft")
    assert lm.steps == sft.steps == 1 and lm.seconds > 0 and sft.seconds > 0
    # a LM window is all real, all loss-bearing: seq_len tokens per row
    assert lm.tokens == lm.action_tokens == lm.padded == 2048 and lm.pad_share == 0
    # SFT: one episode per row (batch 1: no padding; trip d1 runs are cut at an action to fit), loss only on actions
    assert sft.tokens == sft.padded <= 2048 and 0 < sft.action_tokens < sft.tokens
    assert any("episodes" in line for line in lines)


def test_seq_len_too_short_for_any_episode_is_a_clear_error():
    from toolgym.errors import ConfigError

    with pytest.raises(ConfigError, match="seq_len"):
        run_train_bench(TrainBenchConfig(**{**TINY, "seq_len": 16}))


# Slow: it reruns the whole tiny bench (~10 s of CPU, the default tier's costliest test measured) through
# the CLI; test_rows_count_what_each_loop_fed runs the same run_train_bench in the default tier.
@pytest.mark.slow
def test_bench_train_command_prints_both_loops_and_the_ratio():
    args = ["bench", "train", "--models", "micro", "--steps", "1", "--rounds", "1", "--batch-size", "1"]
    args += ["--seq-len", "2048", "--tasks", "2", "--corpus-bytes", "100000", "--family", "trip"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "toolgym bench train" in result.output and "× first" in result.output
    assert "target: SFT ≥ 0.8×" in result.output
    bad = CliRunner().invoke(app, ["bench", "train", "--models", "huge"])
    assert bad.exit_code == 2 and "error:" in bad.output


def test_train_sft_names_its_model_configs(tmp_path):
    data = tmp_path / "d.duckdb"
    data.write_bytes(b"")
    bad = CliRunner().invoke(app, ["train", "sft", "-d", str(data), "--model", "huge", "--out", str(tmp_path / "o")])
    assert bad.exit_code == 2 and "--model must be default or micro" in bad.output
