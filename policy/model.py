"""The policy model: MLA attention with DeepSeek Sparse Attention, and DeepSeekMoE feed-forwards.

One file, math first, in the manner of DeepSeek-V3.2-Exp ``inference/model.py``; the equations
and their sources are in ``reference/deepseek_v32.md`` (§1 MLA, §2 DSA, §3 MoE). Design choices:

* **MLA** caches only the normalised KV latent ``c_kv`` (``kv_lora_rank`` numbers) and the
  decoupled RoPE key ``k_pe`` (``qk_rope_head_dim``) per token and layer. Attention runs in one of
  three forms that compute the same function: ``"mha"`` expands the latent into per-head keys and
  values (training, prefill, and DSA prefill over few keys with a top-k mask); ``"mqa"`` absorbs
  ``W_UK`` into the query and ``W_UV`` into the output so all heads attend over the shared latent
  (dense decode); ``"gather"`` is the absorbed form over only the top-k tokens picked by the
  indexer (sparse decode and long sparse prefill). Decode steps run as ``kernel.decode_step``,
  the same function in far fewer ops, tested equal to these modules.
* **DSA**: the lightning indexer scores every earlier token,
  ``I[t,s] = sum_j w[t,j] * ReLU(q[t,j] . k[s])``, from few heads and a small key that has its own
  cache; each query keeps its top-k causal tokens. The masked-dense reference adds a top-k mask to
  dense scores; the gather path attends to the selected latents only, so its cost per query is
  O(k) in the main attention and O(L) only in the cheap indexer. With k >= L both equal dense.
  The indexer always reads detached inputs: its only teacher is the KL to the main attention
  (§2.5), and the LM loss never reaches it because top-k indices carry no gradient. The
  Hadamard rotation and FP8 quantisation of the official code are skipped (fp32 here, and the
  rotation is orthonormal, so scores do not change).
* **DeepSeekMoE**: a shared SwiGLU expert plus fine-grained routed experts; sigmoid affinities;
  top-k on affinity + a per-expert bias that is updated by a sign rule and never enters the
  gate weights; gate weights renormalised over the chosen experts times ``route_scale``; the
  small sequence-wise balance loss; optional forced expert indices (GRPO Keep Routing) with
  gate values recomputed from the current router at those indices so the router keeps learning.
* Switches ``dense_attention`` and ``dense_ffn`` turn the same code into the baselines: dense
  attention never runs the indexer (unless its warm-up loss is asked for), and a dense FFN has
  the inner width of the shared plus active routed experts, i.e. the same active parameters.

Parameters are built on the meta device and then initialised from a seeded local generator, so
construction never draws from (or disturbs) the global RNG.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toolgym.errors import ConfigError
from toolgym.policy import kernel
from toolgym.policy.cache import KVCache

AttnImpl = Literal["auto", "mha", "mqa", "gather"]

#: Upper bound on the elements of one [B, chunk, heads, keys] score tensor; queries are processed
#: in chunks below it so a 32k-token prefill never materialises a 32k x 32k score matrix.
ATTN_CHUNK_ELEMENTS = 1 << 24

#: DSA prefill (S >= 64 new tokens) over at most this many keys runs as expanded MHA with the
#: top-k mask, which DeepSeek uses for short prefill too: below ~1-2k keys on this CPU it beats
#: gathering a [S, k, C+r] copy of the selected latents per query. Longer prefill gathers.
MASKED_PREFILL_MAX_KEYS = 1024


@dataclass
class ModelConfig:
    """Every size and switch of the model; the defaults build the benchmark-sized policy.

    The defaults are small enough for a 2-core CPU yet keep the ratios that make DSA matter: the
    indexer (4 heads x 32 dims per key) is ~17x cheaper per cached token than absorbed MLA
    attention (8 heads x (128 + 16 + 128)), and k = 128 is far below the 16k-32k contexts of the
    benchmark.
    """

    # model
    vocab_size: int = 4096  # must equal the tokenizer's vocabulary size
    dim: int = 256  # residual stream width
    n_layers: int = 4
    n_dense_layers: int = 1  # the first layers use a dense SwiGLU FFN (V3: 3 of 61)
    inter_dim: int = 512  # inner width of those dense layers
    norm_eps: float = 1e-6
    # attention (MLA)
    n_heads: int = 8
    q_lora_rank: int = 128  # query latent, also the indexer's query input
    kv_lora_rank: int = 128  # cached KV latent c_kv
    qk_nope_head_dim: int = 32
    qk_rope_head_dim: int = 16  # decoupled RoPE key, cached and shared by all heads
    v_head_dim: int = 32
    rope_theta: float = 10000.0
    dense_attention: bool = False  # baseline switch: attend to every earlier token
    # moe
    dense_ffn: bool = False  # baseline switch: SwiGLU of width (n_shared + n_activated) * moe_inter_dim
    # Fine-grained experts (DeepSeekMoE): 64-wide experts, top-4 routed + 2 shared, so a token uses
    # the same 384 inner dims as the old 128-wide top-2 + 1 shared; 72 routed experts give 3.2x as
    # many total as active parameters (14.56 M vs 4.54 M) at ~0.84x the dense FFN's training
    # tokens/s (``toolgym bench model``). Checkpoints store their config, so older ones still load.
    n_routed_experts: int = 72
    n_shared_experts: int = 2
    n_activated_experts: int = 4
    moe_inter_dim: int = 64
    n_expert_groups: int = 1  # group-limited routing (V3's node limit); 1 turns it off
    n_limited_groups: int = 1  # groups kept per token
    route_scale: float = 1.0  # gate weights sum to this (V3: 2.5)
    balance_alpha: float = 1e-4  # sequence-wise balance loss weight (V3: 1e-4)
    # sparse-index (lightning indexer)
    index_n_heads: int = 4
    index_head_dim: int = 32  # the first qk_rope_head_dim dims carry (non-interleaved) RoPE
    index_topk: int = 128

    def __post_init__(self) -> None:
        problems = []
        if self.qk_rope_head_dim % 2:
            problems.append(f"qk_rope_head_dim must be even, got {self.qk_rope_head_dim}")
        if self.index_head_dim < self.qk_rope_head_dim:
            problems.append("index_head_dim must be at least qk_rope_head_dim (RoPE takes its front)")
        if not 0 <= self.n_dense_layers <= self.n_layers:
            problems.append(f"n_dense_layers must lie in [0, n_layers={self.n_layers}]")
        if self.n_routed_experts % self.n_expert_groups:
            problems.append("n_routed_experts must be divisible by n_expert_groups")
        if not 1 <= self.n_limited_groups <= self.n_expert_groups:
            problems.append("n_limited_groups must lie in [1, n_expert_groups]")
        kept = self.n_limited_groups * self.n_routed_experts // self.n_expert_groups
        if not 1 <= self.n_activated_experts <= kept:
            problems.append(f"n_activated_experts must lie in [1, {kept}] (experts in kept groups)")
        if self.index_topk < 1:
            problems.append("index_topk must be positive")
        if problems:
            raise ConfigError("Invalid model config: " + "; ".join(problems) + ".")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (the checkpoint's config.json ``model`` section)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a dict, rejecting unknown keys so typos never pass silently.

        Raises:
            ConfigError: on unknown keys or invalid values.
        """
        kinds = {f.name: f.type for f in fields(cls)}  # "int", "float", "bool" (postponed annotations)
        unknown = sorted(set(data) - set(kinds))
        if unknown:
            raise ConfigError(f"Unknown model config keys {unknown}; known keys are {sorted(kinds)}.")
        for key, value in data.items():  # a JSON config may hold anything: "64", 64.5, true
            want = {"int": int, "float": (int, float), "bool": bool}.get(str(kinds[key]))
            if want is not None and (not isinstance(value, want) or (want is not bool and isinstance(value, bool))):
                raise ConfigError(f"Model config {key} must be {kinds[key]}, got {value!r}.")
        return cls(**data)

    @classmethod
    def micro(cls, **overrides: Any) -> ModelConfig:
        """A micro model for tests and the eval benchmark; ``overrides`` replace any field.

        3 layers (1 dense + 2 MoE), dim 64, 4 heads, 8 routed experts (top-2) + 1 shared, indexer
        2 x 16 with top-8.
        """
        base: dict[str, Any] = dict(
            dim=64, n_layers=3, n_dense_layers=1, inter_dim=128, n_heads=4, q_lora_rank=32, kv_lora_rank=32,
            qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, n_routed_experts=8, n_shared_experts=1,
            n_activated_experts=2, moe_inter_dim=32, index_n_heads=2, index_head_dim=16, index_topk=8,
        )  # fmt: skip
        return cls.from_dict({**base, **overrides})


