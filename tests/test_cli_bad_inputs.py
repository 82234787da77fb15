"""Issue 10's bad inputs at the command line: each is one ``error:`` line, exit 2, and nothing written.

A corrupt or mismatched checkpoint (``eval --policy model`` and ``serve``), ``serve --device cuda``
where torch sees no CUDA device, and an unreachable endpoint (``eval --policy openai``). The
library-level cases (the env's reply to a model that returns no tool calls or malformed
arguments, OpenAI-style errors for unknown request fields, a killed eval resuming) are in
``tests/policy/test_openai_policy.py``, ``tests/policy/test_serve.py`` and ``tests/test_cli_eval.py``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from toolgym.cli import app

runner = CliRunner()


def error_line(*args: object) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A small real checkpoint (300-id BPE, the micro model), saved to disk."""
    from toolgym.policy.checkpoint import save_checkpoint
    from toolgym.policy.corpus import stdlib_corpus
    from toolgym.policy.model import ModelConfig, Transformer
    from toolgym.policy.tokenizer import Tokenizer

    tok = Tokenizer.train(stdlib_corpus(max_bytes=100_000, val_fraction=0.5).train, vocab_size=300)
    model = Transformer(ModelConfig.micro(vocab_size=tok.vocab_size), seed=0).eval()
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "ck", model, tok)


def corrupt(path: Path) -> str:
    w = path / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    return "truncated or corrupt"


def mismatched(path: Path) -> str:
    cfg = json.loads((path / "config.json").read_text())
    cfg["model"]["dim"] += 32
    (path / "config.json").write_text(json.dumps(cfg))
    return "shape mismatches"


def missing(path: Path) -> str:
    (path / "tokenizer.json").unlink()
    return "tokenizer.json"


@pytest.mark.parametrize("breaks", [corrupt, mismatched, missing])
@pytest.mark.parametrize("command", ["eval", "serve"])
def test_a_broken_checkpoint_is_one_line_and_writes_nothing(checkpoint, tmp_path, monkeypatch, breaks, command):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(checkpoint, bad)
    needle = breaks(bad)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    if command == "eval":
        line = error_line("eval", "--policy", "model", "--checkpoint", bad, "--device", "cpu", "--limit", 1, "-n", 1)
    else:
        line = error_line("serve", bad, "--port", 0, "--device", "cpu")
    assert needle in line, line
    assert list(work.iterdir()) == []  # no runs/eval/… directory


def test_an_unreachable_endpoint_is_one_line_and_keeps_what_was_written(tmp_path, monkeypatch):
    from toolgym.policy.serve import listen

    sock = listen("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    sock.close()  # nothing listens there now
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    for model in ((), ("--model", "m")):  # the one-model lookup and the probe both fail at once
        line = error_line("eval", "--policy", "openai", "--base-url", url, *model, "--limit", 1, "-n", 1)
        assert f"cannot reach the endpoint {url}" in line
    assert time.monotonic() - started < 20
    assert list(tmp_path.iterdir()) == []
    out = tmp_path / "kept"  # an earlier run's files in --out are left as they were
    out.mkdir()
    (out / "note.txt").write_text("mine")
    error_line("eval", "--policy", "openai", "--base-url", url, "--limit", 1, "-n", 1, "--out", out)
    assert [p.name for p in out.iterdir()] == ["note.txt"] and (out / "note.txt").read_text() == "mine"


def test_serve_device_cuda_without_cuda_is_one_line(checkpoint, tmp_path, monkeypatch):
    """As ``eval --device cuda``: one error line before the checkpoint is loaded (was a pin_memory traceback)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(tmp_path)
    assert "torch sees no CUDA device" in error_line("serve", checkpoint, "--port", 0, "--device", "cuda")
    assert "--device must be" in error_line("serve", checkpoint, "--port", 0, "--device", "tpu")
    assert list(tmp_path.iterdir()) == []


def test_training_on_a_device_that_is_not_there_is_one_line_before_any_work(tmp_path, monkeypatch):
    """``train lm``, ``train sft`` and ``bench learn`` resolve ``--device`` first: no corpus, no synth, no files."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.duckdb").write_bytes(b"")  # train sft checks the dataset exists first; never opened here
    assert "torch sees no CUDA device" in error_line("train", "lm", "--device", "cuda", "--out", "lm")
    assert "device must be" in error_line("train", "lm", "--device", "tpu", "--out", "lm")
    assert "torch sees no CUDA device" in error_line("train", "sft", "-d", "d.duckdb", "--device", "cuda:1")
    assert "torch sees no CUDA device" in error_line("bench", "learn", "--device", "cuda", "--out", "run")
    assert "--device must be cpu, cuda or auto" in error_line("bench", "learn", "--device", "gpu", "--out", "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.duckdb"]


def test_copy_row_options_that_would_do_nothing_or_clash_are_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.duckdb").write_bytes(b"")  # never opened: the options are checked first
    assert "need --copy-every K > 0" in error_line("train", "sft", "-d", "d.duckdb", "--copy-lookup")
    assert "need --copy-every K > 0" in error_line("train", "lm", "--copy-cue", 2, "--out", "lm")
    both = ("--copy-every", 3, "--copy-cue", 2, "--copy-lookup")
    assert "pick one" in error_line("train", "sft", "-d", "d.duckdb", *both)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.duckdb"]
