"""Batched, KV-cached generation for tool-use episodes, returning what RL needs per token.

A ``Session`` owns one ``KVCache`` (MLA latent + rope key + indexer key per token and layer) for
B rows. An episode's context ``obs0 + act1 + obs1 + ...`` is built by alternating:

* ``session.append(obs_ids)`` — feed environment tokens (the prompt, then each observation) to
  each row, writing only their cache entries; the context before them is never recomputed;
* ``session.generate(params, generator)`` — sample each active row's action until it samples
  ``<|end|>`` (kept as the action's last token) or hits the token budget.

Every sampled token is fed back before ``generate`` returns (the stop token included), so the
cache always holds the whole context, the next ``append`` only processes new text, and each
sampled token's expert routing is known. Per sampled token a ``Turn`` carries: the id, its
log-probability under the distribution it was actually drawn from (temperature-scaled and
restricted to the top-p set), the top-p kept set (Keep Sampling Mask), and the expert indices
chosen for it in every MoE layer (Keep Routing). ``append`` returns the routing of environment
tokens too, so a trainer can force the routing of the entire sequence.

``token_logprobs`` is the one function both sampling and training use to turn logits into
log-probs, so the sampler's pi_old and the trainer's pi_theta are computed identically.

Rows may have different lengths: each row's token at position p lives in cache slot p, and
ragged appends are right-padded with junk that no real query can see (see ``KVCache``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from toolgym.errors import ConfigError
from toolgym.policy import kernel
from toolgym.policy.model import Transformer


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one action.

    Attributes:
        temperature: logits are divided by it; 0 means greedy.
        top_p: nucleus mass kept (1.0 keeps the whole vocabulary and records no mask).
        max_new_tokens: token budget of one action.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256

    def __post_init__(self) -> None:
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.max_new_tokens < 1:
            raise ConfigError(
                "SamplingParams need temperature >= 0, 0 < top_p <= 1 and max_new_tokens >= 1; "
                f"got {self.temperature}, {self.top_p}, {self.max_new_tokens}."
            )


@dataclass
class Turn:
    """One row's sampled action.

    Attributes:
        tokens: [n] sampled ids (ends with ``<|end|>`` when ``stopped``).
        logprobs: [n] log-prob of each token under the distribution it was sampled from.
        keep_mask: [n, V] bool top-p kept set per token, or None when top_p == 1 (all kept).
        routing: [n, n_moe, K] experts chosen for each token when it was fed, or None (no MoE).
        stopped: True if the row sampled the stop token, False if it hit the budget.
    """

    tokens: Tensor
    logprobs: Tensor
    keep_mask: Tensor | None
    routing: Tensor | None
    stopped: bool


def sampling_mask(logits: Tensor, temperature: float, top_p: float) -> Tensor | None:
    """The set of tokens sampling may draw: [N, V] bool, or None when it is the whole vocabulary.

    Top-p keeps, in descending probability order, every token whose preceding mass is below
    top_p (so the most likely token is always kept). Greedy keeps the argmax only.
    """
    if temperature == 0:
        return torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, logits.argmax(-1, keepdim=True), True)
    if top_p >= 1.0:
        return None
    probs, order = (logits / temperature).softmax(-1).sort(-1, descending=True)
    keep_sorted = probs.cumsum(-1) - probs < top_p  # mass strictly before each token
    return torch.zeros_like(keep_sorted).scatter_(-1, order, keep_sorted)


def token_logprobs(logits: Tensor, tokens: Tensor, temperature: float = 1.0, keep_mask: Tensor | None = None) -> Tensor:
    """Log-prob of tokens under softmax(logits / temperature) restricted to keep_mask.

    The trainer calls this with the recorded keep masks (Keep Sampling Mask) so that pi_theta
    and the sampler's pi_old live on the same truncated action space.

    Args:
        logits: [..., V].
        tokens: [...] ids.
        temperature: > 0 (greedy sampling is scored at temperature 1 on its one-token set).
        keep_mask: [..., V] bool or None (whole vocabulary).

    Returns:
        [...] log-probs.
    """
    scaled = logits / (temperature if temperature > 0 else 1.0)
    if keep_mask is not None:
        scaled = scaled.masked_fill(~keep_mask, float("-inf"))
    return scaled.log_softmax(-1).gather(-1, tokens[..., None]).squeeze(-1)


class Session:
    """A live batch of contexts with one cache; see the module docstring for the protocol."""

    def __init__(
        self, model: Transformer, batch_size: int, *, stop_ids: Sequence[int], pad_id: int = 0, capacity: int = 1024
    ) -> None:
        """Start B empty contexts.

        Args:
            model: the policy (its current dense/sparse switch is used).
            batch_size: number of rows (episodes) sharing the cache.
            stop_ids: token ids that end an action (``<|end|>``).
            pad_id: id used to fill ragged appends and finished rows (never seen by real tokens).
            capacity: initial cache slots per row (it grows by doubling).
        """
        self.model, self.stop_ids, self.pad_id = model, torch.tensor(list(stop_ids)), pad_id
        self.cache = model.new_cache(batch_size, capacity)
        self.last_logits: Tensor | None = None  # [B, V] logits after each row's last token
        self.batch_size = batch_size
        #: Wall-clock seconds spent in ``append`` (prefill of prompts and observations) and in
        #: ``generate`` (sampling and decode), for benchmarks that split where the time goes.
        self.seconds = {"append": 0.0, "generate": 0.0}

    @property
    def lengths(self) -> list[int]:
        """Tokens in each row's context."""
        return self.cache.lengths.tolist()

    def fork(self, rows: Sequence[int]) -> Session:
        """A new session whose rows copy the given rows (prefill a prompt once, sample G times)."""
        new = Session.__new__(Session)
        new.model, new.stop_ids, new.pad_id, new.batch_size = self.model, self.stop_ids, self.pad_id, len(rows)
        new.seconds = {"append": 0.0, "generate": 0.0}
        idx = torch.tensor(list(rows), dtype=torch.long)
        new.cache = self.cache.select_rows(idx)
        new.last_logits = None if self.last_logits is None else self.last_logits[idx].clone()
        return new

    @torch.no_grad()
    def append(self, tokens: Sequence[Sequence[int]]) -> list[Tensor | None]:
        """Feed environment tokens to each row (an empty sequence leaves a row untouched).

        Only the rows with tokens are computed, in groups of similar length (see
        :func:`length_groups`), so a short observation is not padded to a long prompt appended
        beside it. A group of fewer than all rows copies the slots in use out of the cache,
        runs, and writes them back (cheap next to the prefill).

        Returns:
            Per row, the routing [m, n_moe, K] of its m appended tokens (None without MoE or
            when nothing was appended).
        """
        if len(tokens) != self.batch_size:
            raise ConfigError(f"append needs one token list per row ({self.batch_size}), got {len(tokens)}.")
        result: list[Tensor | None] = [None] * self.batch_size
        start = time.perf_counter()
        for rows in length_groups([len(t) for t in tokens]):
            self._append_rows(rows, tokens, result)
        self.seconds["append"] += time.perf_counter() - start
        return result

    def _append_rows(self, rows: list[int], tokens: Sequence[Sequence[int]], result: list[Tensor | None]) -> None:
        """Append ``tokens[b]`` to each row b of ``rows`` in one forward; routing goes to ``result[b]``."""
        n = torch.tensor([len(tokens[b]) for b in rows], dtype=torch.long)
        M = int(n.max())
        batch = torch.full((len(rows), M), self.pad_id, dtype=torch.long)
        for i, b in enumerate(rows):
            batch[i, : n[i]] = torch.as_tensor(list(tokens[b]), dtype=torch.long)
        device = self.cache.device
        d_rows, whole = torch.tensor(rows, device=device), len(rows) == self.batch_size
        upto = int((self.cache.lengths[d_rows] + M).max())
        cache = self.cache if whole else self.cache.take_rows(d_rows, upto)
        positions = cache.lengths[:, None] + torch.arange(M, device=device)
        out = self.model(batch.to(device), positions=positions, cache=cache, logits_at=(n - 1).to(device))
        if not whole:
            self.cache.put_rows(d_rows, cache, upto)
        if self.last_logits is None:
            self.last_logits = torch.full((self.batch_size, out.logits.size(-1)), float("nan"), device=device)
        self.last_logits[d_rows] = out.logits[:, 0]
        self.cache.lengths[d_rows] += n.to(device)
        if out.routing is not None:
            for i, b in enumerate(rows):
                result[b] = out.routing[:, i, : n[i]].permute(1, 0, 2).cpu()

    def copy_prefix(self, dst: int, src: int, n: int) -> None:
        """Row ``dst``'s context becomes the first ``n`` tokens of row ``src``'s (prefix sharing).

        The caller knows the two contexts agree on those tokens (same ids at the same positions);
        the cache entries of a prefix depend on the prefix alone, so nothing is recomputed. The
        next ``append`` to ``dst`` must feed at least one token before ``generate``.

        Raises:
            ConfigError: ``n`` beyond row ``src``'s length.
        """
        self.copy_prefixes([(dst, src, n)])

    def copy_prefixes(self, moves: Sequence[tuple[int, int, int]]) -> None:
        """Several :meth:`copy_prefix` moves ``(dst, src, n)``, every source read before any write."""
        lengths = self.lengths
        for _dst, src, n in moves:
            if not 0 <= n <= lengths[src]:
                raise ConfigError(f"row {src} holds {lengths[src]} tokens; cannot share a prefix of {n}")
        copies = [(d, s, n) for d, s, n in moves if d != s and n > 0]
        if copies:
            self.cache.copy_prefixes(copies)
        for dst, _, n in moves:
            self.cache.lengths[dst] = n
        if self.last_logits is not None:
            for dst, _, _ in moves:
                self.last_logits[dst] = float("nan")  # no logits until the next append feeds the row

    @torch.no_grad()
    def generate(
        self,
        params: SamplingParams,
        generator: torch.Generator | Sequence[torch.Generator],
        active: Sequence[bool] | None = None,
        budgets: Sequence[int] | None = None,
        min_done: int | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[Turn | None]:
        """Sample one action for every active row (or, with ``min_done``, part of one).

        Args:
            params: temperature, top-p and token budget.
            generator: the seeded source of every random draw (same seed, same state -> same
                actions); or one generator per row, each row drawing one number per sampled
                token from its own, so a row's draws do not depend on which other rows are
                active (an episode's sample does not depend on its batch).
            active: rows to sample for (default all); inactive rows get None and are unchanged.
            budgets: per row, the most tokens to sample in this call (default
                ``params.max_new_tokens`` each): a row continuing an action keeps its remainder.
            min_done: return once this many active rows are done (sampled the stop token or
                spent their budget), leaving the others mid-action: their ``Turn`` holds what they
                sampled so far (``stopped`` False, fewer tokens than their budget), and the cache
                holds it too, so a later call continues them exactly (continuous batching).
            should_stop: checked before each token; when it returns True every row stops where
                it is, as with ``min_done`` (a server whose client went away).

        Returns:
            Per row, a ``Turn`` or None.
        """
        start = time.perf_counter()
        try:
            return self._generate(params, generator, active, budgets, min_done, should_stop)
        finally:
            self.seconds["generate"] += time.perf_counter() - start

    def _generate(
        self,
        params: SamplingParams,
        generator: torch.Generator | Sequence[torch.Generator],
        active: Sequence[bool] | None,
        budgets: Sequence[int] | None,
        min_done: int | None,
        should_stop: Callable[[], bool] | None,
    ) -> list[Turn | None]:
        """``generate`` without the timing (same arguments, same result)."""
        B = self.batch_size
        alive = torch.ones(B, dtype=torch.bool) if active is None else torch.tensor(list(active), dtype=torch.bool)
        if self.last_logits is None or bool(torch.isnan(self.last_logits[alive.to(self.cache.device), 0]).any()):
            raise ConfigError("Every active row needs context before generate: append a prompt to it first.")
        shared, per_row = self._generators(generator)
        was_active = alive.clone()
        steps = _Steps(B)
        stopped = torch.zeros(B, dtype=torch.bool)
        device = self.cache.device
        left = torch.full((B,), params.max_new_tokens) if budgets is None else torch.tensor(list(budgets))
        if bool((left[alive] < 1).any()):
            raise ConfigError(f"every active row needs a budget of at least one token, got {left[alive].tolist()}")
        done_needed = int(alive.sum()) if min_done is None else min(int(min_done), int(alive.sum()))
        for _ in range(int(left[alive].max()) if bool(alive.any()) else 0):
            if should_stop is not None and should_stop():
                break
            rows = alive.nonzero().flatten()
            logits = self.last_logits[rows.to(device)].float().cpu()  # [R,V]
            keep = sampling_mask(logits, params.temperature, params.top_p)
            tok = _draw(logits, keep, params.temperature, rows, shared, per_row)
            lp = token_logprobs(logits, tok, params.temperature, keep)
            routing = self._feed_sampled(rows, tok)
            steps.add(rows, tok, lp, keep, routing)
            hit = torch.zeros(B, dtype=torch.bool)
            hit[rows] = torch.isin(tok, self.stop_ids)
            stopped |= hit
            left[rows] -= 1
            alive &= ~hit & (left > 0)
            if int((was_active & ~alive).sum()) >= done_needed:
                break
        return steps.turns(was_active, stopped)

    def _generators(
        self, generator: torch.Generator | Sequence[torch.Generator]
    ) -> tuple[torch.Generator | None, list[torch.Generator]]:
        """(the shared generator or None, the per-row generators or []) of a ``generate`` call.

        Raises:
            ConfigError: per-row generators whose count is not the batch size.
        """
        shared = generator if isinstance(generator, torch.Generator) else None
        per_row: list[torch.Generator] = [] if shared is not None else list(generator)  # type: ignore[arg-type]
        if shared is None and len(per_row) != self.batch_size:
            raise ConfigError(f"generate needs one generator per row ({self.batch_size}), got {len(per_row)}.")
        return shared, per_row

    def _feed_sampled(self, rows: Tensor, tok: Tensor) -> Tensor | None:
        """Feed one sampled token [R] to each of the rows [R]; no other row is computed or written.

        Advances the rows' lengths and ``last_logits``.

        Returns:
            The step's routing [n_moe, R, 1, K] (row j of ``rows`` at index j), or None without MoE.
        """
        assert self.last_logits is not None  # generate checks every active row has context
        device = self.cache.device
        d_rows = rows.to(device)
        subset = None if len(rows) == self.batch_size else d_rows  # all rows alive: rows is 0..B-1
        positions = self.cache.lengths[d_rows][:, None]
        out = kernel.decode_step(self.model, tok[:, None].to(device), positions, self.cache, rows=subset)
        self.cache.lengths[d_rows] += 1
        self.last_logits[d_rows] = out.logits[:, 0]
        return out.routing


#: Appends of at most this many tokens share a forward whatever their lengths (padding is cheap there).
SHORT_APPEND = 64


def length_groups(lengths: Sequence[int]) -> list[list[int]]:
    """Rows with something to append, grouped so that padding to a group's longest stays bounded.

    Rows are taken longest first; a row joins the current group while it is at least half as
    long as the group's longest, or the longest is at most :data:`SHORT_APPEND` tokens. So a
    group computes at most twice its real tokens (beyond short appends), and a batch of equal
    lengths is one group in row order.

    Returns:
        Groups of row indices, each sorted ascending; rows of length 0 appear in none.
    """
    order = sorted((b for b, n in enumerate(lengths) if n > 0), key=lambda b: -lengths[b])
    groups: list[list[int]] = []
    for b in order:
        if groups and (2 * lengths[b] >= lengths[groups[-1][0]] or lengths[groups[-1][0]] <= SHORT_APPEND):
            groups[-1].append(b)
        else:
            groups.append([b])
    return [sorted(g) for g in groups]


def _draw(
    logits: Tensor,
    keep: Tensor | None,
    temperature: float,
    rows: Tensor,
    shared: torch.Generator | None,
    per_row: Sequence[torch.Generator],
) -> Tensor:
    """One token per row from logits [R, V] restricted to keep [R, V]: argmax when greedy.

    Inverse-CDF sampling: each row draws one uniform u in [0, 1) and takes the first token whose
    cumulative probability exceeds u times the row's total mass (``searchsorted`` on the batched
    CDF, so a token of probability 0 is never drawn). The uniforms come from ``shared`` (R of them
    at once) or, for each row b of ``rows`` [R], one from ``per_row[b]``. One number per token and
    row, drawn by a call that costs the same whatever the vocabulary (``torch.multinomial`` fills
    V exponentials per row, ~16x the cost of the rest of a 16-row decode step's sampling).

    Returns:
        [R] ids.
    """
    if temperature == 0:
        return logits.argmax(-1)
    probs = (logits / temperature).softmax(-1)
    if keep is not None:
        probs = probs.masked_fill(~keep, 0.0)
    if shared is not None:
        u = torch.rand(len(rows), generator=shared, dtype=torch.float64)
    else:
        u = torch.cat([torch.rand(1, generator=per_row[b], dtype=torch.float64) for b in rows.tolist()])
    cdf = probs.double().cumsum(-1)  # [R,V]; float64 so the last ids keep their share of the mass
    total = cdf[:, -1]
    target = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))  # [R] in [0, total)
    return torch.searchsorted(cdf, target[:, None], right=True).squeeze(-1)  # first id with cdf > target


