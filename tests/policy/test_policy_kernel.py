"""Fast paths in ``policy/kernel.py`` against their references in ``policy/model.py`` (float64, CPU)."""

from __future__ import annotations

import copy

import pytest
import torch

from toolgym.policy import kernel
from toolgym.policy import model as M


def _ragged_cache(model: M.Transformer, lengths: list[int], seed: int = 0) -> tuple[M.KVCache, torch.Tensor]:
    """A cache whose rows hold `lengths` tokens each (one padded prefill), and the token stream."""
    B, S = len(lengths), max(lengths) + 4
    seq = torch.randint(11, model.config.vocab_size, (B, S), generator=torch.Generator().manual_seed(seed))
    cache = model.new_cache(B, capacity=8)  # small: the decode step has to grow it
    with torch.no_grad():
        model(seq[:, : max(lengths)], positions=torch.arange(max(lengths)).expand(B, -1), cache=cache, attn_impl="mha")
    cache.lengths = torch.tensor(lengths)
    return cache, seq


def _assert_same_step(model: M.Transformer, cache: M.KVCache, tokens: torch.Tensor, positions: torch.Tensor) -> None:
    ref_cache, fast_cache = cache, copy.deepcopy(cache)
    impl = "mqa" if model.config.dense_attention else "gather"
    with torch.no_grad():
        ref = model(tokens, positions=positions, cache=ref_cache, attn_impl=impl)
    fast = kernel.decode_step(model, tokens, positions, fast_cache)
    # the step runs in inference mode; nothing it hands back (or grows) may be an inference tensor
    assert not any(t.is_inference() for t in [fast.logits, fast.balance_loss, *fast_cache.kv, *fast_cache.ik])
    assert fast.routing is None or not (fast.routing.is_inference() or fast.expert_load.is_inference())
    torch.testing.assert_close(fast.logits, ref.logits, atol=1e-6, rtol=0)  # float32 logits of a float64 model
    for a, b in zip(fast_cache.kv + fast_cache.ik, ref_cache.kv + ref_cache.ik, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)  # the written entries, in float64
    if model.n_moe_layers:
        assert torch.equal(fast.routing, ref.routing) and torch.equal(fast.expert_load, ref.expert_load)
    assert fast.index_loss is None and float(fast.balance_loss) == 0.0


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("lengths", [[21], [20, 5, 12], [20, 5, 12, 30, 9]], ids=["1row", "3rows", "5rows"])
def test_decode_step_equals_the_module_path(dense, lengths, make_model):
    """Ragged rows (one with fewer than k keys), selection on and off, both MoE dispatches (N*K < E, >= E)."""
    for topk in (8, 64):  # k < context: top-k + gather; k >= context: every key, the dense form
        model = make_model(dense_attention=dense, index_topk=topk)
        cache, seq = _ragged_cache(model, lengths)
        for step in range(2):  # the second step reuses the packed weights
            pos = cache.lengths[:, None]
            _assert_same_step(model, cache, seq[torch.arange(len(lengths)), cache.lengths][:, None], pos)
            cache.lengths += 1
            assert step == 0 or model.__dict__["_decode_pack"] is kernel.decode_pack(model)


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("subset", [[0, 2], [3], [1, 2, 4]])
def test_a_decode_step_on_some_rows_equals_the_full_step_there_and_leaves_the_others(dense, subset, make_model):
    """decode_step(rows=...) computes and writes only those rows, exactly as the all-rows step does."""
    for topk in (8, 64):
        model = make_model(dense_attention=dense, index_topk=topk)
        cache, seq = _ragged_cache(model, [20, 5, 12, 30, 9])
        part = copy.deepcopy(cache)
        tokens = seq[torch.arange(5), cache.lengths][:, None]
        full = kernel.decode_step(model, tokens, cache.lengths[:, None], cache)
        rows = torch.tensor(subset)
        some = kernel.decode_step(model, tokens[rows], part.lengths[rows][:, None], part, rows=rows)
        torch.testing.assert_close(some.logits, full.logits[rows], atol=1e-6, rtol=0)
        if model.n_moe_layers:
            assert torch.equal(some.routing, full.routing[:, rows])
        others = [b for b in range(5) if b not in subset]
        before = copy.deepcopy(_ragged_cache(model, [20, 5, 12, 30, 9])[0])
        for got, want, old in zip(part.kv + part.ik, cache.kv + cache.ik, before.kv + before.ik, strict=True):
            n = old.size(1)  # the full step may have grown its cache further
            torch.testing.assert_close(got[rows, :n], want[rows, :n], atol=1e-12, rtol=0)
            assert torch.equal(got[others, :n], old[others])  # untouched: not even junk past their end


