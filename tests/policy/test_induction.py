"""The induction warm-up's batches and the repeat probe (policy/induction.py)."""

from __future__ import annotations

import pytest
import torch

from toolgym.errors import ConfigError
from toolgym.policy.induction import FILLER_IDS, copy_batch, copy_gain, cued_rows, repeat_batches
from toolgym.policy.model import ModelConfig, Transformer
from toolgym.policy.train_lm import Batch, CopyMix, LMTrainConfig, train_lm


def test_the_mask_covers_exactly_the_second_copy_after_its_first_token():
    stream = torch.randint(100, 5000, (20_000,), generator=torch.Generator().manual_seed(0))  # no repeats by chance
    gaps = set()
    batches = repeat_batches(stream, 8, 63, torch.Generator().manual_seed(1), min_len=4, max_len=32)
    for _ in range(5):
        b = next(batches)
        assert b.tokens.shape == (8, 64) and b.loss_mask is not None and b.loss_mask.shape == (8, 63)
        for row, mask in zip(b.tokens, b.loss_mask, strict=True):
            t = mask.nonzero()[:, 0]
            n = len(t) + 1  # the window's length: every copy token but the first is a target
            assert 4 <= n <= 32 and (t == torch.arange(t[0], t[0] + n - 1)).all()  # one contiguous run
            start = int(t[0])  # the copy's first token sits at start; its first target predicts start + 1
            gaps.add(start - n)
            assert torch.equal(row[start : start + n], row[start - n - (start - n) : n])  # the second copy is the first
            assert torch.equal(row[:n], row[start : start + n])
    assert len(gaps) > 10  # the gap varies, so no fixed distance finds the copy
    again = next(repeat_batches(stream, 8, 63, torch.Generator().manual_seed(1), min_len=4, max_len=32))
    first = next(repeat_batches(stream, 8, 63, torch.Generator().manual_seed(1), min_len=4, max_len=32))
    assert torch.equal(again.tokens, first.tokens) and torch.equal(again.loss_mask, first.loss_mask)


def test_bad_lengths_and_short_streams_are_config_errors():
    stream = torch.arange(1000)
    with pytest.raises(ConfigError, match="window lengths"):
        next(repeat_batches(stream, 2, 63, torch.Generator(), min_len=4, max_len=40))
    with pytest.raises(ConfigError, match="too short"):
        next(repeat_batches(stream[:100], 2, 63, torch.Generator(), min_len=4, max_len=16))


def test_copy_gain_measures_each_copy_and_restores_the_mode():
    model = Transformer(ModelConfig.micro(vocab_size=64), seed=0).train()
    stream = torch.randint(0, 64, (4000,), generator=torch.Generator().manual_seed(0))
    first, second = copy_gain(model, stream, length=32, rows=4)
    assert first == pytest.approx(second, abs=1.0) and 2.0 < first < 7.0  # untrained: both near log(64)
    assert model.training
    with pytest.raises(ConfigError, match="needs 128 tokens"):
        copy_gain(model, stream[:100], length=32, rows=4)


def test_copy_batches_are_a_function_of_seed_and_step():
    mix = CopyMix(every=3, batch_size=4, seq_len=63, min_len=4, max_len=16)
    a, b = copy_batch(mix, 10, 500, seed=7, step=5), copy_batch(mix, 10, 500, seed=7, step=5)
    assert a.copy and a.tokens.shape == (4, 64) and torch.equal(a.tokens, b.tokens)
    assert int(a.tokens.min()) >= 10 and int(a.tokens.max()) < 500  # only non-special ids
    assert not torch.equal(a.tokens, copy_batch(mix, 10, 500, seed=7, step=8).tokens)
    assert not torch.equal(a.tokens, copy_batch(mix, 10, 500, seed=8, step=5).tokens)
    assert a.loss_mask is not None and 3 * 4 <= int(a.loss_mask.sum()) <= 15 * 4  # the second copies only
    with pytest.raises(ValueError, match="copy windows"):
        CopyMix(seq_len=31, max_len=20)


