"""The GRPO objective against hand computations (deepseek_v32.md §4.2-4.6)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.policy.generate import SamplingParams, Session
from toolgym.policy.grpo import (
    Objective,
    action_logprobs,
    group_advantages,
    grpo_loss,
    kl_estimate,
    make_train_batch,
    off_policy_mask,
    segment_mean,
    sequence_weights,
    zero_variance_groups,
)


def categorical(seed: int, v: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-probs of three distinct categoricals over v outcomes: theta (leaf), old, ref."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(v, generator=g, dtype=torch.float64).requires_grad_()
    old = torch.randn(v, generator=g, dtype=torch.float64).log_softmax(-1)
    ref = torch.randn(v, generator=g, dtype=torch.float64).log_softmax(-1)
    return theta, old, ref


def exact_kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) of two categoricals given by log-probs."""
    return (logp.exp() * (logp - logq)).sum()


def test_kl_estimate_is_unbiased_and_its_gradient_is_the_true_kls():
    theta, old, ref = categorical(0)
    lp = theta.log_softmax(-1)
    outcomes = torch.arange(5)
    est = kl_estimate(lp[outcomes], old[outcomes], ref[outcomes])  # the estimator's value per outcome
    expectation = (old.exp() * est).sum()  # exact expectation under tokens drawn from pi_old
    true = exact_kl(lp, ref)
    assert expectation.item() == pytest.approx(true.item(), rel=1e-12)
    (g_est,) = torch.autograd.grad(expectation, theta, retain_graph=True)
    (g_true,) = torch.autograd.grad(true, theta, retain_graph=True)
    torch.testing.assert_close(g_est, g_true, rtol=1e-10, atol=1e-12)

    # Monte Carlo: 200k tokens from pi_old; the sample mean lies within 4 standard errors
    draws = torch.multinomial(old.exp(), 200_000, replacement=True, generator=torch.Generator().manual_seed(1))
    values = kl_estimate(lp[draws], old[draws], ref[draws])
    se = values.detach().std() / math.sqrt(len(draws))
    assert abs(values.mean().item() - true.item()) < 4 * se.item()
    (g_mc,) = torch.autograd.grad(values.mean(), theta, retain_graph=True)
    torch.testing.assert_close(g_mc, g_true, rtol=0.05, atol=0.01)

    # the ratio factor must keep its gradient: detached, the gradient's expectation is wrong
    k3 = kl_estimate(lp[outcomes], old[outcomes], ref[outcomes], unbiased=False)
    detached = torch.exp(lp[outcomes] - old[outcomes]).detach() * k3
    (g_wrong,) = torch.autograd.grad((old.exp() * detached).sum(), theta)
    assert (g_wrong - g_true).abs().max() > 1e-3


def test_plain_k3_is_biased_off_policy():
    theta, old, ref = categorical(2)
    lp = theta.log_softmax(-1)
    o = torch.arange(5)
    plain = (old.exp() * kl_estimate(lp[o], old[o], ref[o], unbiased=False)).sum()
    assert abs(plain.item() - exact_kl(lp, ref).item()) > 1e-3


def test_advantages_and_zero_variance_on_a_toy_batch():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.5, 0.0])
    group = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    adv = group_advantages(rewards, group)
    torch.testing.assert_close(adv, torch.tensor([0.75, -0.25, -0.25, -0.25, 0.0, 0.0, 0.25, -0.25]))
    assert zero_variance_groups(rewards, group).tolist() == [False] * 4 + [True, True] + [False, False]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.floats(0, 1), min_size=1, max_size=6), min_size=1, max_size=5))
def test_advantages_sum_to_zero_in_every_group(groups):
    rewards = torch.tensor([r for g in groups for r in g], dtype=torch.float64)
    group = torch.tensor([i for i, g in enumerate(groups) for _ in g])
    adv = group_advantages(rewards, group)
    sums = segment_mean(adv, group, len(groups))
    assert sums.abs().max().item() < 1e-12
    # a constant group has advantage 0 everywhere
    flat = zero_variance_groups(rewards, group)
    assert adv[flat].abs().max().item() < 1e-12 if bool(flat.any()) else True


