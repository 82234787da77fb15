"""Cached, batched generation equals a full forward; RL records (log-probs, masks, routing)."""

from __future__ import annotations

import pytest
import torch

from toolgym.errors import ConfigError
from toolgym.policy.generate import SamplingParams, Session, sampling_mask, token_logprobs


@pytest.mark.parametrize("dense", [False, True])
def test_incremental_cache_equals_full_forward_with_ragged_rows(dense, make_model, tokens):
    model = make_model(dense_attention=dense)
    seq = tokens(2, 60)
    full = model(seq).logits
    cache = model.new_cache(2, capacity=4)  # forces growth
    lengths = [0, 0]
    pieces = {0: [(0, 17), (17, 18), (18, 40), (40, 60)], 1: [(0, 5), (5, 33), (33, 34), (34, 60)]}
    got = torch.zeros_like(full)
    for step in range(4):
        (a0, b0), (a1, b1) = pieces[0][step], pieces[1][step]
        n = max(b0 - a0, b1 - a1)
        batch = torch.zeros(2, n, dtype=torch.long)  # ragged: pad the shorter row with junk
        batch[0, : b0 - a0], batch[1, : b1 - a1] = seq[0, a0:b0], seq[1, a1:b1]
        pos = torch.tensor(lengths)[:, None] + torch.arange(n)
        out = model(batch, positions=pos, cache=cache).logits
        got[0, a0:b0], got[1, a1:b1] = out[0, : b0 - a0], out[1, : b1 - a1]
        lengths = [b0, b1]
    torch.testing.assert_close(got, full, atol=1e-10, rtol=0)


def test_sampling_mask_is_the_top_p_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert sampling_mask(logits, 1.0, 0.7).tolist() == [[True, True, False, False]]
    assert sampling_mask(logits, 1.0, 0.85).tolist() == [[True, True, True, False]]
    assert sampling_mask(logits, 1.0, 0.01).tolist() == [[True, False, False, False]]
    assert sampling_mask(logits, 1.0, 1.0) is None
    assert sampling_mask(logits, 0.0, 0.9).tolist() == [[True, False, False, False]]
    lp = token_logprobs(logits, torch.tensor([1]), keep_mask=sampling_mask(logits, 1.0, 0.7))
    torch.testing.assert_close(lp, torch.log(torch.tensor([0.3 / 0.8])))


def _episode(model, seed, params, stop_ids):
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(11, 300, (n,), generator=g).tolist() for n in (9, 21)]
    obs = [[3, 50, 61, 4, 2], [3, 77, 4, 2, 90, 91, 92]]
    s = Session(model, 2, stop_ids=stop_ids, capacity=8)
    r0 = s.append(prompts)
    t1 = s.generate(params, g)
    r1 = s.append(obs)
    t2 = s.generate(params, g)
    return s, prompts, obs, (r0, t1, r1, t2)


@pytest.mark.parametrize("dense", [False, True])
def test_session_matches_full_forward_after_appending_observations(dense, make_model):
    model = make_model(dense_attention=dense)
    params = SamplingParams(temperature=0.8, top_p=0.9, max_new_tokens=10)
    s, prompts, obs, (r0, t1, r1, t2) = _episode(model, 0, params, stop_ids=[4])
    for b in range(2):
        seq = prompts[b] + t1[b].tokens.tolist() + obs[b] + t2[b].tokens.tolist()
        assert s.lengths[b] == len(seq)
        out = model(torch.tensor([seq]))
        n0 = len(prompts[b])
        n1 = n0 + len(t1[b].tokens)
        n2 = n1 + len(obs[b])
        lp1 = token_logprobs(out.logits[0, n0 - 1 : n1 - 1], t1[b].tokens, 0.8, t1[b].keep_mask)
        lp2 = token_logprobs(out.logits[0, n2 - 1 : n2 - 1 + len(t2[b].tokens)], t2[b].tokens, 0.8, t2[b].keep_mask)
        torch.testing.assert_close(lp1, t1[b].logprobs, atol=1e-5, rtol=0)
        torch.testing.assert_close(lp2, t2[b].logprobs, atol=1e-5, rtol=0)
        assert t1[b].keep_mask.shape == (len(t1[b].tokens), 300)
        assert t1[b].keep_mask.gather(1, t1[b].tokens[:, None]).all()  # sampled tokens are in the set
        # Keep Routing: the recorded routing of every token equals the full forward's routing
        routing = torch.cat([r0[b], t1[b].routing, r1[b], t2[b].routing])  # [L, n_moe, K]
        assert torch.equal(routing, out.routing[:, 0].permute(1, 0, 2))
        forced = model(torch.tensor([seq]), forced_routing=routing.permute(1, 0, 2)[:, None])
        torch.testing.assert_close(forced.logits, out.logits)


def test_generation_stops_on_end_token_and_keeps_it(make_model):
    model = make_model()
    stop = list(range(11, 200))  # most of the vocabulary ends the action: rows stop early
    params = SamplingParams(temperature=1.0, max_new_tokens=30)
    s, *_, (r0, t1, r1, t2) = _episode(model, 1, params, stop_ids=stop)
    for turn in t1 + t2:
        if turn.stopped:
            assert int(turn.tokens[-1]) in stop and not any(int(t) in stop for t in turn.tokens[:-1])
        else:
            assert len(turn.tokens) == 30
        assert turn.keep_mask is None  # top_p == 1 keeps everything
    assert any(t.stopped for t in t1 + t2)