@pytest.mark.skipif(kernel._GROUPED_MM is None, reason="torch without F.grouped_mm")
def test_grouped_expert_matmuls_equal_the_loop_over_picks(make_model, monkeypatch):
    """float32 (grouped_mm's dtypes): N*K picks between GROUPED_MIN_PICKS and the expert count."""
    model = make_model(double=False, n_routed_experts=32, n_activated_experts=2)
    lengths = [20, 5, 12, 30, 9]  # 5 rows x 2 picks = 10 picks: grouped (>= 8), not all experts (< 32)
    cache, seq = _ragged_cache(model, lengths)
    tokens, pos = seq[torch.arange(5), cache.lengths][:, None], cache.lengths[:, None]
    grouped = kernel.decode_step(model, tokens, pos, copy.deepcopy(cache))
    monkeypatch.setattr(kernel, "GROUPED_MIN_PICKS", 10**9)
    loop = kernel.decode_step(model, tokens, pos, copy.deepcopy(cache))
    torch.testing.assert_close(grouped.logits, loop.logits, atol=1e-5, rtol=1e-5)
    assert torch.equal(grouped.routing, loop.routing)


@pytest.mark.parametrize(
    "overrides",
    [{"dense_ffn": True}, {"n_expert_groups": 4, "n_limited_groups": 2}],
    ids=["dense_ffn", "group_routing"],
)
def test_decode_step_equals_the_module_path_for_other_ffns(overrides, make_model):
    model = make_model(**overrides)
    cache, seq = _ragged_cache(model, [20, 5, 12])
    _assert_same_step(model, cache, seq[:, :1], cache.lengths[:, None])


def test_decode_pack_follows_weight_updates_and_the_attention_switch(make_model):
    model = make_model()
    cache, seq = _ragged_cache(model, [14, 9])
    tok, pos = seq[:, :1], cache.lengths[:, None]
    _assert_same_step(model, cache, tok, pos)
    first = kernel.decode_pack(model)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)  # an optimizer step changes weights in place
    model(seq).logits.square().mean().backward()
    opt.step()
    model.layers[1].ffn.gate.update_bias(torch.arange(8), 0.5)  # so does the router bias update
    _assert_same_step(model, cache, tok, pos)
    assert kernel.decode_pack(model) is not first
    model.load_state_dict(make_model(seed=3).state_dict())
    _assert_same_step(model, cache, tok, pos)
    model.set_dense_attention(True)
    _assert_same_step(model, cache, tok, pos)


def test_rotation_maps_equal_apply_rope():
    r, dI, B = 8, 12, 3
    pos = torch.tensor([[0], [5], [1000]])
    cos, sin = M.rope_cos_sin(pos, r, 1e4, torch.float64)  # [B,1,r/2]
    il, ix, base = kernel._rotation_maps(r, dI, torch.float64, torch.device("cpu"))
    cs = torch.cat([cos, sin], -1)[:, 0]
    x = torch.randn(B, 1, 2, dI, dtype=torch.float64, generator=torch.Generator().manual_seed(0))  # [B,S,H,d]
    rot = (cs @ il).view(B, r, r)
    torch.testing.assert_close(x[..., :r] @ rot[:, None], M.apply_rope(x[..., :r], cos, sin, interleaved=True))
    want = torch.cat([M.apply_rope(x[..., :r], cos, sin, interleaved=False), x[..., r:]], -1)
    torch.testing.assert_close(x @ torch.addmm(base, cs, ix).view(B, 1, dI, dI), want)


def test_forward_runs_the_kernel_only_for_no_grad_one_token_cached_calls(monkeypatch, make_model):
    model = make_model()
    cache, seq = _ragged_cache(model, [10])
    calls = []
    real = kernel.decode_step
    monkeypatch.setattr(kernel, "decode_step", lambda *a: calls.append(1) or real(*a))
    with torch.no_grad():
        model(seq[:, :1], cache=copy.deepcopy(cache))  # a decode step
        model(seq[:, :1], cache=copy.deepcopy(cache), attn_impl="gather")  # the reference, by name
        model(seq[:, :2], cache=copy.deepcopy(cache))  # two tokens: the module path
    model(seq[:, :1], cache=copy.deepcopy(cache))  # grad enabled: the module path
    assert calls == [1]


def test_auto_prefill_masked_mha_and_gather_agree(monkeypatch, make_model, tokens):
    """DSA prefill switches from masked MHA to gather by key count; both equal the gather reference."""
    model = make_model()
    seq = tokens(2, 80)
    with torch.no_grad():
        ref = model(seq, cache=model.new_cache(2), attn_impl="gather").logits
        for max_keys in (1024, 16):  # masked MHA (80 <= 1024 keys), then gather (80 > 16)
            monkeypatch.setattr(M, "MASKED_PREFILL_MAX_KEYS", max_keys)
            torch.testing.assert_close(model(seq, cache=model.new_cache(2)).logits, ref, atol=1e-10, rtol=0)
    wide = make_model(index_topk=128)  # k >= every key: auto skips the top-k; equals the reference
    dense = make_model(dense_attention=True)
    with torch.no_grad():
        got = wide(seq, cache=wide.new_cache(2)).logits
        torch.testing.assert_close(got, wide(seq, cache=wide.new_cache(2), attn_impl="mha").logits, atol=1e-10, rtol=0)
        torch.testing.assert_close(got, dense(seq, cache=dense.new_cache(2)).logits, atol=1e-10, rtol=0)