def test_cued_rows_put_the_same_key_and_fillers_before_each_copy_and_mask_all_of_the_second():
    low, high = 10, 5000
    b = cued_rows(64, 95, torch.Generator().manual_seed(3), low, high, min_len=2, max_len=12, cue=3)
    fillers = {0: 0, 1: 0}  # how many rows had fillers before the first / second copy
    for row, mask in zip(b.tokens, b.loss_mask, strict=True):
        t = mask.nonzero()[:, 0]
        n, start = len(t), int(t[0]) + 1  # every token of the second window is a target; it starts at start
        assert 2 <= n <= 12 and (t == torch.arange(t[0], t[0] + n)).all()
        w = row[start : start + n]
        before = row[:start]
        f2 = 0
        while low <= int(before[-1 - f2]) < low + FILLER_IDS:  # fillers sit between the key and the window
            f2 += 1
        key = row[start - 1 - f2]
        assert int(key) == int(row[0]) and f2 <= 3  # the same key opens both copies
        f1 = 0
        while low <= int(row[1 + f1]) < low + FILLER_IDS:
            f1 += 1
        assert torch.equal(row[1 + f1 : 1 + f1 + n], w) and f1 <= 3  # the first copy is the same window
        fillers[0] += f1 > 0
        fillers[1] += f2 > 0
        assert int(w.min()) >= low + FILLER_IDS and int(row.max()) < high
    assert min(fillers.values()) > 16 and max(fillers.values()) < 64  # filler counts vary, apart per copy
    mix = CopyMix(every=2, batch_size=4, seq_len=95, min_len=2, max_len=12, cue=3)
    a = copy_batch(mix, low, high, seed=1, step=1)
    assert a.copy and torch.equal(a.tokens, copy_batch(mix, low, high, seed=1, step=1).tokens)
    with pytest.raises(ValueError, match="fillers"):
        CopyMix(every=2, seq_len=31, max_len=14, cue=2)  # 2 * (14 + 3) > 32
    with pytest.raises(ConfigError, match="do not fit"):
        cued_rows(1, 31, torch.Generator(), low, high, min_len=2, max_len=14, cue=2)


class Counted:
    """Endless LM batches of one fixed row, counting how many the loop drew."""

    def __init__(self) -> None:
        self.drawn = 0

    def __iter__(self) -> Counted:
        return self

    def __next__(self) -> Batch:
        self.drawn += 1
        return Batch(torch.randint(0, 64, (2, 17), generator=torch.Generator().manual_seed(self.drawn)))


def test_a_mixed_loop_trains_every_kth_step_on_copy_rows_and_resumes_at_the_right_batch():
    mix = CopyMix(every=3, batch_size=2, seq_len=15, min_len=2, max_len=8)
    cfg = LMTrainConfig(steps=7, batch_size=2, seq_len=16, warmup_steps=0, eval_every=100, copy_mix=mix)
    model, main = Transformer(ModelConfig.micro(vocab_size=64), seed=0), Counted()
    val = [Batch(torch.randint(0, 64, (2, 17), generator=torch.Generator().manual_seed(99)))]
    res = train_lm(model, main, val, cfg, progress=False)
    kinds = ["copy_loss" if "copy_loss" in r else "loss" for r in res.history]
    assert kinds == ["loss", "loss", "copy_loss", "loss", "loss", "copy_loss", "loss"]
    assert all(("loss" in r) != ("copy_loss" in r) for r in res.history)
    assert main.drawn == 5 == mix.main_batches_before(7)
    assert [mix.main_batches_before(s) for s in range(7)] == [0, 1, 2, 2, 3, 4, 4]
    assert CopyMix().main_batches_before(5) == 5 and not CopyMix().is_copy_step(2)  # default: no mixing