def test_off_policy_mask_masks_exactly_negative_and_far_sequences():
    adv = torch.tensor([-0.5, -0.5, 0.5, 0.5, -0.5, 0.0])
    log_ratio = torch.tensor([0.2, 0.01, 0.2, 0.01, 0.1, 0.3])  # mean log(pi_old / pi_theta)
    kept = off_policy_mask(adv, log_ratio, delta=0.1)
    # only A < 0 AND ratio strictly above delta; A == 0 and ratio == delta are kept
    assert kept.tolist() == [False, True, True, True, True, True]


def test_masked_sequence_keeps_only_its_kl_gradient():
    # two sequences of one group; sequence 0 negative and off-policy, sequence 1 positive
    logp_old = torch.tensor([-1.0, -1.0, -2.0], dtype=torch.float64)
    logp = torch.tensor([-1.5, -1.5, -2.0], dtype=torch.float64, requires_grad=True)  # seq 0: log ratio 0.5
    logp_ref = torch.tensor([-1.2, -0.8, -2.1], dtype=torch.float64)
    seq, group = torch.tensor([0, 0, 1]), torch.tensor([0, 0])
    adv = torch.tensor([-0.5, 0.5], dtype=torch.float64)
    on = grpo_loss(logp, logp_old, logp_ref, adv, seq, group, Objective(kl_coef=0.1, off_policy_delta=0.3))
    assert on.masked_frac == 0.5
    (g,) = torch.autograd.grad(on.loss, logp)
    kl_only = grpo_loss(
        logp, logp_old, logp_ref, torch.zeros(2, dtype=torch.float64), seq, group, Objective(kl_coef=0.1)
    )
    (g_kl,) = torch.autograd.grad(kl_only.loss, logp)
    torch.testing.assert_close(g[:2], g_kl[:2])  # sequence 0: the KL term alone
    assert (g[2] - g_kl[2]).abs() > 1e-3  # sequence 1 keeps its surrogate
    off = grpo_loss(logp, logp_old, logp_ref, adv, seq, group, Objective(kl_coef=0.1, off_policy_mask=False))
    assert off.masked_frac == 0.0


def test_loss_aggregation_by_hand():
    """Per-sequence token mean, then group mean, then mean over groups; clipped tokens carry no gradient."""
    # group 0: sequences of 2 and 1 tokens; group 1: one sequence of 3 tokens
    seq = torch.tensor([0, 0, 1, 2, 2, 2])
    group = torch.tensor([0, 0, 1])
    adv = torch.tensor([1.0, -1.0, 2.0], dtype=torch.float64)
    logp_old = torch.zeros(6, dtype=torch.float64) - 1.0
    shift = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.5, 0.0], dtype=torch.float64)  # token 4: ratio e^0.5 > 1.2, A > 0
    logp = (logp_old + shift).requires_grad_()
    parts = grpo_loss(logp, logp_old, None, adv, seq, group, Objective(clip_eps=0.2, off_policy_mask=False))
    # objective: group 0 = mean(seq0 = mean(1, 1), seq1 = -1) = 0; group 1 = mean(2, 2 * 1.2, 2) ; loss = -mean
    want = -(0.0 + (2 + 2 * 1.2 + 2) / 3) / 2
    assert parts.loss.item() == pytest.approx(want)
    (g,) = torch.autograd.grad(parts.loss, logp)
    # d(-J)/d logp_t = -ratio_t * A / (|o| * G_size * n_groups), zero where the clip is active
    hand = torch.tensor([-1 / (2 * 2 * 2), -1 / (2 * 2 * 2), 1 / (1 * 2 * 2), -2 / (3 * 2), 0.0, -2 / (3 * 2)])
    torch.testing.assert_close(g, hand.double())
    assert parts.clip_frac == pytest.approx(1 / 6)


def test_micro_batches_sum_to_the_whole_batchs_loss_and_gradient():
    g = torch.Generator().manual_seed(3)
    seq = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 4])
    group = torch.tensor([0, 0, 1, 1, 1])
    old = -torch.rand(9, generator=g, dtype=torch.float64) - 0.5
    ref = -torch.rand(9, generator=g, dtype=torch.float64) - 0.5
    logp = (old + 0.3 * torch.randn(9, generator=g, dtype=torch.float64)).requires_grad_()
    adv = torch.tensor([0.5, -0.5, 1 / 3, 1 / 3, -2 / 3], dtype=torch.float64)
    obj = Objective(kl_coef=0.05, off_policy_delta=0.01)
    whole = grpo_loss(logp, old, ref, adv, seq, group, obj)
    (g_whole,) = torch.autograd.grad(whole.loss, logp)
    w = sequence_weights(group)
    torch.testing.assert_close(w, torch.tensor([1 / 4, 1 / 4, 1 / 6, 1 / 6, 1 / 6], dtype=torch.float64))
    total = 0.0
    for seqs in ([0, 1], [2, 3, 4]):  # micro-batches of sequences, re-indexed from 0
        tok = torch.isin(seq, torch.tensor(seqs))
        local = torch.unique(seq[tok], return_inverse=True)[1]
        part = grpo_loss(logp[tok], old[tok], ref[tok], adv[seqs], local, local, obj, w[seqs])
        total = total + part.loss
    (g_parts,) = torch.autograd.grad(total, logp)
    torch.testing.assert_close(total, whole.loss)
    torch.testing.assert_close(g_parts, g_whole)


