"""`toolgym train lm` and `toolgym bench model` end to end on tiny settings (real models)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from toolgym.bench.model import ModelBenchConfig, parse_int_list, report_tables, run_model_bench
from toolgym.cli import app
from toolgym.policy.checkpoint import load_checkpoint


def test_bench_library_on_a_tiny_model(make_config):
    config = ModelBenchConfig(
        contexts=[96, 160],
        decode_batch_sizes=[1, 2],
        decode_steps=2,
        ffn_batch=2,
        ffn_seq_len=32,
        ffn_reps=1,
        corpus_bytes=150_000,
        quality_batch_size=2,
        quality_seq_len=48,
        quality_topk=8,
        pretrain_steps=3,
        branch_steps=2,
        warmup_steps=2,
        eval_batches=1,
    )
    lines: list[str] = []
    report = run_model_bench(config, make_config(vocab_size=320), log=lines.append, progress=False)
    assert [(r["context"], r["batch"]) for r in report.attention] == [(96, 1), (96, 2), (160, 1), (160, 2)]
    assert all(r["decode_dsa_ms_per_token"] > 0 and r["prefill_speedup"] > 0 for r in report.attention)
    c = report.cache  # 3 layers x (32 latent + 8 rope [+ 16 indexer]) x 4 bytes vs 4 heads x (16+8+16)
    assert (c["dsa_bytes_per_token"], c["mla_bytes_per_token"], c["mha_bytes_per_token"]) == (672, 480, 1920)
    moe, dense = report.ffn
    assert moe["total_params"] > dense["total_params"] and moe["active_params"] < moe["total_params"]
    q = report.quality
    assert q["dense_val_loss"] > 0 and q["dsa_val_loss"] > 0 and "stdlib" in q["corpus"]
    assert len(report.balance) == 2 and all(r["max_over_mean_learned_bias"] >= 1 for r in report.balance)
    assert len(report_tables(report)) == 6 and lines


def test_parse_int_list():
    assert parse_int_list("1024, 4096") == [1024, 4096]
    from toolgym.errors import ConfigError

    for bad in ("", "a,b", "0"):
        with pytest.raises(ConfigError):
            parse_int_list(bad)


def test_train_lm_command_writes_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "lm"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "lm",
            "--out",
            str(out),
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--seq-len",
            "32",
            "--eval-every",
            "2",
            "--corpus-bytes",
            "150000",
            "--vocab-size",
            "300",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "held-out loss" in result.output
    ck = load_checkpoint(out)
    assert ck.meta["step"] == 2 and ck.model.config.vocab_size == ck.tokenizer.vocab_size == 300
    again = CliRunner().invoke(
        app,
        [
            "train",
            "lm",
            "--out",
            str(tmp_path / "warm"),
            "--init",
            str(out),
            "--stage",
            "indexer_warmup",
            "--steps",
            "1",
            "--batch-size",
            "2",
            "--seq-len",
            "32",
            "--corpus-bytes",
            "150000",
        ],
    )
    assert again.exit_code == 0, again.output
    assert "indexer KL" in again.output


def test_cli_reports_bad_arguments_in_one_line():
    runner = CliRunner()
    bad = runner.invoke(app, ["bench", "model", "--contexts", "1k"])
    assert bad.exit_code == 2 and "error:" in bad.output
    bad = runner.invoke(app, ["train", "lm", "--stage", "sparsest"])
    assert bad.exit_code == 2 and "stage" in bad.output


@pytest.mark.slow
def test_bench_model_command_small(tmp_path):
    path = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app, ["bench", "model", "--contexts", "256", "--batches", "1", "--no-quality", "--json", str(path)]
    )
    assert result.exit_code == 0, result.output
    assert "DSA vs dense attention" in result.output and json.loads(path.read_text())["attention"]


def test_bench_eval_splits_the_time_into_append_and_generate(tmp_path):
    """Same episodes at 1 and 2 slots: same tokens; each run's append and generate seconds are real parts of it."""
    from toolgym.bench.eval import EvalBenchConfig, micro_checkpoint, run_eval_bench

    checkpoint = micro_checkpoint(tmp_path / "micro")
    config = EvalBenchConfig(checkpoint=checkpoint, tasks=1, samples=2, slots=[1, 2], max_new_tokens=4, max_turns=2)
    one, two = run_eval_bench(config)
    assert (one.slots, two.slots) == (1, 2) and one.tokens == two.tokens > 0
    for run in (one, two):
        assert 0 < run.append_s and 0 < run.generate_s and run.append_s + run.generate_s <= run.seconds
