"""save -> load -> same outputs; broken checkpoints fail with a message that names the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from toolgym.errors import CheckpointError
from toolgym.policy.checkpoint import CONFIG, FILES, FORMAT, check_replaceable, load_checkpoint, save_checkpoint


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


def test_the_swap_has_no_moment_without_a_checkpoint(saved, small_tokenizer, monkeypatch):
    """The old and new checkpoint swap in one step (renameat2), not two renames a kill could split."""
    path, model = saved

    def killed(self, target):
        raise KeyboardInterrupt  # what a kill between two renames would leave: nothing at path

    monkeypatch.setattr(Path, "rename", killed)
    save_checkpoint(path, model, small_tokenizer, {"step": 8})
    monkeypatch.undo()
    assert load_checkpoint(path).meta["step"] == 8
    assert sorted(p.name for p in path.parent.iterdir()) == ["ck"]


def test_what_a_killed_save_left_is_cleaned_and_a_lone_old_checkpoint_restored(saved, small_tokenizer):
    path, model = saved
    (path.parent / ".ck.tmp-dead0000").mkdir()  # killed while writing the new one
    (path.parent / ".ck.tmp-dead0000" / "model.safetensors").write_bytes(b"half")
    check_replaceable(path)  # every writer calls it first
    assert sorted(p.name for p in path.parent.iterdir()) == ["ck"]
    path.rename(path.parent / ".ck.old-dead0000")  # killed between the fallback swap's two renames
    check_replaceable(path)
    assert load_checkpoint(path).meta == {"step": 7}
    assert sorted(p.name for p in path.parent.iterdir()) == ["ck"]


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


@pytest.mark.parametrize(
    ("key", "value"), [("dim", "64"), ("norm_eps", "x"), ("dense_attention", 1), ("n_layers", 2.5)]
)
def test_a_config_value_of_the_wrong_type_is_a_corrupt_checkpoint(saved, key, value):
    """A hand-edited config.json ("dim": "64") was a TypeError deep in the model, or a 500 per request."""
    path, _ = saved
    cfg = json.loads((path / "config.json").read_text())
    cfg["model"][key] = value
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=f"config.json does not describe a valid model: Model config {key} must"):
        load_checkpoint(path)


def _tree(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_file_or_foreign_directory_is_never_replaced(tmp_path, make_model, small_tokenizer):
    model = make_model(double=False)
    (tmp_path / "file").write_text("precious")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "notes.txt").write_text("precious")
    with pytest.raises(CheckpointError, match="is a file, not a checkpoint"):
        save_checkpoint(tmp_path / "file", model, small_tokenizer)
    with pytest.raises(CheckpointError, match=r"not a checkpoint's \(notes.txt\)"):
        save_checkpoint(tmp_path / "dir", model, small_tokenizer)
    assert _tree(tmp_path) == {"file": b"precious", "dir/notes.txt": b"precious"}  # no temporaries either
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file"]
    (tmp_path / "empty").mkdir()  # an empty directory holds nothing to lose
    assert load_checkpoint(save_checkpoint(tmp_path / "empty", model, small_tokenizer, {"step": 1})).meta["step"] == 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    names=st.sets(st.sampled_from(sorted(FILES) + ["notes.txt", "a", ".hidden", "model.safetensors.bak"]), min_size=1),
    valid_config=st.booleans(),
)
def test_only_a_checkpoint_is_replaceable(tmp_path_factory, names, valid_config):
    """Any non-empty directory is replaceable iff it holds only checkpoint files and a checkpoint config."""
    root = tmp_path_factory.mktemp("target")
    for name in names:
        body = json.dumps({"format": FORMAT if valid_config else "other"}) if name == CONFIG else "x"
        (root / name).write_text(body)
    before = _tree(root)
    ours = names <= FILES and CONFIG in names and valid_config
    if ours:
        check_replaceable(root)
    else:
        with pytest.raises(CheckpointError, match=str(root)):
            check_replaceable(root)
    assert _tree(root) == before


def test_every_checkpoint_file_gets_the_same_permissions(saved):
    """safetensors wrote model.safetensors 0600 while the other files followed the umask."""
    path, _ = saved
    modes = {f.name: f.stat().st_mode & 0o777 for f in path.iterdir()}
    assert len(set(modes.values())) == 1, modes


def test_the_served_model_id_is_the_run_s_name_for_a_checkpoint_subdirectory(tmp_path):
    from toolgym.cli.serve import served_name

    (tmp_path / "sft" / "checkpoint").mkdir(parents=True)
    assert served_name(tmp_path / "sft" / "checkpoint") == "sft"
    assert served_name(tmp_path / "sft") == "sft"
