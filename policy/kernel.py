"""Fast paths behind plain functions; each has a reference in ``model.py`` and an equivalence test.

* ``fused_attention`` is PyTorch's ``scaled_dot_product_attention`` (a fused flash-style kernel
  on CPU as well; with an arbitrary mask it falls back to PyTorch's own math path), used for the
  expanded-MHA attention in training and prefill. Its reference is ``model.attention``. When the
  indexer's KL needs the probabilities, the model recomputes them outside autograd, so the
  backward pass never stores a [B, H, S, T] tensor for them.
* ``decode_step`` runs one new token per row through the whole model against a ``KVCache``: the
  step generation repeats for every sampled token. Its reference is the module path of
  ``Transformer.forward`` (absorbed ``"mqa"`` attention for dense models, ``"gather"`` for DSA),
  which ``forward`` still runs whenever an ``attn_impl`` is named. At this model size a decode
  step is a few dozen small matmuls, so eager PyTorch spends most of the step dispatching ops
  (~770 aten calls per step for the dense model and ~1,090 with the indexer on the module path)
  rather than computing. The kernel computes the same function in ~300 / ~410 calls, with the
  weights rearranged once per weight version (``decode_pack``):

  - every projection that reads the same input is one matmul: the attention input feeds the
    query latent, the KV latent, the rope key, the indexer key and the indexer head weights;
    the query latent feeds the queries (with W_UK absorbed: latent-space queries come straight
    out of the matmul) and the indexer queries; the FFN input feeds the router and the shared
    expert (or the dense SwiGLU, whose w1 and w3 are one matrix);
  - RMSNorm weights (and sqrt(width)), the softmax scale and the indexer's weight scale are
    folded into the matrices that consume them, so a norm is a vector norm, a ``hypot`` with
    the epsilon and one division of the matmul's output;
  - RoPE is a rotation matrix per row, built once per step (positions are the same in every
    layer) and applied with one ``bmm`` per tensor;
  - the causal mask of ragged rows is one additive bias per step, fused into ``baddbmm``;
  - routed experts: a few (token, slot) picks each run their expert's weights in place; once
    the picks cover the experts anyway, every expert runs on every token in one batched matmul
    and unchosen outputs get weight 0;
  - the body runs under ``torch.inference_mode``, which dispatches each op faster than no_grad.

  DSA decode does no O(L) work beyond the indexer: scores over the key cache (two ``bmm``),
  top-k, a gather of only the k selected latent entries, attention over those. When the context
  is no longer than k every token is selected and DSA equals dense attention, so the dense form
  runs (the indexer key is still cached for later steps). Both variants get every one of these
  changes; only the attention switch differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from toolgym.policy.model import Gate, KVCache, ModelOutput, Transformer


def fused_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    """Softmax attention without materialised probabilities.

    Args:
        q: [B, H, S, d] queries.
        k: [B, H, T, d] keys.
        v: [B, H, T, dv] values.
        mask: bool, broadcastable to [B, H, S, T], True where a key may be attended; or None.
            Every query must be allowed at least one key.
        scale: the softmax scale.

    Returns:
        [B, H, S, dv], equal to ``model.attention(q, k, v, mask, scale)`` up to rounding.
    """
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


# ------------------------------------------------------------------------------- decode


@dataclass
class _LayerPack:
    """One block's weights arranged for a decode step (shapes are [in, out] for ``mm``)."""

    attn_in: Tensor  # [D, Lq + C + r (+ d_I + H_I)] query latent, KV latent, rope key (, indexer key, head weights)
    q_in: Tensor  # [Lq, H*(C + r) (+ H_I*d_I)] per head W_UK-absorbed and rope queries (, indexer queries)
    kv_norm: Tensor  # [C] the KV latent's RMSNorm weight times sqrt(C) (the cached latent is normalised)
    w_uv: Tensor  # [H, C, dv] applied to the attended latent
    wo: Tensor  # [H*dv, D]
    k_norm: tuple[Tensor, Tensor, float] | None  # indexer LayerNorm (weight, bias, eps)
    ffn_in: Tensor  # [D, (E +) 2*inner] router logits (MoE) and the shared/dense SwiGLU's w1|w3
    ffn_out: Tensor  # [inner, D]
    gate: Gate | None  # the router (its ``route`` picks experts exactly as the reference does)
    experts_in: Tensor | None  # [E, D, 2*I] routed experts' w1|w3
    experts_out: Tensor | None  # [E, I, D] routed experts' w2


