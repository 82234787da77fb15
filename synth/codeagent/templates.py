"""The library of module templates a codeagent package is generated from.

Each :class:`Template` is the source of one small module of domain logic (accounting rules,
text utilities, a one-day scheduler, sequence utilities, parsers of small formats, and three
modules that compose them: billing, agenda, digest), written as a maintainer would: docstrings
saying what each function promises, no ``while`` loops (a mutated loop condition must not hang
the synthesis check: every loop is over a finite iterable), plain values in and out so a case's
arguments and result are JSON.

Per world, a template's ``__NAME__`` placeholders are filled from the world's rng (a tax rate,
a separator, a default width), so two worlds of one template differ in constants and therefore
in every expected value. Its case generators draw the arguments of the hidden and visible tests
(``cases[function](rng) -> list of arguments``); expected values are never written here: they
come from running the clean module (:mod:`.package`).
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Gen = Callable[[random.Random, dict[str, str]], list[Any]]
WORDS = (
    "alpha bravo cedar delta ember fjord grove harbor island jade kettle lumen maple north ocean "
    "pine quartz river summit tide umber valley willow yarrow zephyr and of the to in a an"
).split()
ITEMS = ["Widget", "Gadget", "Bolt", "Cable", "Lamp", "Panel", "Hinge", "Valve", "Gear", "Spring"]


@dataclass(frozen=True)
class Template:
    """One module template: its source, what it imports, and how to draw test arguments.

    Attributes:
        id: Module name in the package (``money`` → ``<package>/money.py``).
        source: Python source with ``__NAME__`` placeholders.
        params: Draws the placeholder values (text substituted verbatim).
        cases: Per public function, a generator of one argument list from the world's rng and
            this module's placeholder values.
        deps: Template ids this module imports (relative imports).
    """

    id: str
    source: str
    params: Callable[[random.Random], dict[str, str]]
    cases: dict[str, Gen]
    deps: tuple[str, ...] = field(default=())

    def render(self, values: dict[str, str]) -> str:
        """The module source with its placeholders filled."""
        text = self.source
        for key, value in values.items():
            text = text.replace(f"__{key}__", value)
        return text


def _amount_text(rng: random.Random) -> str:
    cents = rng.randint(0, 250_000)
    whole, frac = divmod(cents, 100)
    text = f"{whole:,}" if rng.random() < 0.5 else str(whole)
    kind = rng.randrange(4)
    text += "" if kind == 0 else f".{frac // 10}" if kind == 1 else f".{frac:02d}" if kind == 2 else f".{frac:02d}7"
    return ("-" if rng.random() < 0.25 else "") + (" " if rng.random() < 0.2 else "") + text


def _lines(rng: random.Random) -> list[list[int]]:
    return [[rng.randint(1, 9), rng.randint(1, 40_000)] for _ in range(rng.randint(1, 4))]


MONEY = Template(
    "money",
    '''"""Money arithmetic for invoices. Amounts are integers of cents; rates are basis points."""

TAX_RATE_BP = __RATE__


def parse_amount(text):
    """Parse an amount such as "1,234.5" or "-12.05" into cents.

    Thousands separators and surrounding spaces are ignored; a missing fraction means whole
    units; digits past the second decimal are dropped.
    """
    text = text.strip().replace(",", "")
    negative = text.startswith("-")
    if negative:
        text = text[1:]
    whole, _, frac = text.partition(".")
    cents = int(whole or "0") * 100 + int((frac + "00")[:2])
    if negative:
        return -cents
    return cents


def format_amount(cents, symbol="__SYMBOL__"):
    """Format cents with a currency symbol and thousands separators: -123456 -> "-$1,234.56"."""
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{symbol}{cents // 100:,}.{cents % 100:02d}"


def apply_discount(cents, percent):
    """The amount after a percentage discount, rounded half up to the cent.

    A percent of 0 or less leaves the amount unchanged; 100 or more makes it 0.
    """
    if percent <= 0:
        return cents
    if percent >= 100:
        return 0
    return cents - (cents * percent + 50) // 100


def tax(cents, rate_bp=TAX_RATE_BP):
    """The tax on an amount at a rate in basis points, rounded half up to the cent."""
    return (cents * rate_bp + 5000) // 10000


def invoice_total(lines, discount_percent=0, rate_bp=TAX_RATE_BP):
    """The total of invoice lines [quantity, unit cents]: the discount first, then the tax."""
    subtotal = 0
    for quantity, unit in lines:
        subtotal += quantity * unit
    net = apply_discount(subtotal, discount_percent)
    return net + tax(net, rate_bp)


def split_evenly(cents, parts):
    """Split an amount into `parts` shares that differ by at most a cent, larger shares first."""
    base, extra = divmod(cents, parts)
    return [base + 1 if i < extra else base for i in range(parts)]
''',
    lambda rng: {"RATE": str(rng.choice([500, 650, 700, 800, 825, 1000, 1250, 2000])), "SYMBOL": rng.choice("$€£")},
    {
        "parse_amount": lambda rng, p: [_amount_text(rng)],
        "format_amount": lambda rng, p: [rng.randint(-300_000, 3_000_000)],
        "apply_discount": lambda rng, p: [rng.randint(0, 90_000), rng.choice([-5, 0, 5, 10, 15, 33, 50, 99, 100, 120])],
        "tax": lambda rng, p: (
            [rng.randint(0, 90_000)] + ([rng.choice([0, 250, 1999, 2500])] if rng.random() < 0.4 else [])
        ),
        "invoice_total": lambda rng, p: [_lines(rng), rng.choice([0, 0, 5, 10, 25, 100])],
        "split_evenly": lambda rng, p: [rng.randint(0, 10_000), rng.randint(1, 7)],
    },
)


def _phrase(rng: random.Random, lo: int = 2, hi: int = 9) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(lo, hi))]
    words = [w.capitalize() if rng.random() < 0.3 else w.upper() if rng.random() < 0.1 else w for w in words]
    seps = [rng.choice([" ", " ", " ", "  ", "-", ", ", "_", "/"]) for _ in words]
    return "".join(w + s for w, s in zip(words, seps, strict=True)).rstrip(" ,/") + rng.choice(["", "", "!", "."])


TEXTUTIL = Template(
    "textutil",
    '''"""Text helpers for labels and reports."""

SMALL_WORDS = {"a", "an", "and", "of", "the", "to", "in"}


def slugify(text, sep="__SEP__"):
    """Lower-case runs of letters and digits joined by `sep`; every other character separates."""
    words = []
    current = ""
    for ch in text.lower():
        if ch.isalnum():
            current += ch
        elif current:
            words.append(current)
            current = ""
    if current:
        words.append(current)
    return sep.join(words)


def title_case(text):
    """Capitalize each word; small words stay lower-case unless they are first or last."""
    words = text.split()
    out = []
    for i, word in enumerate(words):
        if 0 < i < len(words) - 1 and word.lower() in SMALL_WORDS:
            out.append(word.lower())
        else:
            out.append(word[:1].upper() + word[1:].lower())
    return " ".join(out)


def truncate(text, width=__WIDTH__, ellipsis="..."):
    """Cut text to at most `width` characters, ending with `ellipsis` when it was cut."""
    if len(text) <= width:
        return text
    if width <= len(ellipsis):
        return ellipsis[:width]
    return text[: width - len(ellipsis)] + ellipsis


def wrap(text, width=__WIDTH__):
    """Greedy word wrap into lines of at most `width` characters; a longer word gets a line of its own."""
    lines = []
    line = ""
    for word in text.split():
        if not line:
            line = word
        elif len(line) + 1 + len(word) <= width:
            line = line + " " + word
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    return lines


def count_words(text, min_length=__MINLEN__):
    """[word, count] pairs of the words (as slugify splits them) of at least `min_length` characters.

    Most frequent first; ties in alphabetical order.
    """
    counts = {}
    for word in slugify(text, " ").split():
        if len(word) >= min_length:
            counts[word] = counts.get(word, 0) + 1
    return [[w, n] for w, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
''',
    lambda rng: {"SEP": rng.choice("-_."), "WIDTH": str(rng.randint(12, 24)), "MINLEN": str(rng.randint(1, 3))},
    {
        "slugify": lambda rng, p: [_phrase(rng)],
        "title_case": lambda rng, p: [_phrase(rng, 2, 7).replace("-", " ").replace("_", " ")],
        "truncate": lambda rng, p: [_phrase(rng)] + ([rng.randint(0, 30)] if rng.random() < 0.6 else []),
        "wrap": lambda rng, p: [_phrase(rng, 3, 14)] + ([rng.randint(4, 30)] if rng.random() < 0.6 else []),
        "count_words": lambda rng, p: [_phrase(rng, 4, 16)] + ([rng.randint(1, 5)] if rng.random() < 0.5 else []),
    },
)


def _clock(rng: random.Random, lo: int = 0, hi: int = 1439) -> str:
    m = rng.randint(lo, hi)
    return f"{m // 60:02d}:{m % 60:02d}"


def _span(rng: random.Random) -> list[int]:
    start = rng.randrange(540, 720, 15)
    return [start, start + rng.choice([15, 30, 45, 60])]


def _busy(rng: random.Random) -> list[list[int]]:
    out = []
    for _ in range(rng.randint(0, 5)):
        start = rng.randrange(360, 1200, 15)
        out.append([start, start + rng.choice([15, 30, 45, 60, 90, 120])])
    return out


SCHEDULE = Template(
    "schedule",
    '''"""Scheduling within one day. Times are "HH:MM" text; intervals are [start, end) in minutes."""

DAY_START = "__START__"
DAY_END = "__END__"


def to_minutes(clock):
    """Minutes since midnight of a "HH:MM" time."""
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def to_clock(minutes):
    """The "HH:MM" text of a number of minutes since midnight."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def overlaps(a, b):
    """Whether two [start, end) intervals share a minute; intervals that only touch do not."""
    return a[0] < b[1] and b[0] < a[1]