class _Steps:
    """Every step of one ``generate`` call, one full-batch record per step, split into Turns at the end.

    A row samples from step 0 until it stops, so its tokens are the first n steps of its column:
    recording [B]-wide tensors per step costs a few ops per step, not a few per row and step.
    """

    def __init__(self, batch_size: int) -> None:
        self.B = batch_size
        self.ids: list[Tensor] = []  # per step [B] (-1 where the row did not sample)
        self.logprobs: list[Tensor] = []  # per step [B]
        self.masks: list[Tensor] = []  # per step [B, V]
        self.routes: list[Tensor] = []  # per step [n_moe, B, K]

    def add(self, rows: Tensor, tok: Tensor, lp: Tensor, keep: Tensor | None, routing: Tensor | None) -> None:
        """Record one step: rows [R] that sampled, their ids, log-probs, kept sets [R, V], routing [n_moe, R, 1, K]."""
        ids = torch.full((self.B,), -1, dtype=tok.dtype)
        ids[rows] = tok
        logprobs = torch.zeros(self.B, dtype=lp.dtype)
        logprobs[rows] = lp
        self.ids.append(ids)
        self.logprobs.append(logprobs)
        if keep is not None:
            mask = torch.zeros(self.B, keep.size(-1), dtype=torch.bool)
            mask[rows] = keep
            self.masks.append(mask)
        if routing is not None:
            route = torch.zeros(routing.size(0), self.B, routing.size(-1), dtype=routing.dtype)
            route[:, rows] = routing[:, :, 0].cpu()
            self.routes.append(route)

    def turns(self, active: Tensor, stopped: Tensor) -> list[Turn | None]:
        """Per row, its ``Turn`` (None for rows that were not active).

        With no step recorded (cancelled before the first token), an active row's turn is empty:
        no tokens, no log-probs, and no kept sets or routing.
        """
        ids = torch.stack(self.ids, 1) if self.ids else torch.full((self.B, 0), -1, dtype=torch.long)  # [B, S]
        lps = torch.stack(self.logprobs, 1) if self.logprobs else torch.zeros(self.B, 0)
        masks = torch.stack(self.masks, 1) if self.masks else None  # [B, S, V]
        routes = torch.stack(self.routes, 0).permute(2, 0, 1, 3) if self.routes else None  # [B, S, n_moe, K]
        lengths = (ids >= 0).sum(1).tolist()
        return [
            Turn(
                tokens=ids[b, :n].clone(),
                logprobs=lps[b, :n].clone(),
                keep_mask=None if masks is None else masks[b, :n].clone(),
                routing=None if routes is None else routes[b, :n].clone(),
                stopped=bool(stopped[b]),
            )
            if active[b]
            else None
            for b, n in enumerate(lengths)
        ]
