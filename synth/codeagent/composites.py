"""Module templates that compose the base ones (:mod:`.templates`): where a symptom can show far from its cause.

``billing`` parses invoice text and prices it with ``money`` and ``textutil``; ``agenda`` books
meetings with ``schedule`` and ``parsers``; ``digest`` summarises text and numbers with
``textutil`` and ``structs``. A bug in a base module shows up in these modules' results, one or
two calls away, which is how the harder difficulties put the cause further from the symptom.
"""

from __future__ import annotations

import random

from toolgym.synth.codeagent.templates import (
    ITEMS,
    MONEY,
    PARSERS,
    SCHEDULE,
    STRUCTS,
    TEXTUTIL,
    Template,
    _busy,
    _ints,
    _phrase,
)


def _invoice(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 4)):
        price = rng.randint(1, 40_000)
        whole, frac = divmod(price, 100)
        text = f"{whole}.{frac:02d}" if frac or rng.random() < 0.5 else str(whole)
        parts.append(f"{rng.randint(1, 9)} x {rng.choice(ITEMS)}{rng.choice(['', ' Pro', ' Mini Deluxe'])} @ {text}")
    return rng.choice(["; ", ";"]).join(parts)


def _busy_clock(rng: random.Random) -> list[list[str]]:
    return [[f"{s // 60:02d}:{s % 60:02d}", f"{e // 60:02d}:{e % 60:02d}"] for s, e in _busy(rng)]


BILLING = Template(
    "billing",
    '''"""Invoices written as text: "2 x Widget @ 19.99; 1 x Lamp @ 5"."""

from .money import format_amount, invoice_total, parse_amount
from .textutil import truncate


def line_items(text):
    """[quantity, name, unit cents] for each ";"-separated "quantity x name @ price" item."""
    items = []
    for part in text.split(";"):
        if not part.strip():
            continue
        left, _, price = part.partition("@")
        quantity, _, name = left.partition("x")
        items.append([int(quantity), name.strip(), parse_amount(price)])
    return items


def invoice_summary(text, discount_percent=0):
    """The formatted total of an invoice text, after the discount and the tax."""
    items = line_items(text)
    total = invoice_total([[quantity, cents] for quantity, _, cents in items], discount_percent)
    return format_amount(total)


def receipt(text, width=__RWIDTH__):
    """One line per item: its name cut to `width` characters, then the line's amount."""
    return [f"{truncate(name, width)} {format_amount(quantity * cents)}" for quantity, name, cents in line_items(text)]
''',
    lambda rng: {"RWIDTH": str(rng.randint(6, 12))},
    {
        "line_items": lambda rng, p: [_invoice(rng)],
        "invoice_summary": lambda rng, p: (
            [_invoice(rng)] + ([rng.choice([0, 5, 10, 20, 50])] if rng.random() < 0.6 else [])
        ),
        "receipt": lambda rng, p: [_invoice(rng)] + ([rng.randint(3, 14)] if rng.random() < 0.4 else []),
    },
    deps=(MONEY.id, TEXTUTIL.id),
)

AGENDA = Template(
    "agenda",
    '''"""Booking meetings into a day of busy ["HH:MM", "HH:MM"] intervals."""

from .parsers import format_duration, parse_duration
from .schedule import first_fit, merge, to_minutes


def busy_minutes(busy):
    """Minutes of the day covered by at least one busy interval."""
    spans = merge([[to_minutes(start), to_minutes(end)] for start, end in busy])
    return sum(end - start for start, end in spans)


def book(busy, duration):
    """The earliest start ("HH:MM") with room for a meeting of `duration` ("1h30m"), or None."""
    minutes = parse_duration(duration) // 60
    return first_fit([[to_minutes(start), to_minutes(end)] for start, end in busy], minutes)


def busy_report(busy):
    """The text "<n> meetings, <duration> busy" for a list of busy intervals."""
    return f"{len(busy)} meetings, {format_duration(busy_minutes(busy) * 60)} busy"
''',
    lambda rng: {},
    {
        "busy_minutes": lambda rng, p: [_busy_clock(rng)],
        "book": lambda rng, p: [_busy_clock(rng), rng.choice(["15m", "30m", "1h", "1h30m", "2h", "45m", "3h"])],
        "busy_report": lambda rng, p: [_busy_clock(rng)],
    },
    deps=(SCHEDULE.id, PARSERS.id),
)

DIGEST = Template(
    "digest",
    '''"""Short summaries of texts and of series of numbers."""

from .structs import chunk, moving_average, top_k
from .textutil import count_words, title_case


def headline(text, k=__HK__):
    """The `k` most frequent words of a text, title-cased and joined by " / "."""
    counts = dict(count_words(text, 3))
    return " / ".join(title_case(word) for word, _ in top_k(counts, k))


def trend(values, window=__TW__):
    """Whether the series goes "up", "down" or stays "flat": its last moving average against its first."""
    averages = moving_average(values, window)
    if len(averages) < 2:
        return "flat"
    if averages[-1] > averages[0]:
        return "up"
    if averages[-1] < averages[0]:
        return "down"
    return "flat"


def page_sums(values, size=__PS__):
    """The sum of each page of `size` values."""
    return [sum(page) for page in chunk(values, size)]
''',
    lambda rng: {"HK": str(rng.randint(2, 3)), "TW": str(rng.randint(2, 3)), "PS": str(rng.randint(2, 4))},
    {
        "headline": lambda rng, p: [_phrase(rng, 6, 18)],
        "trend": lambda rng, p: [_ints(rng, 0, 10)],
        "page_sums": lambda rng, p: [_ints(rng, 0, 12)] + ([rng.randint(1, 5)] if rng.random() < 0.4 else []),
    },
    deps=(TEXTUTIL.id, STRUCTS.id),
)

BASES = (MONEY, TEXTUTIL, SCHEDULE, STRUCTS, PARSERS)
COMPOSITES = (BILLING, AGENDA, DIGEST)
ALL = {t.id: t for t in (*BASES, *COMPOSITES)}
