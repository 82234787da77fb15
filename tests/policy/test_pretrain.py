"""``train lm`` and ``bench learn``'s LM stage resume: an interrupted run ends where an uninterrupted one does."""

from __future__ import annotations

import json

import pytest
import torch

import toolgym.policy.train_lm as train_lm_module
from toolgym.bench.learn import _induction
from toolgym.bench.learn_config import InductionPhase, LMStage
from toolgym.errors import ConfigError
from toolgym.policy.checkpoint import load_checkpoint, save_checkpoint
from toolgym.policy.corpus import stdlib_corpus
from toolgym.policy.model import ModelConfig
from toolgym.policy.pretrain import pretrain
from toolgym.policy.train_lm import CopyMix, LMTrainConfig


@pytest.fixture(scope="module")
def corpus():
    return stdlib_corpus(max_bytes=120_000, val_fraction=0.3)


def _config(**kw) -> LMTrainConfig:
    base = {"steps": 6, "batch_size": 2, "seq_len": 32, "lr": 3e-3, "warmup_steps": 2, "eval_every": 3}
    return LMTrainConfig(**{**base, "eval_batches": 1, "checkpoint_every": 2, **kw})


def _interrupt_at(monkeypatch, step: int) -> None:
    """Make the loop's optimizer step number ``step`` (1-based) raise, as a killed process would stop."""
    real, calls = train_lm_module._train_step, [0]

    def step_or_die(*args, **kwargs):
        calls[0] += 1
        if calls[0] == step:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_lm_module, "_train_step", step_or_die)


def _weights(path):
    return {k: v.clone() for k, v in load_checkpoint(path).model.state_dict().items()}


def _run(out, corpus, config, metrics=None):
    return pretrain(
        out, config, model_config=ModelConfig.micro(), corpus=corpus, vocab_size=300, progress=False, metrics=metrics
    )


