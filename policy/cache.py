"""The generation cache: per layer, the MLA latent with its RoPE key and the DSA indexer key, per row.

Split from :mod:`toolgym.policy.model` (which re-exports :class:`KVCache`): the model reads and
writes it, generation (:mod:`toolgym.policy.generate`) moves rows and prefixes within it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from toolgym.policy.model import ModelConfig


class KVCache:
    """Per-layer caches for a batch of rows: MLA latent with its RoPE key, and the indexer key.

    Each layer keeps ``kv`` [B, cap, kv_lora_rank + qk_rope_head_dim] (the latent and the rope
    key side by side, FlashMLA's 576-wide entry, so one gather or one matmul reads both) and, for
    sparse models, ``ik`` [B, cap, index_head_dim]. Row b's token at absolute position p lives in
    slot p, so rows of different lengths share one tensor without left padding; a forward writes
    its tokens at their positions and a query at position p attends to slots 0..p of its row.
    Slots past a row's length may hold junk from padded appends; no real query can see them and
    later writes overwrite them. ``lengths`` is bookkeeping for the caller (generation); the model
    never changes it.
    """

    def __init__(
        self,
        config: ModelConfig,
        batch_size: int,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        capacity: int = 256,
    ) -> None:
        self.config, self.batch_size, self.capacity = config, batch_size, 0
        self.device, self.dtype = torch.device(device), dtype
        self.with_index = not config.dense_attention
        self.kv: list[Tensor] = []  # per layer [B, cap, C + r]
        self.ik: list[Tensor] = []  # per layer [B, cap, d_I] (sparse models only)
        self.lengths = torch.zeros(batch_size, dtype=torch.long, device=self.device)
        self.reserve(capacity)

    def _widths(self) -> list[int]:
        c = self.config
        return [c.kv_lora_rank + c.qk_rope_head_dim] + ([c.index_head_dim] if self.with_index else [])

    def reserve(self, n: int) -> None:
        """Grow every tensor to hold at least n slots per row (doubling, so appends amortise)."""
        if n <= self.capacity:
            return
        new_cap = max(n, 2 * self.capacity)
        for group, width in zip((self.kv, self.ik), self._widths(), strict=False):
            for i in range(self.config.n_layers):
                t = torch.zeros(self.batch_size, new_cap, width, device=self.device, dtype=self.dtype)
                if i < len(group):
                    t[:, : self.capacity] = group[i]
                    group[i] = t
                else:
                    group.append(t)
        self.capacity = new_cap

    def write(self, layer: int, positions: Tensor, kv: Tensor, ik: Tensor | None) -> None:
        """Store one layer's new entries [B, S, *] at their positions [B, S]."""
        for store, val in ((self.kv, kv), (self.ik, ik)):
            if val is not None and store:
                store[layer].scatter_(1, positions[..., None].expand(-1, -1, val.size(-1)), val)

    def select_rows(self, rows: Tensor) -> KVCache:
        """A new cache holding copies of the given rows (e.g. one prompt fanned out to a group)."""
        return self.take_rows(rows, self.capacity)

    def take_rows(self, rows: Tensor, upto: int) -> KVCache:
        """A new cache holding copies of slots [0, upto) of the given rows [R] (and their lengths)."""
        new = KVCache(self.config, len(rows), device=self.device, dtype=self.dtype, capacity=0)
        new.kv, new.ik = [t[rows, :upto] for t in self.kv], [t[rows, :upto] for t in self.ik]
        new.capacity, new.lengths = min(upto, self.capacity), self.lengths[rows].clone()
        return new

    def put_rows(self, rows: Tensor, sub: KVCache, upto: int) -> None:
        """Write slots [0, upto) of ``sub`` (from ``take_rows(rows, …)``) back into the rows [R]."""
        self.reserve(upto)
        for mine, theirs in zip(self.kv + self.ik, sub.kv + sub.ik, strict=True):
            mine[rows, :upto] = theirs[:, :upto]

    def copy_prefixes(self, moves: Sequence[tuple[int, int, int]]) -> None:
        """For each (dst, src, n): row dst's slots [0, n) become row src's (prefix sharing).

        Every source is read before any destination is written, so moves may chain or swap.
        """
        for group in (self.kv, self.ik):
            for t in group:
                parts = [t[src, :n].clone() for _, src, n in moves]
                for (dst, _, n), part in zip(moves, parts, strict=True):
                    t[dst, :n] = part

    def bytes_per_token(self) -> int:
        """Bytes cached per token over all layers (latent + rope key + indexer key)."""
        return sum(self._widths()) * self.config.n_layers * torch.finfo(self.dtype).bits // 8