def test_budget_truncates_and_inactive_rows_are_untouched(make_model):
    model = make_model()
    s = Session(model, 2, stop_ids=[4])
    s.append([[20, 21, 22], [30, 31]])
    turns = s.generate(SamplingParams(max_new_tokens=3), torch.Generator().manual_seed(0), active=[True, False])
    assert turns[1] is None and s.lengths == [3 + len(turns[0].tokens), 2]
    assert len(turns[0].tokens) == 3 or turns[0].stopped


def test_same_seed_same_actions_and_fork_shares_the_prompt(make_model):
    model = make_model()
    params = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=8)
    a = _episode(model, 5, params, [4])[3]
    b = _episode(model, 5, params, [4])[3]
    assert all(torch.equal(x.tokens, y.tokens) for x, y in zip(a[1] + a[3], b[1] + b[3], strict=True))
    s = Session(model, 1, stop_ids=[4])
    s.append([[20, 21, 22, 23]])
    group = s.fork([0, 0, 0])
    turns = group.generate(params, torch.Generator().manual_seed(0))
    assert group.lengths == [4 + len(t.tokens) for t in turns] and s.lengths == [4]


def test_generate_needs_context(make_model):
    with pytest.raises(ConfigError, match="append a prompt"):
        Session(make_model(), 1, stop_ids=[4]).generate(SamplingParams(), torch.Generator())


def test_a_generation_stopped_before_its_first_token_returns_empty_turns(make_model):
    """A request cancelled before any token (a client that went away) ends cleanly, nothing sampled."""
    s = Session(make_model(), 2, stop_ids=[4])
    s.append([[20, 21, 22], [30, 31]])
    turns = s.generate(SamplingParams(max_new_tokens=5), torch.Generator().manual_seed(0), should_stop=lambda: True)
    assert [(t.tokens.tolist(), t.logprobs.tolist(), t.stopped) for t in turns] == [([], [], False)] * 2
    assert s.lengths == [3, 2]


@pytest.mark.parametrize("per_row", [False, True])
def test_draws_follow_the_tempered_distribution_and_never_leave_the_kept_set(per_row):
    """The inverse-CDF draw: frequencies match softmax(logits / T) on the kept set; others never come up."""
    from toolgym.policy.generate import _draw

    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 5.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    keep = torch.tensor([[True, True, True, True, False], [False, True, False, True, False]])
    n, temperature = 20_000, 0.7
    shared = torch.Generator().manual_seed(0)
    gens = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    rows = torch.tensor([0, 1])
    draws = torch.stack(
        [_draw(logits, keep, temperature, rows, None if per_row else shared, gens if per_row else []) for _ in range(n)]
    )  # [n, 2]
    expected = (logits / temperature).masked_fill(~keep, float("-inf")).softmax(-1)
    for r in range(2):
        freq = torch.bincount(draws[:, r], minlength=5).double() / n
        assert not bool(freq[~keep[r]].any())
        assert torch.allclose(freq, expected[r].double(), atol=0.015)


def test_a_row_s_draw_uses_one_number_of_its_own_generator():
    """Per-row draws: a row's token depends only on its generator, not on the other rows present."""
    from toolgym.policy.generate import _draw

    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(3))
    alone = _draw(
        logits[1:2], None, 1.0, torch.tensor([1]), None, [torch.Generator().manual_seed(s) for s in (5, 6, 7)]
    )
    with_others = _draw(
        logits, None, 1.0, torch.tensor([0, 1, 2]), None, [torch.Generator().manual_seed(s) for s in (5, 6, 7)]
    )
    assert alone.item() == with_others[1].item()
    g = torch.Generator().manual_seed(6)
    _draw(logits[1:2], None, 1.0, torch.tensor([1]), None, [torch.Generator(), g, torch.Generator()])
    one = torch.Generator().manual_seed(6)
    torch.rand(1, generator=one, dtype=torch.float64)
    assert torch.equal(g.get_state(), one.get_state())  # exactly one number drawn


@pytest.mark.parametrize("seed", range(30))
def test_length_groups_cover_each_fed_row_once_and_bound_the_padding(seed):
    from toolgym.policy.generate import SHORT_APPEND, length_groups

    g = torch.Generator().manual_seed(seed)
    lengths = [int(x) for x in torch.randint(0, 3000, (int(torch.randint(1, 20, (1,), generator=g)),), generator=g)]
    lengths = [n if n % 3 else n % 40 for n in lengths]  # a share of short and empty appends
    groups = length_groups(lengths)
    assert sorted(b for grp in groups for b in grp) == [b for b, n in enumerate(lengths) if n > 0]
    for grp in groups:
        longest = max(lengths[b] for b in grp)
        assert longest <= SHORT_APPEND or all(2 * lengths[b] >= longest for b in grp)
    assert length_groups([5, 5, 5]) == [[0, 1, 2]] and length_groups([0, 0]) == []
    assert length_groups([2000, 3, 40, 1900]) == [[0, 3], [1, 2]]  # the prompt is not padded onto the observations