@dataclass
class ModelOutput:
    """What one forward pass returns.

    Attributes:
        logits: [B, S, V] float32 next-token logits (S = 1 when ``logits_at`` was given).
        routing: [n_moe, B, S, K] expert indices per MoE layer (feed back as ``forced_routing``),
            or None when the model has no MoE layer.
        expert_load: [n_moe, E] tokens routed to each expert (input to the bias update).
        balance_loss: scalar sequence-wise balance loss summed over MoE layers (0 without MoE, and
            0 in eval mode, where nothing trains on it).
        index_loss: scalar indexer KL averaged over layers, or None when not requested.
    """

    logits: Tensor
    routing: Tensor | None
    expert_load: Tensor | None
    balance_loss: Tensor
    index_loss: Tensor | None


# ----------------------------------------------------------------------------------- norms


class RMSNorm(nn.Module):
    """x / rms(x) * weight.

    Written out because ``nn.RMSNorm`` costs about twice the ops per call, which shows in
    single-token decode, where per-op overhead rather than arithmetic sets the pace.
    """

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        """[..., dim] -> [..., dim]."""
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


# ----------------------------------------------------------------------------------- rope


def rope_cos_sin(positions: Tensor, dim: int, theta: float, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """RoPE tables for explicit positions: two [B, S, dim/2] tensors.

    Computed per call from the positions (in float64, then cast) instead of a precomputed table,
    so any position works and a cached step and a full forward see bit-identical angles.
    """
    inv_freq = theta ** (-torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device) / dim)
    angles = positions.to(torch.float64)[..., None] * inv_freq  # [B,S,dim/2]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor, interleaved: bool) -> Tensor:
    """Rotate x [B, S, H, r] by position; cos/sin are [B, S, r/2].

    MLA pairs dims (2i, 2i+1) (interleaved); the indexer pairs dim i with i + r/2, the layout
    DeepSeek confirmed after release (deepseek_v32.md §2.4). Either works from scratch, but the
    two must never be mixed up when comparing with DeepSeek weights.
    """
    if interleaved:
        x1, x2 = x[..., 0::2], x[..., 1::2]
    else:
        x1, x2 = x.chunk(2, dim=-1)
    c, s = cos[:, :, None], sin[:, :, None]
    y1, y2 = x1 * c - x2 * s, x1 * s + x2 * c
    return torch.stack([y1, y2], dim=-1).flatten(-2) if interleaved else torch.cat([y1, y2], dim=-1)


