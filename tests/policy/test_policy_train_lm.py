"""The LM loop learns, and its three stages train exactly the parameters the report says."""

from __future__ import annotations

import json
import math

import pytest
import torch
from pydantic import ValidationError

from toolgym.errors import TrainingDivergedError
from toolgym.policy.checkpoint import load_checkpoint
from toolgym.policy.corpus import Corpus, stdlib_corpus, stdlib_source_files
from toolgym.policy.train_lm import (
    Batch,
    LMTrainConfig,
    encode_documents,
    fixed_windows,
    random_windows,
    train_lm,
)


@pytest.fixture(scope="module")
def streams(small_tokenizer):
    corpus = stdlib_corpus(max_bytes=300_000, val_fraction=0.5)
    return encode_documents(small_tokenizer, corpus.train), encode_documents(small_tokenizer, corpus.val)


def _run(model, streams, stage, steps, **kw):
    train, val = streams
    cfg = LMTrainConfig(
        stage=stage,
        steps=steps,
        batch_size=4,
        seq_len=48,
        lr=3e-3,
        warmup_steps=3,
        eval_every=steps,
        eval_batches=2,
        **kw,
    )
    g = torch.Generator().manual_seed(0)
    return train_lm(model, random_windows(train, 4, 48, g), fixed_windows(val, 4, 48, 2), cfg, progress=False)


def test_stdlib_corpus_is_deterministic_and_split_by_file():
    a, b = stdlib_corpus(200_000, 0.3), stdlib_corpus(200_000, 0.3)
    assert a == b and a.val and a.train and not set(a.train) & set(a.val)
    assert "stdlib" in a.source and len(stdlib_source_files()) > 100
    c = Corpus.from_texts([f"doc {i}" for i in range(200)], "toy", val_fraction=0.2)
    assert 10 < len(c.val) < 70 and len(c.train) + len(c.val) == 200


def test_dense_stage_learns_and_checkpoints(make_model, streams, small_tokenizer, tmp_path):
    model = make_model(double=False)
    train, val = streams
    cfg = LMTrainConfig(
        steps=40, batch_size=4, seq_len=48, lr=3e-3, warmup_steps=5, eval_every=20, eval_batches=2, checkpoint_every=20
    )
    g = torch.Generator().manual_seed(0)
    res = train_lm(
        model,
        random_windows(train, 4, 48, g),
        fixed_windows(val, 4, 48, 2),
        cfg,
        tokenizer=small_tokenizer,
        out_dir=tmp_path / "ck",
        progress=True,
        meta={"corpus": "x"},
    )
    evals = [r["val_loss"] for r in res.history if "val_loss" in r]
    assert len(evals) == 2 and evals[-1] < res.history[0]["loss"] - 0.5
    lrs = [r["lr"] for r in res.history]
    assert lrs[4] == pytest.approx(3e-3) and lrs[-1] == pytest.approx(3e-4, rel=0.05)  # warm-up, cosine floor
    assert model.layers[1].ffn.gate.bias.abs().sum() > 0  # router biases were balanced
    ck = load_checkpoint(tmp_path / "ck")
    assert ck.meta["step"] == 40 and ck.meta["corpus"] == "x" and ck.meta["val_loss"] == pytest.approx(res.val_loss)


