"""save -> load -> same outputs; broken checkpoints fail with a message that names the problem."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from toolgym.errors import CheckpointError
from toolgym.policy.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture
def saved(tmp_path, make_model, small_tokenizer, tokens):
    model = make_model(double=False)
    model.layers[1].ffn.gate.bias.copy_(torch.linspace(-1, 1, 8))  # buffers travel too
    path = save_checkpoint(tmp_path / "ck", model, small_tokenizer, {"step": 7})
    return path, model


def test_round_trip_gives_the_same_outputs(saved, tokens, small_tokenizer):
    path, model = saved
    ck = load_checkpoint(path)
    seq = tokens(2, 20)
    torch.testing.assert_close(ck.model(seq).logits, model(seq).logits, atol=0, rtol=0)
    assert ck.meta == {"step": 7} and ck.model.config == model.config
    assert ck.tokenizer.to_str() == small_tokenizer.to_str()


def test_overwrite_is_atomic_and_leaves_no_temporaries(saved, small_tokenizer):
    path, model = saved
    save_checkpoint(path, model, small_tokenizer, {"step": 8})
    assert [p.name for p in path.parent.iterdir()] == ["ck"]
    assert load_checkpoint(path).meta["step"] == 8


def test_truncated_weights_are_named(saved):
    path, _ = saved
    w = path / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="model.safetensors.*truncated or corrupt"):
        load_checkpoint(path)


def test_truncated_weights_without_checksum_still_fail_clearly(saved):
    path, _ = saved
    cfg = json.loads((path / "config.json").read_text())
    del cfg["weights_sha256"]
    (path / "config.json").write_text(json.dumps(cfg))
    w = path / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(path)


def test_mismatched_config_names_the_tensors(saved):
    path, _ = saved
    cfg = json.loads((path / "config.json").read_text())
    cfg["model"]["dim"] = 96
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="shape mismatches.*embed.weight"):
        load_checkpoint(path)


def test_missing_and_unexpected_tensors_are_named(saved):
    path, _ = saved
    state = load_file(str(path / "model.safetensors"))
    state.pop("head.weight")
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(path / "model.safetensors"))
    cfg = json.loads((path / "config.json").read_text())
    cfg.pop("weights_sha256")
    (path / "config.json").write_text(json.dumps(cfg))
    names = r"missing tensors \['head.weight'\].*unexpected tensors \['extra.weight'\]"
    with pytest.raises(CheckpointError, match=names):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: (p / "tokenizer.json").unlink(), "missing tokenizer.json"),
        (lambda p: (p / "config.json").write_text("{not json"), "not valid JSON"),
        (lambda p: (p / "config.json").write_text('{"format": "other"}'), "format 'other'"),
        (lambda p: (p / "tokenizer.json").write_text("{}"), "Cannot load tokenizer"),
    ],
)
def test_other_broken_checkpoints(saved, mutate, message):
    path, _ = saved
    mutate(path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_unknown_config_key_and_small_vocab(saved):
    path, _ = saved
    cfg = json.loads((path / "config.json").read_text())
    cfg["model"]["n_expertz"] = 3
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="n_expertz"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="No checkpoint directory"):
        load_checkpoint(path / "nope")