def gather_tokens(x: Tensor, idx: Tensor) -> Tensor:
    """Pick rows of x [B, T, D] at idx [B, S, k] -> [B, S, k, D], without copying all of x."""
    B, T, D = x.shape
    flat = idx + (torch.arange(B, device=idx.device) * T)[:, None, None]
    return x.reshape(B * T, D)[flat]


# --------------------------------------------------------------------------- attention


def index_scores(q: Tensor, w: Tensor, k: Tensor) -> Tensor:
    """Lightning-indexer scores I[b,s,t] = sum_j w[b,s,j] * ReLU(q[b,s,j] . k[b,t]).

    Args:
        q: [B, S, H_I, d_I] indexer queries.
        w: [B, S, H_I] head weights (already scaled by 1/sqrt(H_I * d_I)).
        k: [B, T, d_I] indexer keys, one per token, shared by all indexer heads.

    Returns:
        [B, S, T] scores (no causal mask).
    """
    B, S, HI, d = q.shape
    relu = (q.reshape(B, S * HI, d) @ k.transpose(1, 2)).relu_().view(B, S, HI, -1)  # [B,S,HI,T]
    return (w[:, :, None, :] @ relu).squeeze(2)  # weighted sum over heads: [B,S,T]


def attention_probs(q: Tensor, k: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    """softmax(q k^T * scale) over allowed keys: [B, H, S, T] (the indexer's teacher, head by head).

    Args:
        q: [B, H, S, d] queries.
        k: [B, H, T, d] keys.
        mask: bool, broadcastable to [B, H, S, T], True where a key may be attended; or None.
        scale: the softmax scale.
    """
    scores = (q @ k.transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1)


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    """Reference softmax attention [B, H, S, dv] for values v [B, H, T, dv].

    The math behind ``kernel.fused_attention``, which the model runs and which is tested equal.
    """
    return attention_probs(q, k, mask, scale) @ v


def index_kl(p: Tensor, logits: Tensor, mask: Tensor) -> Tensor:
    """Per-query KL(p || softmax(logits)) over the allowed keys; the indexer's training signal.

    p is the main attention summed over heads; it is renormalised over ``mask`` (the L1
    normalisation of §2.5, restricted to the selected set in the sparse stage). The gradient with
    respect to the logits is softmax(logits) - p on the allowed keys and 0 elsewhere.

    Args:
        p: [..., T] non-negative attention mass (treated as a constant).
        logits: [..., T] index scores.
        mask: [..., T] bool, True where a key is allowed.

    Returns:
        [...] KL per query.
    """
    p = p.detach().masked_fill(~mask, 0.0)
    p = p / p.sum(-1, keepdim=True).clamp_min(1e-30)
    log_q = logits.masked_fill(~mask, float("-inf")).log_softmax(-1).masked_fill(~mask, 0.0)
    return (p * (p.clamp_min(1e-10).log() - log_q)).sum(-1)


def select_topk(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-k along the last axis with a deterministic set: ties at the k-th value go to later keys.

    ReLU index scores tie at exactly 0 (a key that every head scores <= 0), and ``torch.topk``
    breaks ties differently for different tensor lengths, so a cached decode and a full forward
    could pick different sets. Resolving boundary ties toward the most recent keys makes the set
    a function of the scores alone. Nonzero scores are sums of continuous products and tie with
    probability zero, so the O(T) tie pass runs only when the k-th value is 0; decode normally
    pays for one ``topk``.

    Args:
        scores: [..., T] index scores (-inf for keys that may not be picked).
        k: how many to keep (<= T).

    Returns:
        (values [..., k], indices [..., k]); the order within the set is unspecified.
    """
    vals, idx = scores.topk(k, dim=-1, sorted=False)  # the set is what counts (unsorted: up to 4x faster)
    kth = vals.min(-1).values
    tied = kth == 0
    if not bool(tied.any()):
        return vals, idx
    # Redo only the rows whose k-th value is a tie at 0: keep every key above 0, then the latest
    # zeros up to k. Each such row keeps exactly k keys, so nonzero() gives them row by row.
    T = scores.size(-1)
    flat_scores, flat_idx, flat_vals = scores.reshape(-1, T), idx.reshape(-1, k), vals.reshape(-1, k)
    rows = tied.reshape(-1).nonzero().flatten()
    sub = flat_scores[rows]  # [R,T]
    ties, above = sub == 0, sub > 0
    ties_from_right = ties.sum(-1, keepdim=True) - ties.cumsum(-1) + ties.long()  # ties at or after each key
    keep = above | (ties & (ties_from_right <= k - above.sum(-1, keepdim=True)))  # exactly k per row
    picked = keep.nonzero()[:, 1].view(len(rows), k)
    flat_idx, flat_vals = flat_idx.clone(), flat_vals.clone()
    flat_idx[rows], flat_vals[rows] = picked, sub.gather(-1, picked)
    return flat_vals.view(vals.shape), flat_idx.view(idx.shape)


class Indexer(nn.Module):
    """DSA lightning indexer: few heads, small dims, ReLU scores, one cached key per token."""

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.head_dim, self.rope_dim = c.index_n_heads, c.index_head_dim, c.qk_rope_head_dim
        self.wq_b = nn.Linear(c.q_lora_rank, c.index_n_heads * c.index_head_dim, bias=False)
        self.wk = nn.Linear(c.dim, c.index_head_dim, bias=False)
        self.k_norm = nn.LayerNorm(c.index_head_dim)  # LayerNorm with bias, as in the official code
        self.weights_proj = nn.Linear(c.dim, c.index_n_heads, bias=False)  # no activation: w may be < 0
        self.scale = (c.index_n_heads * c.index_head_dim) ** -0.5

    def _rope(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        r = self.rope_dim  # rope on the front of the vector, non-interleaved (§2.2 step 3, §2.4)
        return torch.cat([apply_rope(x[..., :r], cos, sin, interleaved=False), x[..., r:]], dim=-1)

    def queries(self, x: Tensor, qr: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
        """Queries [B, S, H_I, d_I] from the MLA query latent qr, and head weights [B, S, H_I]."""
        B, S, _ = x.shape
        q = self._rope(self.wq_b(qr).view(B, S, self.n_heads, self.head_dim), cos, sin)
        return q, self.weights_proj(x) * self.scale

    def keys(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """One key [B, S, d_I] per token."""
        return self._rope(self.k_norm(self.wk(x))[:, :, None], cos, sin)[:, :, 0]


class MLA(nn.Module):
    """Multi-head latent attention with optional DSA token selection (see module docstring)."""

    def __init__(self, layer_id: int, c: ModelConfig) -> None:
        super().__init__()
        self.layer_id, self.config = layer_id, c
        self.qk_head_dim = c.qk_nope_head_dim + c.qk_rope_head_dim
        self.wq_a = nn.Linear(c.dim, c.q_lora_rank, bias=False)
        self.q_norm = RMSNorm(c.q_lora_rank, eps=c.norm_eps)
        self.wq_b = nn.Linear(c.q_lora_rank, c.n_heads * self.qk_head_dim, bias=False)
        self.wkv_a = nn.Linear(c.dim, c.kv_lora_rank + c.qk_rope_head_dim, bias=False)
        self.kv_norm = RMSNorm(c.kv_lora_rank, eps=c.norm_eps)
        self.wkv_b = nn.Linear(c.kv_lora_rank, c.n_heads * (c.qk_nope_head_dim + c.v_head_dim), bias=False)
        self.wo = nn.Linear(c.n_heads * c.v_head_dim, c.dim, bias=False)
        self.indexer = Indexer(c)
        self.softmax_scale = self.qk_head_dim**-0.5

    def forward(
        self,
        x: Tensor,
        rope: tuple[Tensor, Tensor],
        positions: Tensor,
        cache: KVCache | None,
        impl: AttnImpl,
        index_loss: bool,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from x [B, S, D] at ``positions`` [B, S] to the causal past.

        Without a cache the keys are the S tokens themselves (positions must increase along S);
        with a cache the new entries are written first and the keys are cache slots 0..max(pos).

        Returns:
            ([B, S, D] output, mean indexer KL over queries or None).
        """
        c, (cos, sin) = self.config, rope
        B, S, _ = x.shape
        H, dn, dv, C, r = c.n_heads, c.qk_nope_head_dim, c.v_head_dim, c.kv_lora_rank, c.qk_rope_head_dim
        sparse = not c.dense_attention
        if index_loss and cache is not None:
            raise ConfigError("index_loss is a training signal; call the model without a cache.")

        qr = self.q_norm(self.wq_a(x))  # [B,S,Lq]
        q_nope, q_pe = self.wq_b(qr).view(B, S, H, self.qk_head_dim).split([dn, r], -1)
        q_pe = apply_rope(q_pe, cos, sin, interleaved=True)  # [B,S,H,r]
        kv, k_pe = self.wkv_a(x).split([C, r], -1)
        k_pe = apply_rope(k_pe[:, :, None], cos, sin, interleaved=True)[:, :, 0]
        kv = torch.cat([self.kv_norm(kv), k_pe], dim=-1)  # [B,S,C+r] the cached entry
        use_index = sparse or index_loss
        iq = iw = ik = None
        if use_index:  # detached: only the KL teaches the indexer, and it teaches nothing else
            iq, iw = self.indexer.queries(x.detach(), qr.detach(), cos, sin)  # [B,S,HI,dI], [B,S,HI]
            ik = self.indexer.keys(x.detach(), cos, sin)  # [B,S,dI]

        if cache is not None:
            cache.write(self.layer_id, positions, kv, ik)
            T = int(positions.max()) + 1
            kv = cache.kv[self.layer_id]  # [B,cap,C+r]; sliced to the keys in use below
            ik = cache.ik[self.layer_id] if use_index else None
            key_pos = torch.arange(T, device=x.device)[None]  # [1,T] slot = position
        else:
            T, key_pos = S, positions
        if impl == "auto":  # prefill is expanded MHA, masked by the top-k for DSA over few keys (§2.3)
            if sparse and T <= c.index_topk and not index_loss:
                sparse = False  # every query keeps all its causal keys: DSA is dense attention here
            prefill = S >= 64 and not (sparse and T > MASKED_PREFILL_MAX_KEYS)
            impl = "mha" if cache is None or prefill else "gather" if sparse else "mqa"
        if impl == "gather" and not sparse:
            impl = "mqa"  # gather is the sparse form of mqa; with dense attention they coincide

        wkv_b = self.wkv_b.weight.view(H, dn + dv, C)
        if impl == "mha":  # expand the latent into per-head keys and values, head-major
            k_nope, v = self.wkv_b(kv[:, :T, :C]).view(B, T, H, dn + dv).split([dn, dv], -1)
            qh = torch.cat([q_nope, q_pe], -1).transpose(1, 2)  # [B,H,S,dn+r]
            kh = torch.cat([k_nope, kv[:, :T, None, C:].expand(B, T, H, r)], -1).transpose(1, 2)  # [B,H,T,dn+r]
            vh = v.transpose(1, 2)  # [B,H,T,dv]
        else:  # absorb W_UK into the query: q~ = W_UK^T q_nope scores against the latent itself
            q_lat = torch.cat([torch.einsum("bshd,hdc->bshc", q_nope, wkv_b[:, :dn]), q_pe], -1)  # [B,S,H,C+r]

        chunk = max(1, ATTN_CHUNK_ELEMENTS // (B * max(H, c.index_n_heads) * T))
        outs, kl_sum = [], 0.0
        for t0 in range(0, S, chunk):
            t1 = min(S, t0 + chunk)
            pos = positions[:, t0:t1]  # [B,c]
            Tc = int(pos.max()) + 1 if cache is not None else t1  # keys past Tc are in every query's future
            # causal mask [B,c,Tc]; None when every query sees every key (decode of equal-length rows)
            mask = None if int(pos.min()) + 1 >= Tc else key_pos[:, None, :Tc] <= pos[:, :, None]
            if sparse or index_loss:
                logits_i = index_scores(iq[:, t0:t1], iw[:, t0:t1], ik[:, :Tc])  # [B,c,Tc]
                if mask is not None:
                    logits_i = logits_i.masked_fill(~mask, float("-inf"))
                if mask is None and (index_loss or (sparse and impl != "gather")):
                    mask = torch.ones_like(logits_i, dtype=torch.bool)
            if sparse:
                top_val, top_idx = select_topk(logits_i, min(c.index_topk, Tc))  # [B,c,k]
                picked = top_val > float("-inf")  # fewer than k causal tokens: some picks are void
                if impl != "gather":  # masked-dense reference: keep only the picked tokens
                    mask = torch.zeros_like(mask).scatter_(-1, top_idx, picked)

            p_sum = None  # head-summed attention [B,c,keys], the indexer's teacher
            if impl == "mha":
                m4 = None if mask is None else mask[:, None]  # [B,1,c,Tc]
                q_c, k_c, v_c = qh[:, :, t0:t1], kh[:, :, :Tc], vh[:, :, :Tc]
                o = kernel.fused_attention(q_c, k_c, v_c, m4, self.softmax_scale).transpose(1, 2)  # [B,c,H,dv]
                if index_loss:  # the teacher is a constant: recompute it outside autograd
                    with torch.no_grad():
                        p_sum = attention_probs(q_c, k_c, m4, self.softmax_scale).sum(1)  # [B,c,Tc]
            else:
                q_c = q_lat[:, t0:t1] * self.softmax_scale  # scale the few queries, not the many scores
                if impl == "gather":
                    kv_s = gather_tokens(kv, top_idx)  # [B,c,k,C+r] only the selected entries
                    scores = q_c @ kv_s.transpose(-1, -2)  # [B,c,H,k]
                    mask = picked
                else:  # all heads against the shared latent: one [c*H, C+r] x [C+r, Tc] product
                    scores = (q_c.flatten(1, 2) @ kv[:, :Tc].transpose(1, 2)).view(B, t1 - t0, H, Tc)
                if mask is not None:
                    scores = scores.masked_fill(~mask[:, :, None], float("-inf"))
                probs = scores.softmax(-1)  # [B,c,H,keys]
                if impl == "gather":
                    lat = probs @ kv_s[..., :C]  # [B,c,H,C] mixture of the selected latents per head
                else:
                    lat = (probs.flatten(1, 2) @ kv[:, :Tc, :C]).view(B, t1 - t0, H, C)
                o = torch.einsum("bshc,hdc->bshd", lat, wkv_b[:, dn:])  # W_UV last: [B,c,H,dv]
                if index_loss:
                    p_sum = probs.sum(2)
            outs.append(o)
            if index_loss:  # KL on all causal keys (dense warm-up) or on the selected set (sparse)
                kl_logits = top_val if impl == "gather" else logits_i
                kl_sum = kl_sum + index_kl(p_sum, kl_logits, mask).sum()
        out = self.wo(torch.cat(outs, dim=1).flatten(2))  # [B,S,D]
        return out, (kl_sum / (B * S) if index_loss else None)


# ------------------------------------------------------------------------ feed-forwards


class MLP(nn.Module):
    """SwiGLU feed-forward w2(silu(w1 x) * w3 x): dense layers, experts and the shared expert."""

    def __init__(self, dim: int, inter_dim: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, inter_dim, bias=False)
        self.w2 = nn.Linear(inter_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, inter_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """[..., dim] -> [..., dim]."""
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Gate(nn.Module):
    """Sigmoid router with auxiliary-loss-free bias balancing (deepseek_v32.md §3.1-3.4).

    ``bias`` is a buffer, not a parameter: gradients never touch it, only ``update_bias``.
    """

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.topk, self.route_scale = c.n_activated_experts, c.route_scale
        self.n_groups, self.topk_groups = c.n_expert_groups, c.n_limited_groups
        self.weight = nn.Parameter(torch.empty(c.n_routed_experts, c.dim))  # expert centroids e_i
        self.register_buffer("bias", torch.zeros(c.n_routed_experts))

    def forward(self, x: Tensor, forced: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Route tokens x [N, D].

        Args:
            x: [N, D] tokens.
            forced: optional [N, K] expert indices to use instead of the top-k (Keep Routing).

        Returns:
            weights [N, K] (sum to route_scale), indices [N, K], affinities s [N, E].
        """
        scores = F.linear(x, self.weight).sigmoid()  # s[t,i] = sigmoid(u_t . e_i)  [N,E]
        weights, indices = self.route(scores, forced)
        return weights, indices, scores

    def route(self, scores: Tensor, forced: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Choose experts from affinities scores [N, E]; return (weights [N, K], indices [N, K]).

        Split from ``forward`` so the decode kernel, which computes the affinities inside a
        larger matmul, applies exactly this rule.
        """
        if forced is None:
            biased = (scores + self.bias).detach()  # the bias only ever chooses experts
            if self.n_groups > 1:
                g = biased.view(len(scores), self.n_groups, -1)  # [N,G,E/G]
                group_score = g.topk(min(2, g.size(-1)), dim=-1).values.sum(-1)  # [N,G]
                keep = group_score.topk(self.topk_groups, dim=-1).indices
                drop = torch.ones_like(group_score, dtype=torch.bool).scatter_(1, keep, False)
                biased = g.masked_fill(drop[..., None], float("-inf")).flatten(1)
            indices = biased.topk(self.topk, dim=-1).indices  # [N,K]
        else:
            indices = forced
        weights = scores.gather(1, indices)  # unbiased affinities of the chosen experts
        return weights / weights.sum(-1, keepdim=True) * self.route_scale, indices

    @torch.no_grad()
    def update_bias(self, load: Tensor, speed: float) -> None:
        """b_i += speed * sign(mean load - load_i): overloaded experts become less likely."""
        load = load.to(self.bias.dtype)
        self.bias += speed * torch.sign(load.mean() - load)


class MoE(nn.Module):
    """Shared expert plus routed experts: a loop over experts that skips those no token chose.

    Tokens are sorted by expert once, so each expert runs one matmul on a contiguous slice and
    the results return by one gather (an index_add per expert is ~10x slower on CPU).
    """

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.n_experts = c.n_routed_experts
        self.gate = Gate(c)
        self.experts = nn.ModuleList(MLP(c.dim, c.moe_inter_dim) for _ in range(c.n_routed_experts))
        self.shared_experts = MLP(c.dim, c.n_shared_experts * c.moe_inter_dim)

    def forward(self, x: Tensor, forced: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Route x [B, S, D]; return (y [B, S, D], indices [B, S, K], affinities [B, S, E])."""
        B, S, D = x.shape
        flat = x.reshape(-1, D)
        weights, indices, scores = self.gate(flat, None if forced is None else forced.reshape(B * S, -1))
        K = indices.size(-1)
        slots = indices.flatten()  # [N*K] expert of each (token, slot)
        order = slots.argsort(stable=True)  # group the (token, slot) pairs by expert
        counts = torch.bincount(slots, minlength=self.n_experts).tolist()
        xs, outs, start = flat[order // K], [], 0  # tokens in expert order [N*K, D]
        for i, n in enumerate(counts):
            if n:  # experts that no token chose are skipped
                outs.append(self.experts[i](xs[start : start + n]))
            start += n
        routed = torch.cat(outs)[order.argsort()].view(-1, K, D)  # back to (token, slot) order
        y = (routed * weights[..., None]).sum(1) + self.shared_experts(flat)
        return y.view(B, S, D), indices.view(B, S, -1), scores.view(B, S, -1)


def balance_loss(scores: Tensor, indices: Tensor, alpha: float) -> Tensor:
    """Sequence-wise balance loss alpha * sum_i f_i * P_i, averaged over sequences (§3.3).

    Args:
        scores: [B, S, E] sigmoid affinities.
        indices: [B, S, K] chosen experts.
        alpha: loss weight.
    """
    B, S, E = scores.shape
    K = indices.size(-1)
    hits = torch.zeros(B, E, device=scores.device, dtype=scores.dtype)
    f = hits.scatter_add_(1, indices.reshape(B, -1), torch.ones_like(indices.reshape(B, -1), dtype=scores.dtype))
    f = f * E / (K * S)  # [B,E] fraction of tokens per expert, 1 when uniform
    P = (scores / scores.sum(-1, keepdim=True)).mean(1)  # [B,E] mean normalised affinity
    return alpha * (f * P).sum(-1).mean()


# -------------------------------------------------------------------------- transformer


class Block(nn.Module):
    """Pre-norm residual block: MLA attention, then a dense or MoE feed-forward."""

    def __init__(self, layer_id: int, c: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(c.dim, eps=c.norm_eps)
        self.attn = MLA(layer_id, c)
        self.ffn_norm = RMSNorm(c.dim, eps=c.norm_eps)
        if layer_id < c.n_dense_layers:
            self.ffn: nn.Module = MLP(c.dim, c.inter_dim)
        elif c.dense_ffn:  # same active parameters as shared + activated routed experts
            self.ffn = MLP(c.dim, (c.n_shared_experts + c.n_activated_experts) * c.moe_inter_dim)
        else:
            self.ffn = MoE(c)
        self.is_moe = isinstance(self.ffn, MoE)

    def forward(
        self,
        x: Tensor,
        rope: tuple[Tensor, Tensor],
        positions: Tensor,
        cache: KVCache | None,
        impl: AttnImpl,
        index_loss: bool,
        forced: Tensor | None,
    ) -> tuple[Tensor, Tensor | None, tuple[Tensor, Tensor] | None]:
        """Returns (x [B,S,D], indexer KL or None, (expert indices, affinities) or None)."""
        a, kl = self.attn(self.attn_norm(x), rope, positions, cache, impl, index_loss)
        x = x + a
        if self.is_moe:
            f, indices, scores = self.ffn(self.ffn_norm(x), forced)
            return x + f, kl, (indices, scores)
        return x + self.ffn(self.ffn_norm(x)), kl, None


class Transformer(nn.Module):
    """The policy: embedding, blocks, final norm, untied output head."""

    def __init__(self, config: ModelConfig | None = None, *, seed: int = 0, device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.config = c = replace(config) if config is not None else ModelConfig()  # owned: see set_dense_attention
        with torch.device("meta"):  # no global-RNG draws; reset_parameters fills everything
            self.embed = nn.Embedding(c.vocab_size, c.dim)
            self.layers = nn.ModuleList(Block(i, c) for i in range(c.n_layers))
            self.norm = RMSNorm(c.dim, eps=c.norm_eps)
            self.head = nn.Linear(c.dim, c.vocab_size, bias=False)
        self.to_empty(device=device)
        self.reset_parameters(seed)

    @property
    def n_moe_layers(self) -> int:
        """Number of MoE layers (the leading axis of routing tensors)."""
        return sum(block.is_moe for block in self.layers)

    @torch.no_grad()
    def reset_parameters(self, seed: int) -> None:
        """Initialise every weight from a local generator (never the global RNG).

        N(0, 0.02) for matrices, output projections scaled by 1/sqrt(2 * n_layers) (GPT-2 style),
        norms at 1, biases and router biases at 0.
        """
        g = torch.Generator(device=self.embed.weight.device).manual_seed(seed)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.dim() == 1:
                p.fill_(1.0)
            else:
                std = 0.02 / math.sqrt(2 * self.config.n_layers) if name.endswith(("wo.weight", "w2.weight")) else 0.02
                nn.init.normal_(p, 0.0, std, generator=g)
        for name, b in self.named_buffers():
            if name.endswith("gate.bias"):
                b.zero_()

    def set_dense_attention(self, dense: bool) -> None:
        """Switch every layer between dense attention and DSA (the stage change of §2.5).

        The config object is shared by all layers, so one assignment switches them all, and a
        checkpoint saved afterwards records the current mode.
        """
        self.config.dense_attention = dense

    def indexer_parameters(self) -> list[nn.Parameter]:
        """The lightning indexers' parameters (the only ones trained in the dense warm-up)."""
        return [p for block in self.layers for p in block.attn.indexer.parameters()]

    def num_params(self, active: bool = False) -> int:
        """Total parameters, or the parameters one token uses (routed experts: K of E)."""
        total = sum(p.numel() for p in self.parameters())
        if not active:
            return total
        c = self.config
        for block in self.layers:
            if block.is_moe:
                per_expert = sum(p.numel() for p in block.ffn.experts[0].parameters())
                total -= per_expert * (c.n_routed_experts - c.n_activated_experts)
        return total

    def new_cache(self, batch_size: int, capacity: int = 256) -> KVCache:
        """An empty cache matching this model's config, device and dtype."""
        w = self.embed.weight
        return KVCache(self.config, batch_size, device=w.device, dtype=w.dtype, capacity=capacity)

    @torch.no_grad()
    def update_router_bias(self, expert_load: Tensor, speed: float) -> None:
        """Apply the bias update to every MoE layer; call once per optimizer step.

        Args:
            expert_load: [n_moe, E] tokens per expert over the step's batch
                (``ModelOutput.expert_load``, summed over micro-batches).
            speed: the bias update speed gamma (V3: 0.001).
        """
        gates = [block.ffn.gate for block in self.layers if block.is_moe]
        for gate, load in zip(gates, expert_load, strict=True):
            gate.update_bias(load, speed)

    def forward(
        self,
        tokens: Tensor,
        *,
        positions: Tensor | None = None,
        cache: KVCache | None = None,
        forced_routing: Tensor | None = None,
        attn_impl: AttnImpl = "auto",
        index_loss: bool = False,
        logits_at: Tensor | None = None,
    ) -> ModelOutput:
        """Run the model.

        Args:
            tokens: [B, S] token ids.
            positions: [B, S] absolute positions; default arange(S) without a cache and
                ``cache.lengths + arange(S)`` with one.
            cache: a ``KVCache``; the new tokens' entries are written into it (lengths untouched).
            forced_routing: [n_moe, B, S, K] expert indices to use instead of the router's top-k
                (Keep Routing). Gate weights are recomputed from the current router at those
                indices. Positions whose outputs are unused may carry any valid index.
            attn_impl: ``"mha"`` | ``"mqa"`` | ``"gather"`` (see module docstring), each run as
                written. ``"auto"`` uses mha for training and prefill (DSA over more than
                ``MASKED_PREFILL_MAX_KEYS`` keys gathers instead), gather for sparse and mqa
                for dense decode, skips the top-k when k covers every key, and runs a one-token
                cached call without grad (a decode step) as ``kernel.decode_step``.
            index_loss: also compute the indexer KL (training: warm-up in dense mode, selected
                set in sparse mode).
            logits_at: [B] index along S per row; return logits only there ([B, 1, V]), which
                saves the vocabulary projection over a long prefill.

        Returns:
            A ``ModelOutput``.
        """
        B, S = tokens.shape
        c = self.config
        if positions is None:
            positions = torch.arange(S, device=tokens.device).expand(B, S)
            if cache is not None:
                positions = positions + cache.lengths[:, None]
        if (
            cache is not None
            and S == 1
            and attn_impl == "auto"
            and forced_routing is None
            and not index_loss
            and not torch.is_grad_enabled()
        ):
            return kernel.decode_step(self, tokens, positions, cache)  # generation's hot loop
        if cache is not None:
            cache.reserve(int(positions.max()) + 1)
        h = self.embed(tokens)  # [B,S,D]
        rope = rope_cos_sin(positions, c.qk_rope_head_dim, c.rope_theta, h.dtype)
        routing, loads, kls = [], [], []
        bal = h.new_zeros(())
        for block in self.layers:
            forced = forced_routing[len(routing)] if forced_routing is not None and block.is_moe else None
            h, kl, route = block(h, rope, positions, cache, attn_impl, index_loss, forced)
            if kl is not None:
                kls.append(kl)
            if route is not None:
                indices, scores = route
                routing.append(indices)
                loads.append(torch.bincount(indices.flatten(), minlength=c.n_routed_experts))
                if self.training:  # a training signal only; generation skips it
                    bal = bal + balance_loss(scores, indices, c.balance_alpha)
        h = self.norm(h)
        if logits_at is not None:
            h = h[torch.arange(B, device=h.device), logits_at][:, None]  # [B,1,D]
        return ModelOutput(
            logits=self.head(h).float(),
            routing=torch.stack(routing) if routing else None,
            expert_load=torch.stack(loads) if loads else None,
            balance_loss=bal,
            index_loss=torch.stack(kls).mean() if index_loss else None,
        )