def merge(intervals):
    """Merge overlapping or touching intervals; the result is sorted by start."""
    merged = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def free_slots(busy, day_start=DAY_START, day_end=DAY_END):
    """The free ["HH:MM", "HH:MM"] intervals of the day around the busy ones, in order."""
    begin, finish = to_minutes(day_start), to_minutes(day_end)
    slots = []
    cursor = begin
    for start, end in merge(busy):
        if start > cursor:
            slots.append([cursor, min(start, finish)])
        cursor = max(cursor, end)
    if cursor < finish:
        slots.append([cursor, finish])
    return [[to_clock(s), to_clock(e)] for s, e in slots if s < e]


def first_fit(busy, length, day_start=DAY_START, day_end=DAY_END):
    """The start ("HH:MM") of the earliest free interval of at least `length` minutes, or None."""
    for start, end in free_slots(busy, day_start, day_end):
        if to_minutes(end) - to_minutes(start) >= length:
            return start
    return None
''',
    lambda rng: {
        "START": rng.choice(["07:00", "08:00", "08:30", "09:00"]),
        "END": rng.choice(["17:00", "18:00", "19:30"]),
    },
    {
        "to_minutes": lambda rng, p: [_clock(rng)],
        "to_clock": lambda rng, p: [rng.randint(0, 1439)],
        "overlaps": lambda rng, p: [_span(rng), _span(rng)],
        "merge": lambda rng, p: [_busy(rng)],
        "free_slots": lambda rng, p: [_busy(rng)],
        "first_fit": lambda rng, p: [_busy(rng), rng.choice([15, 30, 60, 90, 180, 240])],
    },
)


def _ints(rng: random.Random, lo: int = 0, hi: int = 12) -> list[int]:
    return [rng.randint(-20, 60) for _ in range(rng.randint(lo, hi))]


STRUCTS = Template(
    "structs",
    '''"""Small sequence utilities."""