def _rollout(model, top_p: float):
    """Two rows: a prompt appended, one action sampled, an observation appended, a second action."""
    session = Session(model, 2, stop_ids=[5], pad_id=0)
    prompt = [[11, 12, 13, 14, 15], [21, 22, 23]]
    env_routes = session.append(prompt)
    params = SamplingParams(temperature=0.9, top_p=top_p, max_new_tokens=6)
    gen = torch.Generator().manual_seed(0)
    first = session.generate(params, gen)
    obs = [[31, 32], [41, 42, 43]]
    obs_routes = session.append(obs)
    second = session.generate(params, gen)
    ids, action, lps, keep, routing = [], [], [], [], []
    for b in range(2):
        t1, t2 = first[b], second[b]
        assert t1 is not None and t2 is not None
        ids.append(torch.tensor(prompt[b] + t1.tokens.tolist() + obs[b] + t2.tokens.tolist()))
        n = [len(prompt[b]), len(t1.tokens), len(obs[b]), len(t2.tokens)]
        action.append(torch.tensor([False] * n[0] + [True] * n[1] + [False] * n[2] + [True] * n[3]))
        lp = torch.zeros(sum(n))
        lp[action[b]] = torch.cat([t1.logprobs, t2.logprobs]).float()
        lps.append(lp)
        keep.append(None if t1.keep_mask is None else torch.cat([t1.keep_mask, t2.keep_mask]))  # type: ignore[list-item]
        routing.append(torch.cat([env_routes[b], t1.routing, obs_routes[b], t2.routing]))  # type: ignore[list-item]
    return make_train_batch(ids, action, lps, keep, routing, pad_id=0)


def test_keep_routing_forward_reproduces_the_rollout(make_model):
    model = make_model()
    batch = _rollout(model, top_p=1.0)
    out = action_logprobs(model, batch, 0.9, keep_routing=True)
    torch.testing.assert_close(out.logp.float(), batch.logp_old, rtol=0, atol=1e-5)
    assert out.routing_agreement == pytest.approx(1.0)  # same weights: the router agrees everywhere
    # the forced routing is really used: other experts give other log-probs
    assert batch.forced is not None
    shifted = batch.forced.clone()
    shifted = (shifted + 1) % model.config.n_routed_experts
    swapped = type(batch)(**{**batch.__dict__, "forced": shifted})
    moved = action_logprobs(model, swapped, 0.9, keep_routing=True)
    assert (moved.logp - out.logp).abs().max() > 1e-4
    assert moved.routing_agreement is not None and moved.routing_agreement < 0.5


def test_keep_routing_lets_the_router_learn(make_model):
    model = make_model()
    batch = _rollout(model, top_p=1.0)
    out = action_logprobs(model, batch, 0.9, keep_routing=True)
    out.logp.sum().backward()
    gates = [b.ffn.gate.weight for b in model.layers if b.is_moe]
    assert all(g.grad is not None and g.grad.abs().sum() > 0 for g in gates)


def test_keep_sampling_mask_logprobs_equal_the_samplers(make_model):
    model = make_model()
    batch = _rollout(model, top_p=0.5)
    assert batch.keep is not None and bool((~batch.keep).any())
    masked = action_logprobs(model, batch, 0.9, keep_sampling_mask=True)
    torch.testing.assert_close(masked.logp.float(), batch.logp_old, rtol=0, atol=1e-5)
    full = action_logprobs(model, batch, 0.9, keep_sampling_mask=False)
    assert bool((full.logp < masked.logp - 1e-6).any())  # the full vocabulary spreads mass the sampler never had
    assert bool((masked.entropy <= full.entropy + 1e-9).all())