def test_indexer_warmup_trains_only_the_indexer(make_model, streams):
    model = make_model(double=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = _run(model, streams, "indexer_warmup", 6)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(".indexer." in k for k in changed)
    assert res.history[-1]["index_kl"] < res.history[0]["index_kl"]
    assert model.config.dense_attention and all(p.requires_grad for p in model.parameters())


def test_sparse_stage_switches_on_topk_and_trains_everything(make_model, streams):
    model = make_model(double=False, dense_attention=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = _run(model, streams, "sparse", 3)
    assert not model.config.dense_attention and res.val_index_loss is not None
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert any(".indexer." in k for k in changed) and "head.weight" in changed


def test_config_forbids_unknown_keys_and_needs_tokenizer_to_save(make_model, streams, tmp_path):
    with pytest.raises(ValidationError):
        LMTrainConfig(stepz=3)
    from toolgym.errors import ConfigError

    train, val = streams
    with pytest.raises(ConfigError, match="tokenizer"):
        train_lm(
            make_model(),
            random_windows(train, 2, 8, torch.Generator()),
            fixed_windows(val, 2, 8, 1),
            LMTrainConfig(steps=1),
            out_dir=tmp_path,
        )


def _diverging_run(model, streams, tokenizer, out, log=None, **kw):
    train, val = streams
    cfg = LMTrainConfig(batch_size=2, seq_len=32, warmup_steps=0, eval_every=1, eval_batches=1, **kw)
    windows = random_windows(train, 2, 32, torch.Generator().manual_seed(0))
    return train_lm(
        model, windows, fixed_windows(val, 2, 32, 1), cfg, tokenizer=tokenizer, out_dir=out, progress=False, log=log
    )


def test_a_diverging_run_stops_at_the_first_bad_step_and_keeps_the_good_checkpoint(
    make_model, streams, small_tokenizer, tmp_path
):
    """lr 1e12 (the issue's input): the step that goes non-finite is named, never logged, never saved."""
    out = tmp_path / "ck"
    _diverging_run(make_model(double=False), streams, small_tokenizer, out, steps=1, lr=1e-3)
    good = (out / "model.safetensors").read_bytes()
    logged: list[dict[str, float]] = []
    with pytest.raises(TrainingDivergedError, match=r"diverged at step \d+: .* lower --lr \(peak 1e\+12") as err:
        _diverging_run(
            make_model(double=False), streams, small_tokenizer, out, logged.append, steps=6, lr=1e12, checkpoint_every=1
        )
    bad = int(str(err.value).split("step ")[1].split(":")[0])
    assert [r["step"] for r in logged] == list(range(1, bad))
    assert all(math.isfinite(v) for r in logged for v in r.values())
    if bad == 1:
        assert (out / "model.safetensors").read_bytes() == good
    else:  # periodic checkpoints stop at the last good step
        assert load_checkpoint(out).meta["step"] == bad - 1


@pytest.mark.parametrize("stage", ["dense", "indexer_warmup", "sparse"])
@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
def test_non_finite_weights_stop_every_stage_at_step_one(make_model, streams, small_tokenizer, tmp_path, stage, poison):
    """The kind: whatever goes non-finite (loss, KL, grad norm), no stage steps on it, logs it or saves it."""
    model = make_model(double=False)
    with torch.no_grad():
        model.embed.weight[:] = poison
    logged: list[dict[str, float]] = []
    with pytest.raises(TrainingDivergedError, match="diverged at step 1: "):
        _diverging_run(model, streams, small_tokenizer, tmp_path / "ck", logged.append, steps=2, stage=stage, lr=1e-3)
    assert not logged and not (tmp_path / "ck").exists()


def test_a_batch_moves_to_a_device_whole_and_stays_when_it_is_there():
    b = Batch(torch.ones(2, 5, dtype=torch.long), torch.ones(2, 4), n_tokens=7, copy=True)
    assert b.to(torch.device("cpu")) is b
    moved = b.to(torch.device("meta"))  # any other device: both tensors go, the rest is kept
    assert (moved.tokens.device.type, moved.loss_mask.device.type) == ("meta", "meta")
    assert (moved.n_tokens, moved.copy, moved.tokens.shape) == (7, True, (2, 5))
    assert Batch(torch.ones(1, 3)).to(torch.device("meta")).loss_mask is None


def test_a_resume_fills_settings_recorded_before_they_existed_with_their_defaults(tmp_path):
    from toolgym.errors import ConfigError
    from toolgym.policy.train_lm import CopyMix, check_resume

    settings = {"corpus": "c", **LMTrainConfig(copy_mix=CopyMix(every=3)).model_dump(mode="json")}
    old = json.loads(json.dumps(settings))
    del old["copy_mix"]["lookup"], old["index_loss_weight"]  # a checkpoint from before these settings
    check_resume(tmp_path, "an LM", old, settings, 10, 5, "--steps")  # they ran with the defaults: resumes
    with pytest.raises(ConfigError, match=r"different settings \(copy_mix\)"):
        lookup = {**settings, "copy_mix": {**settings["copy_mix"], "lookup": True}}
        check_resume(tmp_path, "an LM", old, lookup, 10, 5, "--steps")