@dataclass
class DecodePack:
    """The model's weights rearranged for ``decode_step``, valid for one weight version."""

    key: tuple[object, ...]
    stores: list[dict[str, Tensor | None]]  # the modules' parameter/buffer dicts the key covers
    layers: list[_LayerPack]
    head: Tensor  # [D, V], final norm folded
    rope_il: Tensor  # [r, r*r] maps [cos|sin] to the flattened interleaved rotation (MLA)
    rope_ix: Tensor  # [r, dI*dI] maps [cos|sin] to the indexer's half-split rotation
    rope_ix_base: Tensor  # [dI*dI] identity on the indexer dims RoPE leaves alone
    load_offset: Tensor  # [n_moe, 1, 1, 1] layer * E, so one bincount counts every layer
    eps_dim: Tensor  # sqrt(dim * norm_eps), and the same for the query and KV latents (``_root_ss``)
    eps_q: Tensor
    eps_kv: Tensor


def _pack_key(dense: bool, stores: list[dict[str, Tensor | None]]) -> tuple[object, ...]:
    """Identity of the current weights: any optimizer step, load or dtype change alters it.

    In-place updates bump a tensor's version counter; a replaced tensor changes identity or
    storage. Writes through ``.data`` bypass the counter and are not seen, nor is a submodule
    swapped for another after the first decode step. ``stores`` are the modules' own parameter
    and buffer dicts: walking ``model.parameters()`` costs ~1 ms, a seventh of a decode step.
    """
    return dense, [(id(t), t.data_ptr(), t._version) for d in stores for t in d.values() if t is not None]


