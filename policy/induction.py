"""Induction warm-up and the repeat probe: teaching, and measuring, copying from the context.

A tool-use policy copies all the time: a name from the request into a call, an id from a tool
result into the next call or the answer. A transformer copies with *induction heads* (Olsson et
al. 2022, "In-context learning and induction heads"): attend to the token after an earlier
occurrence of the current token, and predict it. They form in a phase change, and only when
copying pays off in the loss.

**What we measured** (issue 12, ``bench learn``'s default model on this CPU): they do not form
from the gym's own text in a CPU budget. After ~1.4M tokens of LM training on reference episodes
plus ~1.2M of SFT the model predicted the second copy of a repeated window *worse* than the first
(1.01 vs 0.78 nats), copied no name or id from its context, and acted the mode of its training
actions whatever the prompt. The loss on the unpredictable tokens (fresh names, ids and values in
prompts and tool results) drowns the copying signal: a random-token copy task through the same
training loop did not learn in 300 steps with the loss on the whole row, and did from ~200 steps
with the loss on the second copy only. With a fixed window length and no gap the model learns a
positional shortcut instead (attend a fixed distance back), which fails at other lengths; with
varied lengths and gaps only content-based copying works.

Hence :func:`repeat_batches`: rows ``[w][gap][w][filler]`` cut from a token stream, with ``|w|``
and the gap drawn per row, and the loss mask on the second copy (after its first token, which
nothing predicts). With the loss on the second copy only, copying is the only way to lower it.

**Row length is the lever** (2026-12-01). In rows of 191 tokens with windows of 48-80, content
copying showed no sign in 500-3,400 steps, in our model and in a plain 2-layer GPT alike (V 448 or
4,096): each target has ~100-190 earlier positions to choose from, so the gradient toward the one
that matters is tiny and the plateau before the head forms outlasts the budget. In rows of 32
tokens with windows of 4-12 the same plain GPT (V 448, batch 64) broke out at ~100 steps and copied
at 0.09 nats by step 500; 100 further steps on 192-token rows then copied at long range too (0.10
nats with gaps up to ~170, 1.4 on 512-token rows never trained on). The vocabulary sets the pace:
at V 4,096 (the tokenizer's) the plain GPT left the plateau only at ~500 steps. Hence the
curriculum of ``bench learn`` (``learn_config.DEFAULT_INDUCTION``): short rows of uniformly random
ids (every id taught alike, no text statistics to learn instead), then longer rows of the corpus.

:func:`copy_gain` is the probe: ``rows`` windows of ``length`` tokens of a held-out stream, each
repeated once; the mean NLL of each copy. A model that copies predicts the second copy far better.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from toolgym.errors import ConfigError
from toolgym.policy.model import Transformer
from toolgym.policy.train_lm import Batch, CopyMix


def repeat_batches(
    stream: Tensor, batch_size: int, seq_len: int, generator: torch.Generator, min_len: int = 16, max_len: int = 128
) -> Iterator[Batch]:
    """Endless batches of repeated windows (see the module docstring).

    Args:
        stream: [N] token ids (``train_lm.encode_documents``).
        batch_size: rows per batch.
        seq_len: inputs per row (rows hold ``seq_len + 1`` tokens).
        generator: the seeded source of every draw.
        min_len: the shortest window (tokens).
        max_len: the longest window (inclusive); ``2 * max_len <= seq_len + 1``.

    Yields:
        ``Batch``es whose ``loss_mask`` [B, seq_len] is 1 exactly on the targets inside the second copy
        after its first token.

    Raises:
        ConfigError: the lengths do not fit a row, or the stream is too short.
    """
    S = seq_len + 1
    if not 2 <= min_len <= max_len or 2 * max_len > S:
        raise ConfigError(f"window lengths {min_len}..{max_len} must satisfy 2 <= min <= max and 2 * max <= {S}")
    if len(stream) < 2 * S + max_len:
        raise ConfigError(f"the stream ({len(stream)} tokens) is too short for rows of {S}")
    while True:
        rows, masks = [], []
        for _ in range(batch_size):
            n = int(torch.randint(min_len, max_len + 1, (), generator=generator))
            gap = int(torch.randint(0, S - 2 * n + 1, (), generator=generator))
            a, b = torch.randint(0, len(stream) - S - max_len, (2,), generator=generator).tolist()
            w = stream[a : a + n]
            rows.append(torch.cat([w, stream[b : b + gap], w, stream[b + gap : b + S - n - n]]))
            mask = torch.zeros(seq_len)
            mask[n + gap : 2 * n + gap - 1] = 1  # target t predicts token t + 1: the copy's 2nd..last token
            masks.append(mask)
        yield Batch(torch.stack(rows), torch.stack(masks))


@torch.no_grad()
def copy_gain(model: Transformer, stream: Tensor, length: int = 128, rows: int = 8) -> tuple[float, float]:
    """The repeat probe: (mean NLL of the first copy, of the second), in nats per token.

    Windows start at evenly spaced offsets of ``stream``; each row is a window and its repeat.

    Raises:
        ConfigError: the stream holds fewer than ``rows * length`` tokens.
    """
    if len(stream) < rows * length:
        raise ConfigError(f"the probe needs {rows * length} tokens, the stream has {len(stream)}")
    step = (len(stream) - length) // rows
    w = torch.stack([stream[i * step : i * step + length] for i in range(rows)])
    x = torch.cat([w, w], 1).to(model.embed.weight.device)
    was_training = model.training
    model.eval()
    logp = torch.log_softmax(model(x[:, :-1]).logits.float(), -1)
    model.train(was_training)
    nll = -logp.gather(-1, x[:, 1:, None])[..., 0]
    return float(nll[:, : length - 1].mean()), float(nll[:, length:].mean())


#: Filler tokens of cued rows are drawn from the lowest ids above the special ones: in a byte-level
#: BPE the single bytes (quotes, colons, spaces), the tokens that sit between a key and its value.
FILLER_IDS = 16


def cued_rows(
    batch_size: int, seq_len: int, generator: torch.Generator, low: int, high: int, min_len: int, max_len: int, cue: int
) -> Batch:
    """Rows ``[k f1 w] [gap] [k f2 w] [rest]``: a window ``w`` after the same key ``k``, twice.

    ``f1`` and ``f2`` are 0..``cue`` filler ids each (from the ``FILLER_IDS`` lowest of [low, high)),
    drawn apart; the key, the window, the gap and the rest are uniform over the other ids. The
    loss mask covers every token of the second ``w``, its first too: only the key's earlier
    occurrence, read past its fillers, predicts it (``CopyMix.cue``).

    Returns:
        A ``Batch`` of [batch_size, seq_len + 1] tokens and a [batch_size, seq_len] loss mask.

    Raises:
        ConfigError: the copies cannot fit a row, or [low, high) has too few ids.
    """
    S = seq_len + 1
    if not 1 <= min_len <= max_len or 2 * (max_len + cue + 1) > S or high - low <= 2 * FILLER_IDS:
        raise ConfigError(f"cued windows {min_len}..{max_len} with {cue} fillers do not fit rows of {S} ids")
    rows, masks = [], []
    for _ in range(batch_size):
        n, f1, f2 = (
            int(torch.randint(a, b + 1, (), generator=generator)) for a, b in ((min_len, max_len), (0, cue), (0, cue))
        )
        first, second = 1 + f1 + n, 1 + f2 + n
        gap = int(torch.randint(0, S - first - second + 1, (), generator=generator))
        row = torch.randint(low + FILLER_IDS, high, (S,), generator=generator)  # key, w, gap and rest
        key, w = row[0].clone(), row[1 + f1 : first].clone()
        fill = torch.randint(low, low + FILLER_IDS, (f1 + f2,), generator=generator)
        row[1 : 1 + f1] = fill[:f1]
        at = first + gap  # the second copy's key
        row[at], row[at + 1 : at + 1 + f2], row[at + 1 + f2 : at + second] = key, fill[f1:], w
        mask = torch.zeros(seq_len)
        mask[at + f2 : at + f2 + n] = 1  # target t predicts token t + 1: every token of the second w
        rows.append(row)
        masks.append(mask)
    return Batch(torch.stack(rows), torch.stack(masks))


def copy_batch(mix: CopyMix, low: int, high: int, seed: int, step: int) -> Batch:
    """The repeat rows of mixed step ``step`` (``CopyMix``): a function of (seed, step) alone.

    Args:
        mix: the rows' sizes.
        low: the lowest id drawn (the first non-special id).
        high: ids are drawn from [low, high) uniformly (the vocabulary size).
        seed: the run's seed.
        step: the 0-based optimizer step.

    Returns:
        A ``Batch`` of [mix.batch_size, mix.seq_len + 1] tokens with ``copy`` set.
    """
    g = torch.Generator().manual_seed((seed * 1_000_003 + step) % 2**63)
    if mix.cue:
        batch = cued_rows(mix.batch_size, mix.seq_len, g, low, high, mix.min_len, mix.max_len, mix.cue)
    else:
        stream = torch.randint(low, high, (2 * (mix.seq_len + 1) + mix.max_len + 1,), generator=g)
        batch = next(repeat_batches(stream, mix.batch_size, mix.seq_len, g, mix.min_len, mix.max_len))
    return Batch(batch.tokens, batch.loss_mask, copy=True)