def test_an_interrupted_lm_run_resumes_to_the_same_weights(tmp_path, corpus, monkeypatch):
    config = _config(copy_mix=CopyMix(every=3, batch_size=2, seq_len=31, max_len=8))  # resumes the copy rows too
    _run(tmp_path / "whole", corpus, config, tmp_path / "whole.jsonl")
    _interrupt_at(monkeypatch, 6)  # steps 1-4 done and checkpointed, step 5 logged, step 6 killed
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "cut", corpus, config, tmp_path / "cut.jsonl")
    assert load_checkpoint(tmp_path / "cut").meta["step"] == 4
    monkeypatch.undo()
    result = _run(tmp_path / "cut", corpus, config, tmp_path / "cut.jsonl")
    assert result.steps == 2
    whole, cut = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    steps = [json.loads(line)["step"] for line in (tmp_path / "cut.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]  # step 5's first record dropped with the resume, logged once again
    assert _run(tmp_path / "cut", corpus, config).steps == 0  # finished: nothing to do
    assert _run(tmp_path / "cut", corpus, config.model_copy(update={"steps": 7})).steps == 1  # extended


def test_a_resume_with_other_settings_or_onto_another_checkpoint_is_refused(tmp_path, corpus, make_model):
    _run(tmp_path / "lm", corpus, _config(steps=2))
    with pytest.raises(ConfigError, match=r"different settings \(lr, seq_len\)"):
        _run(tmp_path / "lm", corpus, _config(steps=4, lr=1e-3, seq_len=24))
    foreign = tmp_path / "foreign"
    save_checkpoint(foreign, make_model(double=False), load_checkpoint(tmp_path / "lm").tokenizer, {"step": 3})
    with pytest.raises(ConfigError, match="not a resumable LM run's"):
        _run(foreign, corpus, _config())
    assert load_checkpoint(foreign).meta == {"step": 3}  # left as it was


def test_a_finished_run_reports_its_loss_and_refuses_to_be_shortened(tmp_path, corpus):
    done = _run(tmp_path / "lm", corpus, _config(steps=2, checkpoint_every=0))
    again = _run(tmp_path / "lm", corpus, _config(steps=2, checkpoint_every=0))
    assert (again.steps, again.val_loss) == (0, done.val_loss)  # not NaN ("held-out loss nan" on the CLI)
    with pytest.raises(ConfigError, match="already at step 2; --steps 1 cannot shorten it"):
        _run(tmp_path / "lm", corpus, _config(steps=1, checkpoint_every=0))


def _stage() -> LMStage:
    phase = {"batch_size": 4, "seq_len": 31, "lr": 1e-3, "warmup_steps": 0, "eval_every": 2, "eval_batches": 1}
    return LMStage(
        model="micro",
        vocab_size=300,
        induction=[
            InductionPhase(train=LMTrainConfig(steps=3, checkpoint_every=1, **phase), max_len=8),
            InductionPhase(train=LMTrainConfig(steps=3, checkpoint_every=2, **phase), max_len=8, tokens="corpus"),
        ],
    )


@pytest.mark.parametrize(
    ("killed", "saved"),
    [
        (3, (0, 2)),  # mid-phase: phase 1 resumes at its step 2 (its optimizer state, its rows skipped)
        (5, (0, 3)),  # phase 1 done, phase 2's step 1 logged but not saved: phase 2 starts over
    ],
)
def test_an_interrupted_induction_warm_up_resumes_to_the_same_weights(tmp_path, corpus, monkeypatch, killed, saved):
    stage = _stage()
    whole = _weights(_induction(tmp_path / "whole", stage, corpus, progress=False))
    _interrupt_at(monkeypatch, killed)
    with pytest.raises(KeyboardInterrupt):
        _induction(tmp_path / "cut", stage, corpus, progress=False)
    meta = load_checkpoint(tmp_path / "cut" / "lm" / "induction").meta
    assert (meta["phase"], meta["step"]) == saved
    monkeypatch.undo()
    cut = _weights(_induction(tmp_path / "cut", stage, corpus, progress=False))
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    log = [json.loads(line) for line in (tmp_path / "cut" / "lm" / "induction.jsonl").read_text().splitlines()]
    assert [(r["phase"], r["step"]) for r in log] == [(0, 1), (0, 2), (0, 3), (1, 4), (1, 5), (1, 6)]


def test_an_interrupted_lookup_warm_up_resumes_to_the_same_weights(tmp_path, corpus, monkeypatch):
    from toolgym.bench.learn import _lookup
    from toolgym.bench.learn_config import LookupPhase
    from toolgym.policy.model import Transformer
    from toolgym.policy.tokenizer import Tokenizer

    tokenizer = Tokenizer.train(corpus.train, vocab_size=700)  # enough word tokens for keys
    phase = {"batch_size": 3, "seq_len": 255, "lr": 1e-3, "warmup_steps": 0, "eval_every": 2, "eval_batches": 1}
    stage = LMStage(
        model="micro",
        lookup=[
            LookupPhase(train=LMTrainConfig(steps=3, checkpoint_every=1, **phase), json_decay_steps=2),
            LookupPhase(train=LMTrainConfig(steps=2, checkpoint_every=1, **phase), wrap=True, json_share=0.5),
        ],
    )
    for run in ("whole", "cut"):  # the LM checkpoint the warm-up starts from
        model = Transformer(ModelConfig.micro(vocab_size=tokenizer.vocab_size), seed=0)
        save_checkpoint(tmp_path / run / "lm" / "checkpoint", model, tokenizer, {"kind": "lm"})
    whole = _weights(_lookup(tmp_path / "whole", stage, progress=False))
    _interrupt_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        _lookup(tmp_path / "cut", stage, progress=False)
    meta = load_checkpoint(tmp_path / "cut" / "lm" / "lookup").meta
    assert (meta["phase"], meta["step"]) == (0, 2)
    monkeypatch.undo()
    cut = _weights(_lookup(tmp_path / "cut", stage, progress=False))
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    log = [json.loads(line) for line in (tmp_path / "cut" / "lm" / "lookup.jsonl").read_text().splitlines()]
    assert [(r["phase"], r["step"]) for r in log] == [(0, 1), (0, 2), (0, 3), (1, 4), (1, 5)]
    assert all(0 < r["val_first_value_nll"] < 30 for r in log if "val_loss" in r)