def _rotation_maps(r: int, d_index: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Constant 0/+-1 maps from per-row [cos | sin] (r numbers) to rotation matrices.

    ``y = x @ R`` rotates a row vector x. MLA pairs dims (2i, 2i+1); the indexer pairs i with
    i + r/2 on its first r dims and leaves the rest alone (``model.apply_rope``). The matmul
    that applies a map picks exactly one entry per matrix cell, so R is exact.
    """
    h = r // 2
    il = torch.zeros(r, r, r, dtype=dtype)  # [source (cos_i | sin_i), row, col]
    ix = torch.zeros(r, d_index, d_index, dtype=dtype)
    for i in range(h):
        a, b = 2 * i, 2 * i + 1
        il[i, a, a] = il[i, b, b] = 1.0
        il[h + i, a, b], il[h + i, b, a] = 1.0, -1.0
        a, b = i, i + h
        ix[i, a, a] = ix[i, b, b] = 1.0
        ix[h + i, a, b], ix[h + i, b, a] = 1.0, -1.0
    base = torch.zeros(d_index, d_index, dtype=dtype)
    base[range(r, d_index), range(r, d_index)] = 1.0
    return il.flatten(1).to(device), ix.flatten(1).to(device), base.flatten().to(device)


def _root_ss(x: Tensor, width_eps: Tensor) -> Tensor:
    """sqrt(sum(x^2) + n * eps) over the last axis (n = width, ``width_eps`` = sqrt(n * eps)), [..., 1].

    That is sqrt(n) * rms(x): dividing by it normalises x up to the sqrt(n) and the norm's
    weight that the next matrix carries (``decode_pack``). Two ops (a norm and a ``hypot``)
    where ``x.pow(2).mean()`` + eps + rsqrt dispatches six.
    """
    return torch.hypot(torch.linalg.vector_norm(x, dim=-1, keepdim=True), width_eps)


@torch.no_grad()
def decode_pack(model: Transformer) -> DecodePack:
    """The model's decode weights, rebuilt only when the weights (or the attention switch) change.

    The pack is a rearranged copy of the weights (about the model's own size), kept on the model
    as a plain attribute; the first decode step after a change pays for rebuilding it.
    """
    pack: DecodePack | None = model.__dict__.get("_decode_pack")
    if pack is not None and pack.key == _pack_key(model.config.dense_attention, pack.stores):
        return pack
    stores = [d for m in model.modules() for d in (m._parameters, m._buffers) if d]
    key = _pack_key(model.config.dense_attention, stores)
    c = model.config
    H, dn, dv, r, C = c.n_heads, c.qk_nope_head_dim, c.v_head_dim, c.qk_rope_head_dim, c.kv_lora_rank
    sparse = not c.dense_attention
    root_d = c.dim**0.5  # _root_ss leaves out sqrt(width); the consuming matrix carries it
    layers = []
    for block in model.layers:
        a, ix = block.attn, block.attn.indexer
        rows = [a.wq_a.weight, a.wkv_a.weight]  # [out, D] each
        if sparse:
            rows += [ix.wk.weight, ix.weights_proj.weight * ix.scale]
        attn_in = torch.cat(rows) * (block.attn_norm.weight * root_d)
        wq = a.wq_b.weight.view(H, dn + r, -1)  # [H, dn+r, Lq]
        wkv_b = a.wkv_b.weight.view(H, dn + dv, C)
        absorbed = torch.einsum("hdl,hdc->hcl", wq[:, :dn], wkv_b[:, :dn])  # W_UK^T W_q per head
        q_rows = [(torch.cat([absorbed, wq[:, dn:]], 1) * a.softmax_scale).flatten(0, 1)]  # [H*(C+r), Lq]
        if sparse:
            q_rows.append(ix.wq_b.weight)
        q_in = torch.cat(q_rows) * (a.q_norm.weight * c.q_lora_rank**0.5)
        ffn, g = block.ffn, block.ffn_norm.weight * root_d
        experts_in: Tensor | None = None
        experts_out: Tensor | None = None
        gate: Gate | None = None
        if block.is_moe:
            shared = ffn.shared_experts
            ffn_in = torch.cat([ffn.gate.weight, shared.w1.weight, shared.w3.weight]) * g
            ffn_out = shared.w2.weight
            experts_in = torch.stack([torch.cat([e.w1.weight, e.w3.weight]) * g for e in ffn.experts])
            experts_out = torch.stack([e.w2.weight.t() for e in ffn.experts])
            gate = ffn.gate
        else:
            ffn_in, ffn_out = torch.cat([ffn.w1.weight, ffn.w3.weight]) * g, ffn.w2.weight
        layers.append(
            _LayerPack(
                attn_in=attn_in.t().contiguous(),
                q_in=q_in.t().contiguous(),
                kv_norm=a.kv_norm.weight * C**0.5,
                w_uv=wkv_b[:, dn:].transpose(1, 2).contiguous(),
                wo=a.wo.weight.t().contiguous(),
                k_norm=(ix.k_norm.weight.detach(), ix.k_norm.bias.detach(), ix.k_norm.eps) if sparse else None,
                ffn_in=ffn_in.t().contiguous(),
                ffn_out=ffn_out.t().contiguous(),
                gate=gate,
                experts_in=None if experts_in is None else experts_in.transpose(1, 2).contiguous(),
                experts_out=None if experts_out is None else experts_out.contiguous(),
            )
        )
    w = model.embed.weight
    il, ix_map, ix_base = _rotation_maps(r, c.index_head_dim, w.dtype, w.device)
    pack = DecodePack(
        key=key,
        stores=stores,
        layers=layers,
        head=(model.head.weight * (model.norm.weight * root_d)).t().contiguous(),
        rope_il=il,
        rope_ix=ix_map,
        rope_ix_base=ix_base,
        load_offset=torch.arange(model.n_moe_layers, device=w.device).view(-1, 1, 1, 1) * c.n_routed_experts,
        **{
            name: torch.tensor((n * c.norm_eps) ** 0.5, dtype=w.dtype, device=w.device)
            for name, n in (("eps_dim", c.dim), ("eps_q", c.q_lora_rank), ("eps_kv", C))
        },
    )
    model.__dict__["_decode_pack"] = pack  # a plain attribute: never a parameter or buffer
    return pack


@dataclass
class _Step:
    """What every layer of one decode step shares."""

    slot: tuple[Tensor, Tensor]  # (rows, positions): where each row's new cache entry goes
    rot: Tensor  # [B, r, r] MLA rotation per row
    irot: Tensor | None  # [B, dI, dI] indexer rotation per row
    T: int  # keys in use: max position + 1
    bias: Tensor | None  # [B, 1, T] 0 / -inf causal bias when rows have different lengths
    select: bool  # DSA selects top-k (False: dense model, or T <= k so DSA equals dense)
    void: bool  # some row has fewer than k causal keys (its surplus picks must be masked)
    row_offset: Tensor | None  # [B, 1] row * capacity, to gather from the flattened cache
    rows: Tensor | None  # [B] the cache rows the step's rows are (None: all rows, in order)


def _attention(
    h: Tensor, lp: _LayerPack, layer: int, cache: KVCache, st: _Step, pk: DecodePack, model: Transformer
) -> Tensor:
    """Residual plus MLA(attn_norm(h)) for one token per row [B, D], writing its cache entries."""
    from toolgym.policy.model import select_topk

    c = model.config
    B = h.size(0)
    H, r, C, Lq, dI = c.n_heads, c.qk_rope_head_dim, c.kv_lora_rank, c.q_lora_rank, c.index_head_dim
    a = torch.mm(h, lp.attn_in) / _root_ss(h, pk.eps_dim)
    if lp.k_norm is None:
        q_a, kv, k_pe = a.split([Lq, C, r], -1)
    else:
        q_a, kv, k_pe, ik, iw = a.split([Lq, C, r, dI, c.index_n_heads], -1)
    q = torch.mm(q_a, lp.q_in) / _root_ss(q_a, pk.eps_q)
    q_lat = q[:, : H * (C + r)].view(B, H, C + r)  # [B,H,C+r] latent-space queries, scale folded in
    q_lat[..., C:] = torch.bmm(q_lat[..., C:], st.rot)  # RoPE on the rope part, in place
    entry = torch.cat([kv / _root_ss(kv, pk.eps_kv) * lp.kv_norm, torch.bmm(k_pe[:, None], st.rot)[:, 0]], -1)
    cache.kv[layer].index_put_(st.slot, entry)  # [B, C+r] at each row's position
    kv_all = cache.kv[layer]  # [B, cap, C+r]
    if lp.k_norm is not None:  # DSA: cache this token's indexer key whether or not we select
        assert st.irot is not None
        wn, bn, eps = lp.k_norm
        cache.ik[layer].index_put_(st.slot, torch.bmm(F.layer_norm(ik, (dI,), wn, bn, eps)[:, None], st.irot)[:, 0])
    if st.select:
        assert st.irot is not None
        iq = torch.bmm(q[:, H * (C + r) :].view(B, c.index_n_heads, dI), st.irot)  # [B,HI,dI]
        ik_all = cache.ik[layer][:, : st.T] if st.rows is None else cache.ik[layer][st.rows, : st.T]
        relu = torch.bmm(iq, ik_all.transpose(1, 2)).relu_()  # [B,HI,T]
        w = iw[:, None]  # [B,1,HI] head weights (scale folded in)
        logits = torch.bmm(w, relu) if st.bias is None else torch.baddbmm(st.bias, w, relu)  # [B,1,T]
        vals, idx = select_topk(logits[:, 0], c.index_topk)  # [B,k]
        flat = idx if st.row_offset is None else idx + st.row_offset
        keys = kv_all.view(-1, C + r).index_select(0, flat.flatten()).view(B, -1, C + r)  # [B,k,C+r]
        bias = torch.zeros_like(vals).masked_fill_(vals.isneginf(), float("-inf"))[:, None] if st.void else None
    else:
        keys = kv_all[:, : st.T] if st.rows is None else kv_all[st.rows, : st.T]  # [B,T,C+r]
        bias = st.bias
    kt = keys.transpose(1, 2)
    scores = torch.bmm(q_lat, kt) if bias is None else torch.baddbmm(bias, q_lat, kt)  # [B,H,keys]
    lat = torch.bmm(scores.softmax(-1), keys[..., :C])  # [B,H,C] mixture of latents per head
    o = torch.bmm(lat.transpose(0, 1), lp.w_uv).transpose(0, 1).reshape(B, -1)  # W_UV: [B, H*dv]
    return torch.addmm(h, o, lp.wo)


#: Run every routed expert on every token once the tokens' picks (N * K) reach this multiple of
#: the expert count: every expert's weights are read anyway, and one batched matmul beats a
#: loop over (token, slot) pairs.
ALL_EXPERTS_PICKS = 1.0


#: From this many (token, expert) picks on, one grouped matmul per projection replaces the loop
#: over picks (torch >= 2.9 on float32/bf16/fp16: ``F.grouped_mm``; a 16-row decode step of the
#: default MoE spent half its time in the loop's 2 x 64 small matmuls per layer).
GROUPED_MIN_PICKS = 8
_GROUPED_MM = getattr(F, "grouped_mm", None)
_GROUPED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _grouped_experts(n: Tensor, w_in: Tensor, w_out: Tensor, idx: Tensor, weights: Tensor) -> Tensor:
    """Sum over each token's picked experts of weight * SwiGLU expert(n), by grouped matmuls.

    Args:
        n: [N, D] normalised tokens.
        w_in: [E, D, 2I] experts' gate and up projections.
        w_out: [E, I, D] experts' down projections.
        idx: [N, K] picked experts.
        weights: [N, K] their gate values.

    Returns:
        [N, D].
    """
    assert _GROUPED_MM is not None
    K = idx.size(1)
    flat = idx.flatten()
    order = flat.argsort(stable=True)  # picks grouped by expert, as grouped_mm wants them
    token = order // K
    offs = torch.bincount(flat, minlength=w_in.size(0)).cumsum(0).to(torch.int32)  # group ends
    g, v = _GROUPED_MM(n.index_select(0, token), w_in, offs=offs).chunk(2, -1)  # [NK, I] each
    y = _GROUPED_MM(F.silu(g) * v, w_out, offs=offs)  # [NK, D]
    return torch.zeros_like(n).index_add_(0, token, y * weights.flatten()[order][:, None])


def _ffn(h: Tensor, lp: _LayerPack, eps: Tensor) -> tuple[Tensor, Tensor | None]:
    """Residual plus FFN(ffn_norm(h)) for [B, D]; also the chosen experts [B, K] of a MoE layer."""
    if lp.gate is None:
        g, v = (torch.mm(h, lp.ffn_in) / _root_ss(h, eps)).chunk(2, -1)
        return torch.addmm(h, F.silu(g) * v, lp.ffn_out), None
    assert lp.experts_in is not None and lp.experts_out is not None
    n = h / _root_ss(h, eps)  # normalised up to the weight and sqrt(D) the matrices carry
    a = torch.mm(n, lp.ffn_in)
    E, K = lp.experts_in.size(0), lp.gate.topk
    logits, u = a.split([E, a.size(-1) - E], -1)
    weights, idx = lp.gate.route(logits.sigmoid())  # [N,K] each, the reference rule
    g, v = u.chunk(2, -1)
    h = torch.addmm(h, F.silu(g) * v, lp.ffn_out)  # + shared expert
    N, D = n.shape
    if N * K >= ALL_EXPERTS_PICKS * E:  # unchosen experts get weight 0
        u = torch.matmul(n, lp.experts_in).view(E, N, 2, -1)  # [E,N,2,I]
        y = torch.bmm(F.silu(u[:, :, 0]) * u[:, :, 1], lp.experts_out)  # [E,N,D]
        coef = torch.zeros(N, E, dtype=n.dtype, device=n.device).scatter_(1, idx, weights)  # [N,E]
        return h + torch.bmm(coef[:, None], y.transpose(0, 1))[:, 0], idx
    if N * K >= GROUPED_MIN_PICKS and _GROUPED_MM is not None and n.dtype in _GROUPED_DTYPES:
        return h + _grouped_experts(n, lp.experts_in, lp.experts_out, idx, weights), idx
    # A few picks: each (token, slot) reads its expert's weights in place. Gathering copies of
    # them for one batched matmul costs more (fresh 0.5 MB buffers fault in page by page).
    outs = []
    for t, experts in enumerate(idx.tolist()):
        x = n[t : t + 1]
        for e in experts:
            g, v = torch.mm(x, lp.experts_in[e]).chunk(2, -1)
            outs.append(torch.mm(F.silu(g) * v, lp.experts_out[e]))  # [1,D]
    return h + torch.bmm(weights[:, None], torch.cat(outs).view(N, K, D))[:, 0], idx


@torch.no_grad()
def decode_step(
    model: Transformer, tokens: Tensor, positions: Tensor, cache: KVCache, rows: Tensor | None = None
) -> ModelOutput:
    """One token per row through the model, writing its cache entries (lengths untouched).

    Equal, up to rounding, to ``model(tokens, positions=positions, cache=cache, attn_impl=...)``
    on the module path ("mqa" for dense models, "gather" for DSA), including the routing.

    The step runs under ``torch.inference_mode`` (~10% fewer microseconds per op than
    ``no_grad``). Nothing it creates outlives it as an inference tensor: the cache grows before,
    its writes land in the cache's own tensors, and the outputs are copied on the way out, so
    callers may modify them or feed the routing to a training forward.

    Args:
        model: the policy (its current dense/sparse switch is used).
        tokens: [B, 1] token ids.
        positions: [B, 1] absolute positions (rows may differ).
        cache: the ``KVCache`` to read and write.
        rows: [B] which cache rows the B tokens belong to (default: rows 0..B-1 of a B-row
            cache). A subset lets generation skip rows that have stopped or sit idle: they are
            neither computed nor written.

    Returns:
        A ``ModelOutput`` with logits [B, 1, V], routing [n_moe, B, 1, K], expert load, a zero
        balance loss (nothing trains under no-grad) and no index loss.
    """
    from toolgym.policy.model import ModelOutput

    pk = decode_pack(model)
    plist = positions.reshape(-1).tolist()
    cache.reserve(max(plist) + 1)
    with torch.inference_mode():
        logits, routing, load = _decode(model, pk, tokens.reshape(-1), positions.reshape(-1), plist, cache, rows)
    w = model.embed.weight
    return ModelOutput(
        logits=logits.clone(),
        routing=None if routing is None else routing.clone(),
        expert_load=None if load is None else load.clone(),
        balance_loss=torch.zeros((), dtype=w.dtype, device=w.device),
        index_loss=None,
    )


def _decode(
    model: Transformer,
    pk: DecodePack,
    tokens: Tensor,
    pos: Tensor,
    plist: list[int],
    cache: KVCache,
    rows: Tensor | None = None,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """The body of ``decode_step``: (logits [B,1,V], routing [n_moe,B,1,K] | None, load | None)."""
    from toolgym.policy.model import rope_cos_sin

    c = model.config
    B = len(plist)
    lo, T = min(plist), max(plist) + 1
    h = model.embed.weight.index_select(0, tokens)  # [B,D]
    slot_rows = torch.arange(B, device=h.device) if rows is None else rows
    cos, sin = rope_cos_sin(pos[:, None], c.qk_rope_head_dim, c.rope_theta, h.dtype)  # [B,1,r/2] each
    cs = torch.cat([cos, sin], -1)[:, 0]  # [B,r]
    r, dI = c.qk_rope_head_dim, c.index_head_dim
    sparse = not c.dense_attention
    select = sparse and T > c.index_topk
    bias = None
    if lo + 1 < T:  # ragged rows: keys past a row's position are masked in every layer
        future = torch.arange(T, device=h.device) > pos[:, None]  # [B,T]
        bias = torch.zeros(B, 1, T, dtype=h.dtype, device=h.device).masked_fill_(future[:, None], float("-inf"))
    st = _Step(
        slot=(slot_rows, pos),
        rot=torch.mm(cs, pk.rope_il).view(B, r, r),
        irot=torch.addmm(pk.rope_ix_base, cs, pk.rope_ix).view(B, dI, dI) if sparse else None,
        T=T,
        bias=bias,
        select=select,
        void=select and lo + 1 < c.index_topk,
        row_offset=None if B == 1 and rows is None else slot_rows[:, None] * cache.capacity,
        rows=rows,
    )
    routes = []
    for layer, lp in enumerate(pk.layers):
        h = _attention(h, lp, layer, cache, st, pk, model)
        h, idx = _ffn(h, lp, pk.eps_dim)
        if idx is not None:
            routes.append(idx)
    logits = (torch.mm(h, pk.head) / _root_ss(h, pk.eps_dim)).float()[:, None]  # [B,1,V]
    if not routes:
        return logits, None, None
    routing = torch.stack(routes)[:, :, None]  # [n_moe,B,1,K]
    counts = torch.bincount((routing + pk.load_offset).flatten(), minlength=len(routes) * c.n_routed_experts)
    return logits, routing, counts.view(len(routes), -1)
