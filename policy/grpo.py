"""The GRPO objective of DeepSeek-V3.2 (deepseek_v32.md §4.2-4.6), written as plain tensor math.

Everything here acts on the *action tokens* of a batch of episodes, flattened: token j belongs
to sequence ``seq[j]`` (one episode), and sequence i to group ``group[i]`` (the G samples of one
task). Three log-probabilities per token, all of the sampled token given its prefix:

* ``logp``: the policy being trained, pi_theta (with gradient);
* ``logp_old``: the sampler's, pi_old, exactly as the rollout recorded it;
* ``logp_ref``: the frozen reference policy (the run's ``--init``), for the KL penalty.

The per-token objective (maximised; the loss is its negation) is

    min(r A, clip(r, 1 - eps, 1 + eps) A) * M_seq  -  beta * KL_hat,      r = pi_theta / pi_old

averaged over the tokens of each sequence, then over the sequences of each group, then over the
groups (§4.2: "per-sequence token mean, then the group mean").

Decisions (the issue asks for them to be stated):

* **Advantage A = R - mean(R) over the group, not divided by the std.** V3.2 writes it that way,
  and the std division has a known bias (Dr. GRPO, Liu et al. 2025): it scales a group's
  gradient by 1/std, so nearly-solved and nearly-failed tasks (small std) get the largest
  weights, and a group with one lucky success among G is amplified most. Rewards here are
  verifier scores in [0, 1], already on a fixed scale, so nothing needs the normalisation.
* **The KL estimate keeps its ratio factor's gradient** (§4.3): KL_hat = (pi_theta / pi_old) *
  (pi_ref/pi_theta - log(pi_ref/pi_theta) - 1). Under tokens drawn from pi_old its expectation
  is exactly KL(pi_theta || pi_ref), and so is the expectation of its gradient, only if the
  ratio is differentiated (tested against autograd of the exact KL). ``unbiased_kl=False`` gives
  plain K3 (no ratio), the estimator V3.2 replaced, for the ablation.
* **Off-policy sequence masking exactly as §4.4**: a sequence's surrogate term (not its KL term)
  is dropped when its advantage is negative AND its mean over tokens of
  log(pi_old / pi_theta) is above delta (strictly). pi_theta enters the mask without gradient.
* The clip fraction counts tokens where the clip is *active* (the clipped term is the minimum
  and differs): r > 1 + eps with A > 0, or r < 1 - eps with A < 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def segment_mean(values: Tensor, index: Tensor, n: int) -> Tensor:
    """Mean of ``values`` [T] per segment: out[k] = mean(values[index == k]) ([n]; 0 for an empty segment)."""
    total = values.new_zeros(n).index_add(0, index, values)
    count = values.new_zeros(n).index_add(0, index, torch.ones_like(values))
    return total / count.clamp_min(1)


def group_advantages(rewards: Tensor, group: Tensor) -> Tensor:
    """A_i = R_i - mean of R over i's group (no std division; see the module docstring).

    Args:
        rewards: [N] rewards of the sequences.
        group: [N] group index of each sequence (0..n_groups-1).

    Returns:
        [N] advantages.
    """
    n_groups = int(group.max()) + 1 if len(group) else 0
    return rewards - segment_mean(rewards, group, n_groups)[group]


def zero_variance_groups(rewards: Tensor, group: Tensor) -> Tensor:
    """[N] bool: True for the sequences of groups whose rewards are all equal (advantage 0 everywhere)."""
    n_groups = int(group.max()) + 1 if len(group) else 0
    lo = rewards.new_full((n_groups,), float("inf")).scatter_reduce(0, group, rewards, "amin")
    hi = rewards.new_full((n_groups,), float("-inf")).scatter_reduce(0, group, rewards, "amax")
    return (lo == hi)[group]


def sequence_weights(group: Tensor) -> Tensor:
    """[N] weight of each sequence in the loss: 1 / (number of groups x size of its group).

    Summing per-sequence means with these weights is the group mean, then the mean over groups.
    """
    n_groups = int(group.max()) + 1
    sizes = torch.bincount(group, minlength=n_groups).to(torch.float64)
    return 1.0 / (n_groups * sizes[group])


def kl_estimate(logp: Tensor, logp_old: Tensor, logp_ref: Tensor, unbiased: bool = True) -> Tensor:
    """Per-token estimate of KL(pi_theta || pi_ref) from tokens sampled by pi_old (§4.3).

    K3 is ``pi_ref/pi_theta - log(pi_ref/pi_theta) - 1`` (non-negative, unbiased under tokens
    from pi_theta). Tokens come from pi_old, so the unbiased form reweights it by
    pi_theta/pi_old, with gradient through that ratio.

    Args:
        logp: [T] pi_theta log-probs of the sampled tokens (with gradient).
        logp_old: [T] the sampler's log-probs of them.
        logp_ref: [T] the reference's log-probs of them.
        unbiased: reweight by the importance ratio (False: plain K3, biased off-policy).

    Returns:
        [T] estimates.
    """
    log_ref_ratio = logp_ref - logp
    k3 = torch.expm1(log_ref_ratio) - log_ref_ratio  # exp(x) - x - 1, accurate near x = 0
    return torch.exp(logp - logp_old) * k3 if unbiased else k3


def off_policy_mask(advantages: Tensor, seq_log_ratio: Tensor, delta: float) -> Tensor:
    """§4.4's mask per sequence: False (masked) iff A < 0 and mean log(pi_old / pi_theta) > delta.

    Args:
        advantages: [N] advantage of each sequence.
        seq_log_ratio: [N] per-sequence mean over tokens of log pi_old - log pi_theta.
        delta: the threshold.

    Returns:
        [N] bool, True where the sequence's surrogate term is kept.
    """
    return ~((advantages < 0) & (seq_log_ratio > delta))


@dataclass(frozen=True)
class Objective:
    """The settings of the objective (the loop's config carries them).

    Attributes:
        clip_eps: eps of the clipped ratio.
        kl_coef: beta (0: no KL term, the reference model is not needed).
        unbiased_kl: the §4.3 estimator (False: plain K3).
        off_policy_mask: §4.4 sequence masking on.
        off_policy_delta: delta of the mask.
    """

    clip_eps: float = 0.2
    kl_coef: float = 0.01
    unbiased_kl: bool = True
    off_policy_mask: bool = True
    off_policy_delta: float = 0.05


@dataclass
class LossParts:
    """The loss and what the metrics report of it (floats are detached means).

    Attributes:
        loss: scalar to minimise (with gradient).
        kl: mean per-token KL estimate (0 when kl_coef is 0 and no reference was given).
        clip_frac: share of tokens whose clip is active.
        masked_frac: share of sequences masked by §4.4.
        ratio: mean per-token ratio pi_theta / pi_old.
        off_policy_kl: mean over sequences of the per-sequence mean log(pi_old / pi_theta).
    """

    loss: Tensor
    kl: float
    clip_frac: float
    masked_frac: float
    ratio: float
    off_policy_kl: float


def grpo_loss(
    logp: Tensor,
    logp_old: Tensor,
    logp_ref: Tensor | None,
    advantages: Tensor,
    seq: Tensor,
    group: Tensor,
    objective: Objective,
    seq_weight: Tensor | None = None,
) -> LossParts:
    """The negated V3.2 objective over a batch of sequences (see the module docstring).

    The objective is linear in the per-sequence means, so a batch too large for one forward
    splits into micro-batches whose losses add up: pass each sequence's weight in the whole
    batch, ``sequence_weights(group)`` of the whole batch, as ``seq_weight`` (then ``group`` is
    not used) and sum the micro-batches' losses (or accumulate their gradients).

    Args:
        logp: [T] pi_theta log-probs of the action tokens (with gradient).
        logp_old: [T] the sampler's log-probs.
        logp_ref: [T] the reference's log-probs, or None (then the KL term is left out).
        advantages: [N] per sequence.
        seq: [T] sequence index of each token (0..N-1; every sequence has at least one token).
        group: [N] group index of each sequence (0..n_groups-1, every group non-empty).
        objective: eps, beta and the switches.
        seq_weight: [N] weight of each sequence's mean in the loss (default: 1 / (groups x its
            group's size), the group mean then the mean over groups).

    Returns:
        A ``LossParts``.
    """
    n_seq = len(advantages)
    if seq_weight is None:
        seq_weight = sequence_weights(group)
    adv = advantages[seq]  # [T]
    ratio = torch.exp(logp - logp_old)
    eps = objective.clip_eps
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv)
    seq_log_ratio = segment_mean((logp_old - logp).detach(), seq, n_seq)  # KL(old || theta) per sequence
    keep = torch.ones(n_seq, dtype=torch.bool, device=logp.device)
    if objective.off_policy_mask:
        keep = off_policy_mask(advantages, seq_log_ratio, objective.off_policy_delta)
    per_token = surrogate * keep[seq].to(surrogate.dtype)
    kl = None
    if logp_ref is not None:
        kl = kl_estimate(logp, logp_old, logp_ref, objective.unbiased_kl)
        if objective.kl_coef:
            per_token = per_token - objective.kl_coef * kl
    per_seq = segment_mean(per_token, seq, n_seq)
    clipped = ((adv > 0) & (ratio > 1 + eps)) | ((adv < 0) & (ratio < 1 - eps))
    return LossParts(
        loss=-(per_seq * seq_weight.to(per_seq.dtype)).sum(),
        kl=float(kl.detach().mean()) if kl is not None else 0.0,
        clip_frac=float(clipped.float().mean()),
        masked_frac=float((~keep).float().mean()),
        ratio=float(ratio.detach().mean()),
        off_policy_kl=float(seq_log_ratio.mean()),
    )


# ------------------------------------------------------------------ the training forward


@dataclass
class TrainBatch:
    """Episodes padded for one training forward, with their action tokens flattened.

    Attributes:
        tokens: [B, L] ids (right-padded); inputs are tokens[:, :-1].
        forced: [n_moe, B, L - 1, K] the rollout's experts for every input token (padding
            carries experts 0..K-1), or None (no MoE, or routing not recorded).
        rows: [T] row of each action token; ``cols``: [T] its logit position (token index - 1).
        targets: [T] the action tokens' ids.
        logp_old: [T] the sampler's log-probs.
        keep: [T, V] bool kept sets, or None (top_p 1: the whole vocabulary).
        lengths: [B] real tokens per row.
    """

    tokens: Tensor
    forced: Tensor | None
    rows: Tensor
    cols: Tensor
    targets: Tensor
    logp_old: Tensor
    keep: Tensor | None
    lengths: Tensor

    @property
    def seq(self) -> Tensor:
        """[T] sequence (row) index of each action token."""
        return self.rows

    def to(self, device: torch.device | str) -> TrainBatch:
        """The batch on ``device`` (``lengths`` stays on the CPU)."""

        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return TrainBatch(
            tokens=self.tokens.to(device),
            forced=move(self.forced),
            rows=self.rows.to(device),
            cols=self.cols.to(device),
            targets=self.targets.to(device),
            logp_old=self.logp_old.to(device),
            keep=move(self.keep),
            lengths=self.lengths,
        )


def make_train_batch(
    ids: list[Tensor],
    action: list[Tensor],
    logprobs: list[Tensor],
    keep: list[Tensor | None],
    routing: list[Tensor | None],
    pad_id: int,
) -> TrainBatch:
    """Pad B episodes into one ``TrainBatch``.

    Args:
        ids: per episode [L_b] token ids (the whole context obs0 act1 obs1 ...).
        action: per episode [L_b] bool, True on the policy's tokens (never the first token).
        logprobs: per episode [L_b] the sampler's log-prob at action tokens (anything elsewhere).
        keep: per episode [n_b, V] kept sets of its n_b action tokens, or None.
        routing: per episode [L_b, n_moe, K] experts of every token, or None.
        pad_id: id of padding.

    Returns:
        The batch (``keep`` is None unless every episode has one; ``forced`` likewise).
    """
    B, L = len(ids), max(len(t) for t in ids)
    tokens = torch.full((B, L), pad_id, dtype=torch.long)
    for b, t in enumerate(ids):
        tokens[b, : len(t)] = t
    rows, cols, targets, old = [], [], [], []
    for b, (t, a, lp) in enumerate(zip(ids, action, logprobs, strict=True)):
        pos = a.nonzero().flatten()
        rows.append(torch.full_like(pos, b))
        cols.append(pos - 1)
        targets.append(t[pos])
        old.append(lp[pos].float())
    keep_all = None if any(k is None for k in keep) else torch.cat(keep)  # type: ignore[arg-type]
    forced = None
    if routing and all(r is not None for r in routing):
        first = routing[0]
        assert first is not None
        n_moe, K = first.shape[1], first.shape[2]
        forced = torch.arange(K).expand(n_moe, B, L - 1, K).clone()
        for b, r in enumerate(routing):
            assert r is not None
            n = min(len(r), L - 1)
            forced[:, b, :n] = r[:n].permute(1, 0, 2)
    return TrainBatch(
        tokens=tokens,
        forced=forced,
        rows=torch.cat(rows),
        cols=torch.cat(cols),
        targets=torch.cat(targets),
        logp_old=torch.cat(old),
        keep=keep_all,
        lengths=torch.tensor([len(t) for t in ids]),
    )


@dataclass
class PolicyLogprobs:
    """What the training forward gives per action token, and the routing it saw.

    Attributes:
        logp: [T] log-probs (with gradient when computed with grad).
        entropy: [T] entropy of the same distribution (detached).
        routing_agreement: mean share of a token's K experts that the current router would pick
            itself, over every real input token and MoE layer (None without MoE or a record).
    """

    logp: Tensor
    entropy: Tensor
    routing_agreement: float | None


def action_logprobs(
    model: torch.nn.Module,
    batch: TrainBatch,
    temperature: float = 1.0,
    *,
    keep_routing: bool = True,
    keep_sampling_mask: bool = True,
) -> PolicyLogprobs:
    """Log-probs of the batch's action tokens under ``model`` (pi_theta, or pi_ref without grad).

    Keep Routing (§4.5) forces the rollout's experts in every MoE layer (``forced_routing``);
    the gate values are the current router's affinities at those experts, so the router still
    learns. Keep Sampling Mask (§4.6) restricts each token's softmax to the kept set the sampler
    drew from. Both as ``generate.token_logprobs`` computes the sampler's, so at the rollout's
    weights the two agree up to float rounding (tested).

    The routing agreement compares, per token and MoE layer, the recorded experts with the
    current router's own top-k on the same hidden states (a forward hook reads each gate's
    affinities; nothing is recomputed).

    Args:
        model: a ``Transformer``.
        batch: the padded episodes.
        temperature: the sampler's temperature (the sampled distribution is softmax(logits / T)).
        keep_routing: force the recorded routing (ignored when the batch has none).
        keep_sampling_mask: restrict to the recorded kept sets (ignored when there are none).

    Returns:
        A ``PolicyLogprobs``.
    """
    from toolgym.policy.generate import token_logprobs

    gates = [block.ffn.gate for block in model.layers if block.is_moe]  # type: ignore[union-attr]
    scores: list[Tensor] = []
    hooks = [g.register_forward_hook(lambda _m, _i, out: scores.append(out[2].detach())) for g in gates]
    try:
        forced = batch.forced if keep_routing else None
        out = model(batch.tokens[:, :-1], forced_routing=forced)
    finally:
        for h in hooks:
            h.remove()
    logits = out.logits[batch.rows, batch.cols]  # [T, V]
    keep = batch.keep if keep_sampling_mask else None
    logp = token_logprobs(logits, batch.targets, temperature, keep)
    with torch.no_grad():
        scaled = logits.detach() / (temperature if temperature > 0 else 1.0)
        if keep is not None:
            scaled = scaled.masked_fill(~keep, float("-inf"))
        lp_all = scaled.log_softmax(-1)
        entropy = -(lp_all.exp() * lp_all.masked_fill(~torch.isfinite(lp_all), 0.0)).sum(-1)
        agreement = None
        if batch.forced is not None and scores:
            B, S = batch.tokens.shape[0], batch.tokens.shape[1] - 1
            real = torch.arange(S)[None, :] < (batch.lengths[:, None] - 1)  # [B, S] real input tokens
            shares = []
            for gate, s, rec in zip(gates, scores, batch.forced, strict=True):
                mine = gate.route(s)[1].view(B, S, -1).cpu()  # the router's own top-k [B, S, K]
                rec = rec.cpu()
                share = (mine[..., :, None] == rec[..., None, :]).any(-1).float().mean(-1)  # [B, S]
                shares.append(share[real])
            agreement = float(torch.cat(shares).mean())
    return PolicyLogprobs(logp, entropy, agreement)
