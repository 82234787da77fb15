"""Lookup warm-up: teaching the cued copy from a request into a call's arguments (issue 12).

What a ``domains`` policy copies most is not a repeat but a *lookup*: "the patron whose name is
Felix Viekyflaiv" becomes ``{"name":"Felix Viekyflaiv"}``. The value's first token has no earlier
occurrence of its own context to match (``is`` and a space precede it in the request, ``":"`` in
the call), so an induction head cannot find it: the model must match the JSON key to the key
phrase ("name"), read past the filler ("is", "equals", ":"), and copy from there. Once the first
token is out, induction copies the rest.

**What we measured** (2026-12-01, ``bench learn``'s default model from an LM checkpoint that had
the induction warm-up, batch 64, lr 2e-3, rows of ~45 tokens, loss on the value tokens only):

* Rows of prose facts only (:data:`PHRASES`, 1-3 facts, the call naming a subset in random
  order): after 1,200 steps the first value token still cost 5.0 nats (median 4.1) *with a single
  fact in the request*, while the value's later tokens cost 0.4 (median 0.0). No phase change.
* The same rows with a curriculum: each fact written as its JSON pair (``"key":"value"``, a
  repeat that induction already copies) with a share decaying linearly from 1 to 0 over 300
  steps. On prose-only held-out rows the first token's median NLL fell to 0.77 nats at step 300
  and 0.37 at step 400 (mean 2.6): the lookup formed, in ~17 min on this CPU.
* The same model on rows wrapped as a request and a call (:func:`lookup_row` with ``wrap``) read
  3.2 nats (median) at once, so the skill carries over to the real format in part; on real
  requests with the ~1,000-token system prompt before them it did not yet (8.5 nats): the
  warm-up's rows are short, as the induction warm-up's first phase is.

Hence :func:`lookup_batches`: rows of random key words (the tokenizer's own lowercase word
tokens, so every key is a word the prompts are made of) and values of six shapes (a name, an id, a
date, a word, a number, two words), the loss on the values only, and the JSON-pair share as
above. Held-out rows (``json_share=0``) measure the lookup itself (:func:`first_value_nll`).
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from toolgym.errors import ConfigError
from toolgym.policy.model import Transformer
from toolgym.policy.sft_data import Episode, make_batch
from toolgym.policy.tokenizer import Tokenizer
from toolgym.policy.train_lm import Batch

#: How a request states a fact (``{k}``: the key's words, ``{v}``: the value); the first is the
#: synthesized requests' own phrasing.
PHRASES = (
    "whose {k} is {v}",
    "with {k} {v}",
    "{k}: {v}",
    "where the {k} is {v}",
    "that has the {k} {v}",
    "whose {k} equals {v}",
)
#: The fact as its JSON pair, exactly as the call writes it (the curriculum's start: a repeat).
JSON_PAIR = '"{kj}":{v}'
#: Requests of wrapped rows (``{a}``: an attribute, ``{e}``: the entity, ``{p}``: the facts).
QUESTIONS = (
    "I need the {a} of the {e} {p}.",
    "Look up the {e} {p} and tell me the {a}.",
    "Find all {e}s {p} and submit their ids.",
    "Which {e}s are there {p}? Submit all their ids.",
)
#: The fewest tokens a lookup row may be held to (``max_tokens``): a one-fact bare row fits. Short
#: limits skew the rows (at vocabulary 1,024 the median wrapped row is ~100 tokens, and rows over
#: the limit are drawn again, so a limit near this keeps mostly one-fact rows).
MIN_ROW_TOKENS = 64
_UPPER, _LOWER, _DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz", "0123456789"


def lookup_words(tokenizer: Tokenizer) -> list[str]:
    """The tokenizer's lowercase alphabetic word tokens of 3+ letters, sorted: the key words.

    Raises:
        ConfigError: fewer than 16 (a vocabulary too small for lookup rows).
    """
    words = {w for i in range(tokenizer.first_plain_id, tokenizer.vocab_size) if (w := tokenizer.decode([i])).isalpha()}
    keep = sorted(w for w in words if w.islower() and len(w) >= 3)
    if len(keep) < 16:
        raise ConfigError(
            f"the tokenizer has {len(keep)} lowercase word tokens; lookup rows need 16 (a larger vocabulary)"
        )
    return keep


def _value(rng: random.Random, words: Sequence[str]) -> tuple[str, bool]:
    """A value of one of six shapes, and whether JSON quotes it (numbers are bare)."""
    shape = rng.randrange(6)
    if shape == 0:  # a name: a known word, then a made-up one
        return rng.choice(words).capitalize() + " " + rng.choice(_UPPER) + "".join(
            rng.choices(_LOWER, k=rng.randint(3, 9))
        ), True
    if shape == 1:  # an id
        return "".join(rng.choices(_UPPER, k=rng.randint(1, 3))) + "-" + "".join(
            rng.choices(_DIGITS, k=rng.randint(2, 5))
        ), True
    if shape == 2:
        return f"{rng.randint(2015, 2027)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}", True
    if shape == 3:
        return rng.choice(words), True
    if shape == 4:
        return str(rng.randint(0, 99999) if rng.random() < 0.5 else round(rng.uniform(0, 9999), 2)), False
    return rng.choice(words) + " " + rng.choice(words), True


def lookup_row(
    tokenizer: Tokenizer, words: Sequence[str], rng: random.Random, max_facts: int, json_share: float, wrap: bool
) -> Episode:
    """One row: a request stating 1..``max_facts`` facts, then a JSON object naming some of them.

    Each fact is a key of one or two ``words`` (``first_second`` in JSON) and a value; each is
    written as its JSON pair with probability ``json_share``, else in one of :data:`PHRASES`. The
    object names a random non-empty subset in random order. With ``wrap`` the request is one of
    :data:`QUESTIONS` after an optional preamble and the object is a ``find_<entity>s`` call's
    arguments, as in a synthesized episode.

    Returns:
        An ``Episode`` (``<|bos|>`` first) whose mask is 1 on the value tokens (a quoted value's
        closing quote included) and 0 elsewhere.
    """
    facts = []
    for _ in range(rng.randint(1, max_facts)):
        key = [rng.choice(words) for _ in range(rng.randint(1, 2))]
        facts.append((key, *_value(rng, words)))
    stated = [
        JSON_PAIR.format(kj="_".join(k), v=f'"{v}"' if quoted else v)
        if rng.random() < json_share
        else rng.choice(PHRASES).format(k=" ".join(k), v=v)
        for k, v, quoted in facts
    ]
    entity = rng.choice(words)
    if wrap:
        preamble = rng.choice(("You work for {A} ({c}). ", "You are the assistant of {A}, a {c}. ", ""))
        preamble = preamble.format(
            A=rng.choice(words).capitalize() + " " + rng.choice(words).capitalize(), c=rng.choice(words)
        )
        question = rng.choice(QUESTIONS).format(a=rng.choice(words), e=entity, p=" and ".join(stated))
        request, opening = (
            preamble + question,
            f'<think>Finding the {entity}.</think><tool_call>{{"name":"find_{entity}s","arguments":',
        )
        closing = "}}</tool_call><|end|>"
    else:
        request, opening, closing = f"the {entity} " + ", ".join(stated), "", "}"
    ids = tokenizer.encode_prompt(f"<|user|>{request}<|end|><|assistant|>" + opening)
    mask = [0] * len(ids)
    for i, (key, v, quoted) in enumerate(rng.sample(facts, rng.randint(1, len(facts)))):
        head = tokenizer.encode(("{" if i == 0 else ",") + '"' + "_".join(key) + '":' + ('"' if quoted else ""))
        value = tokenizer.encode(v + ('"' if quoted else ""))
        ids += head + value
        mask += [0] * len(head) + [1] * len(value)
    tail = tokenizer.encode(closing)
    return Episode("lookup", ids + tail, mask + [0] * len(tail), 1)


def json_share_at(step: int, share: float, decay_steps: int) -> float:
    """The JSON-pair share of batch ``step`` (0-based): ``share``, falling linearly to 0 at ``decay_steps``.

    ``decay_steps`` 0 keeps ``share`` throughout.
    """
    return share if decay_steps == 0 else share * max(0.0, 1.0 - step / decay_steps)


def lookup_batches(
    tokenizer: Tokenizer,
    batch_size: int,
    seed: int,
    max_facts: int = 3,
    json_share: float = 1.0,
    json_decay_steps: int = 300,
    wrap: bool = False,
    start: int = 0,
    max_tokens: int | None = None,
) -> Iterator[Batch]:
    """Endless batches of :func:`lookup_row`; batch i is a function of (seed, i) alone.

    Args:
        tokenizer: encodes the rows.
        batch_size: rows per batch.
        seed: the run's seed.
        max_facts: most facts per request (>= 1).
        json_share: the JSON-pair share of the first batch (0 for held-out rows).
        json_decay_steps: batches over which the share falls linearly to 0 (0: it stays).
        wrap: rows shaped as a request and a call (see :func:`lookup_row`).
        start: the first batch's index (a resumed run skips the batches done without drawing them).
        max_tokens: rows longer than this are drawn again (None: any length).

    Raises:
        ConfigError: ``max_facts`` < 1, ``max_tokens`` below 64 (no room for a row), or a
            vocabulary without enough word tokens.
    """
    if max_facts < 1:
        raise ConfigError(f"max_facts must be at least 1, not {max_facts}")
    if max_tokens is not None and max_tokens < MIN_ROW_TOKENS:
        raise ConfigError(f"lookup rows need max_tokens >= {MIN_ROW_TOKENS}, not {max_tokens}")
    words = lookup_words(tokenizer)
    for step in range(start, 1 << 62):
        rng = random.Random(seed * 1_000_003 + step)
        share = json_share_at(step, json_share, json_decay_steps)
        rows: list[Episode] = []
        while len(rows) < batch_size:
            row = lookup_row(tokenizer, words, rng, max_facts, share, wrap)
            if max_tokens is None or len(row.ids) <= max_tokens:
                rows.append(row)
        yield make_batch(rows, tokenizer.pad_id)


@torch.no_grad()
def first_value_nll(model: Transformer, batches: Sequence[Batch]) -> tuple[float, float]:
    """(mean, median) NLL in nats of each value's first token: the lookup itself.

    A value's first token is a masked target whose previous target is unmasked; the later tokens
    are copies that induction already makes.
    """
    was_training = model.training
    model.eval()
    nll = []
    for b in batches:
        logits = model(b.tokens[:, :-1].to(model.embed.weight.device)).logits.float().cpu()
        ce = F.cross_entropy(logits.flatten(0, 1), b.tokens[:, 1:].flatten(), reduction="none").view(b.loss_mask.shape)
        before = torch.cat([torch.zeros_like(b.loss_mask[:, :1]), b.loss_mask[:, :-1]], 1)
        nll += ce[(b.loss_mask == 1) & (before == 0)].tolist()
    model.train(was_training)
    if not nll:
        raise ConfigError("the batches hold no value token")
    return statistics.fmean(nll), statistics.median(nll)
