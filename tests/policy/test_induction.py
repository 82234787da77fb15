"""The induction warm-up's batches and the repeat probe (policy/induction.py)."""

from __future__ import annotations

import pytest
import torch

from toolgym.errors import ConfigError
from toolgym.policy.induction import copy_gain, repeat_batches
from toolgym.policy.model import ModelConfig, Transformer


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