def chunk(items, size):
    """Consecutive pieces of `size` items; the last piece may be shorter."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def moving_average(values, window=__WINDOW__):
    """The average of each run of `window` consecutive values, rounded to 2 decimals.

    An empty list when the window is not positive or longer than the values.
    """
    if window <= 0 or window > len(values):
        return []
    total = sum(values[:window])
    out = [round(total / window, 2)]
    for i in range(window, len(values)):
        total += values[i] - values[i - window]
        out.append(round(total / window, 2))
    return out


def dedupe(items):
    """The items without repeats, each kept at its first occurrence."""
    seen = set()
    out = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def top_k(counts, k=__K__):
    """The `k` keys with the largest counts, as [key, count] pairs; ties go to the smaller key."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [[key, n] for key, n in ranked[:k]]


def insert_position(sorted_items, value):
    """Where `value` goes in an ascending list to keep it sorted: after any equal items."""
    lo, hi = 0, len(sorted_items)
    for _ in range(len(sorted_items) + 1):
        if lo >= hi:
            break
        mid = (lo + hi) // 2
        if sorted_items[mid] <= value:
            lo = mid + 1
        else:
            hi = mid
    return lo


def rotate(items, steps):
    """The list rotated right by `steps` places (negative steps rotate left)."""
    if not items:
        return []
    steps = steps % len(items)
    return items[-steps:] + items[:-steps]
