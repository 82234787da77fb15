"""The lookup warm-up's rows (policy/lookup.py): values masked exactly, answerable, deterministic."""

from __future__ import annotations

import json
import random
import re
import statistics

import pytest
import torch
import torch.nn.functional as F

from toolgym.errors import ConfigError
from toolgym.policy.lookup import (
    JSON_PAIR,
    first_value_nll,
    json_share_at,
    lookup_batches,
    lookup_row,
    lookup_words,
)
from toolgym.policy.model import ModelConfig, Transformer
from toolgym.policy.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    from toolgym.policy.corpus import stdlib_corpus

    return Tokenizer.train(stdlib_corpus(max_bytes=200_000, val_fraction=0.5).train, vocab_size=800)


def _call(tok: Tokenizer, ids: list[int]) -> dict:
    text = tok.decode(ids)
    body = text[text.rindex("<|assistant|>") + len("<|assistant|>") :]
    if "<tool_call>" in body:
        return json.loads(re.search(r"<tool_call>(.*)</tool_call>", body).group(1))["arguments"]
    return json.loads(body)


@pytest.mark.parametrize("wrap", [False, True])
def test_the_mask_covers_exactly_the_values_and_each_is_in_the_request(tok, wrap):
    words, rng = lookup_words(tok), random.Random(5)
    for _ in range(60):
        row = lookup_row(tok, words, rng, max_facts=3, json_share=0.0, wrap=wrap)
        assert len(row.ids) == len(row.mask) and row.ids[0] == tok.bos_id
        args = _call(tok, row.ids)
        request = tok.decode(row.ids).split("<|assistant|>")[0]
        spans, current = [], []
        for t, m in zip(row.ids, row.mask, strict=True):
            if m:
                current.append(t)
            elif current:
                spans.append(tok.decode(current))
                current = []
        expected = [f'{v}"' if isinstance(v, str) else json.dumps(v) for v in args.values()]
        assert spans == expected  # every value, the closing quote of a quoted one included, nothing else
        for v in args.values():
            assert str(v) in request  # the lookup is answerable from the request alone
        assert '":' not in request  # json_share 0: no fact is stated as its JSON pair


def test_json_share_one_states_every_fact_as_the_calls_own_pair(tok):
    words, rng = lookup_words(tok), random.Random(6)
    for _ in range(30):
        row = lookup_row(tok, words, rng, max_facts=3, json_share=1.0, wrap=False)
        request = tok.decode(row.ids).split("<|assistant|>")[0]
        for key, v in _call(tok, row.ids).items():
            assert JSON_PAIR.format(kj=key, v=json.dumps(v)) in request


def test_the_json_share_decays_linearly_to_zero():
    assert [json_share_at(s, 1.0, 4) for s in range(6)] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert json_share_at(1000, 0.3, 0) == 0.3  # no decay


def test_batches_are_a_function_of_seed_and_index(tok):
    a = lookup_batches(tok, 4, seed=3)
    first = [next(a) for _ in range(3)]
    again = next(lookup_batches(tok, 4, seed=3, start=2))  # a resumed run skips without drawing
    assert torch.equal(first[2].tokens, again.tokens) and torch.equal(first[2].loss_mask, again.loss_mask)
    assert not torch.equal(first[0].tokens[:, :8], next(lookup_batches(tok, 4, seed=4)).tokens[:, :8])
    assert first[0].loss_mask.shape == (4, first[0].tokens.shape[1] - 1)


def test_first_value_nll_reads_the_first_token_of_each_value(tok):
    model = Transformer(ModelConfig.micro(vocab_size=tok.vocab_size), seed=0).eval()
    batch = next(lookup_batches(tok, 6, seed=1, json_share=0.0))
    mean, median = first_value_nll(model, [batch])
    with torch.no_grad():
        logits = model(batch.tokens[:, :-1]).logits
    nll = F.cross_entropy(logits.flatten(0, 1), batch.tokens[:, 1:].flatten(), reduction="none").view(6, -1)
    by_hand = []
    for b in range(6):
        m = batch.loss_mask[b].tolist()
        by_hand += [nll[b, t].item() for t in range(len(m)) if m[t] and (t == 0 or not m[t - 1])]
    assert mean == pytest.approx(sum(by_hand) / len(by_hand), rel=1e-5)
    assert median == pytest.approx(statistics.median(by_hand), rel=1e-5)


def test_bad_settings_are_config_errors(tok, small_tokenizer):
    with pytest.raises(ConfigError, match="max_facts"):
        next(lookup_batches(tok, 2, seed=0, max_facts=0))
    with pytest.raises(ConfigError, match="word tokens"):
        lookup_words(small_tokenizer)


def test_a_lookup_mix_trains_every_kth_step_on_wrapped_prose_rows_by_step(tok):
    from pydantic import ValidationError

    from toolgym.policy.train_lm import Batch, CopyMix, LMTrainConfig, _next_batch, train_lm

    mix = CopyMix(every=2, batch_size=3, seq_len=200, lookup=True)
    cfg = LMTrainConfig(steps=4, seq_len=16, copy_mix=mix, seed=7)
    model = Transformer(ModelConfig.micro(vocab_size=tok.vocab_size), seed=0)
    main = iter([Batch(torch.zeros(1, 17, dtype=torch.long))] * 2)
    batches = [_next_batch(main, cfg, model, tok, step) for step in range(4)]
    assert [b.copy for b in batches] == [False, True, False, True]
    row = batches[3]  # the rows of step 3: lookup_batches' batch 3, prose facts, wrapped, <= seq_len + 1
    want = next(lookup_batches(tok, 3, seed=7, json_share=0.0, wrap=True, start=3, max_tokens=201))
    assert torch.equal(row.tokens, want.tokens) and torch.equal(row.loss_mask, want.loss_mask)
    assert row.tokens.shape[1] <= 201 and row.loss_mask.sum() > 0
    text = tok.decode(row.tokens[0].tolist())
    assert "<tool_call>" in text and '"arguments":' in text.split("<|assistant|>")[1]
    assert '":' not in text.split("<|assistant|>")[0]  # no fact is stated as the call's own pair
    with pytest.raises(ConfigError, match="tokenizer"):  # checked before the first step
        train_lm(model, main, [], cfg, progress=False)
    with pytest.raises(ValidationError, match="not both"):
        CopyMix(every=2, cue=2, lookup=True)
    with pytest.raises(ValidationError, match="seq_len >= 63"):
        CopyMix(every=2, seq_len=40, lookup=True)
    with pytest.raises(ValidationError, match="need every > 0"):  # else the option would do nothing
        CopyMix(lookup=True)
    assert CopyMix(every=2, seq_len=63, max_len=40, lookup=True).lookup  # repeat windows' sizes do not apply


def test_a_vocabulary_too_small_for_lookup_rows_is_refused_before_the_first_step(small_tokenizer):
    from toolgym.policy.train_lm import Batch, CopyMix, LMTrainConfig, train_lm

    cfg = LMTrainConfig(steps=2, seq_len=16, copy_mix=CopyMix(every=2, seq_len=100, lookup=True))
    model = Transformer(ModelConfig.micro(vocab_size=small_tokenizer.vocab_size), seed=0)
    drawn = []

    def main():
        while True:
            drawn.append(1)
            yield Batch(torch.zeros(1, 17, dtype=torch.long))

    with pytest.raises(ConfigError, match="lookup rows need 16"):
        train_lm(model, main(), [], cfg, tokenizer=small_tokenizer, progress=False)
    assert drawn == []  # no step was trained