''',
    lambda rng: {"WINDOW": str(rng.randint(2, 4)), "K": str(rng.randint(2, 4))},
    {
        "chunk": lambda rng, p: [_ints(rng), rng.randint(1, 5)],
        "moving_average": lambda rng, p: [_ints(rng, 0, 10)] + ([rng.randint(-1, 6)] if rng.random() < 0.5 else []),
        "dedupe": lambda rng, p: [[rng.randint(0, 6) for _ in range(rng.randint(0, 12))]],
        "top_k": lambda rng, p: (
            [{rng.choice(string.ascii_lowercase): rng.randint(1, 5) for _ in range(rng.randint(0, 8))}]
            + ([rng.randint(0, 5)] if rng.random() < 0.5 else [])
        ),
        "insert_position": lambda rng, p: [sorted(_ints(rng)), rng.randint(-25, 65)],
        "rotate": lambda rng, p: [_ints(rng, 0, 8), rng.randint(-10, 10)],
    },
)


def _duration(rng: random.Random) -> str:
    parts = [f"{rng.randint(1, 50)}{u}" for u in "dhms" if rng.random() < 0.5] or [str(rng.randint(0, 5000))]
    return rng.choice(["", " "]).join(parts)


PARSERS = Template(
    "parsers",
    '''"""Parsers for small text formats."""

UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text):
    """Seconds in a duration such as "1h30m" or "2d 4h 15s"; trailing bare digits count as seconds.

    Raises ValueError on any other character.
    """
    total = 0
    number = ""
    for ch in text.replace(" ", ""):
        if ch.isdigit():
            number += ch
        elif ch in UNITS and number:
            total += int(number) * UNITS[ch]
            number = ""
        else:
            raise ValueError(f"bad duration: {text!r}")
    if number:
        total += int(number)
    return total


def format_duration(seconds):
    """The compact text of a number of seconds, largest unit first: 5400 -> "1h30m"; 0 -> "0s"."""
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in UNITS.items():
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds = seconds % size
    return "".join(parts)


def parse_pairs(text, sep="__PSEP__"):
    """Parse "key=value" items separated by `sep` into a dict.

    Keys and values are trimmed, blank items are skipped, and a later key wins.
    """
    result = {}
    for item in text.split(sep):
        if not item.strip():
            continue
        key, _, value = item.partition("=")
        result[key.strip()] = value.strip()
    return result


def parse_version(text):
    """A version "1.2.3" as three integers; missing parts are 0 and parts past the third are ignored."""
    parts = [int(p) for p in text.split(".")[:3]]
    return parts + [0] * (3 - len(parts))


def compare_versions(a, b):
    """-1, 0 or 1 as version `a` is older than, equal to or newer than version `b`."""
    va, vb = parse_version(a), parse_version(b)
    if va < vb:
        return -1
    if va > vb:
        return 1
    return 0
''',
    lambda rng: {"PSEP": rng.choice([";", "&", ","])},
    {
        "parse_duration": lambda rng, p: [_duration(rng)],
        "format_duration": lambda rng, p: [
            rng.choice([0, rng.randint(1, 59), rng.randint(60, 4000), rng.randint(3600, 300_000)])
        ],
        "parse_pairs": lambda rng, p: [
            p["PSEP"].join(
                f" {rng.choice('abcde')}{rng.choice(['', '2'])} = {rng.randint(0, 99)}"
                for _ in range(rng.randint(0, 5))
            )
        ],
        "parse_version": lambda rng, p: [".".join(str(rng.randint(0, 12)) for _ in range(rng.randint(1, 4)))],
        "compare_versions": lambda rng, p: [
            ".".join(str(rng.randint(0, 3)) for _ in range(rng.randint(1, 3))),
            ".".join(str(rng.randint(0, 3)) for _ in range(rng.randint(1, 3))),
        ],
    },
)
