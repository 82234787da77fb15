"""Value generators for every attribute kind of the ontology (:data:`ontology.KINDS`).

:func:`generator` turns one :class:`~toolgym.synth.domains.ontology.Attribute` into a function
``(rng, row) -> value`` for one world: it is built once per world (pools such as the world's
cities and surnames are drawn then, from the world's generator) and called once per row with
the row's own ``random.Random`` draws, never global randomness. ``row`` is the row built so
far (an ``email`` derives from the attribute it names).

Values are JSON scalars: strings, numbers, booleans; dates ``"2026-05-01"``, datetimes
``"2026-05-01T14:30"`` (minutes, no zone), times ``"14:30"``; ISO strings of one kind compare in
time order as strings. ``ref`` is filled by the world (it needs the referenced keys).

Messiness on purpose (it makes tasks harder, never ambiguous; the world keeps labels and
``unique`` attributes unique by redrawing):

* person names share a small pool of surnames, and a share of them are *one-letter twins* of an
  earlier name ("Maren Okafor" and "Karen Okafor");
* company names, phrases and addresses draw from small pools, so words repeat across rows;
* optional attributes are null in a share of rows (the world applies ``optional``).
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import random
import re
from collections.abc import Callable
from typing import Any

from toolgym.synth import names as nm
from toolgym.synth.domains.ontology import Attribute

Generator = Callable[[random.Random, dict[str, Any]], Any]

GIVEN = (
    "Maren", "Karen", "Jonas", "Tomas", "Aisha", "Alisha", "Pedro", "Petra", "Lena", "Lina", "Omar", "Amir",
    "Sofia", "Sonia", "Daniel", "Danielle", "Ivan", "Ivana", "Mei", "Kai", "Noor", "Nora", "Ravi", "Rafi",
    "Elena", "Helena", "Marco", "Mario", "Hana", "Hanna", "Felix", "Fenix", "Ada", "Ida", "Leon", "Leona",
    "Yusuf", "Chloe", "Tariq", "Greta", "Bruno", "Ines", "Oskar", "Priya", "Samuel", "Zara", "Theo", "Vera",
)  # fmt: skip
SURNAMES = (
    "Okafor", "Lindqvist", "Moreau", "Tanaka", "Haddad", "Novak", "Fischer", "Silva", "Kowalski", "Brennan",
    "Adeyemi", "Castillo", "Petrov", "Nakamura", "Osei", "Varga", "Dubois", "Mensah", "Reyes", "Hale",
)  # fmt: skip
_COMPANY = ("Logistics", "Holdings", "Partners", "Supplies", "Labs", "Group", "Works", "Trading", "& Sons", "Co.")
_STREETS = ("Street", "Road", "Lane", "Avenue", "Close", "Way", "Row")
_EMAIL_DOMAINS = ("example.com", "mail.example.org", "post.example.net")
_BOUND = re.compile(r"^(now|today)(?:([+-]\d+)([mhdy]))?$")
_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I or O: codes never look like digits


def resolve_time(bound: str, now: dt.datetime) -> dt.datetime:
    """``now``/``today`` with an optional offset (``now+24h``, ``today-65y``), or an ISO date/datetime.

    Raises:
        ValueError: Neither form.
    """
    m = _BOUND.match(bound)
    if m is None:
        return dt.datetime.fromisoformat(bound)
    base = now if m.group(1) == "now" else dt.datetime.combine(now.date(), dt.time())
    if m.group(2) is None:
        return base
    n, unit = int(m.group(2)), m.group(3)
    if unit == "y":
        year = base.year + n
        return base.replace(year=year, day=min(base.day, 28) if base.month == 2 else base.day)
    return base + dt.timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: n})


def time_value(bound: str, now: dt.datetime, date_only: bool) -> str:
    """A time operand (``now+24h``, ``today``) as the ISO string the data uses."""
    t = resolve_time(bound, now)
    return t.date().isoformat() if date_only else t.strftime("%Y-%m-%dT%H:%M")


def _num(x: float | str | None, default: float) -> float:
    return default if x is None or isinstance(x, str) else float(x)


def person_name(rng: random.Random, pool: list[str], made: list[str]) -> str:
    """A person name; a share are one-letter twins of an earlier name or share its surname."""
    if made and rng.random() < 0.15:
        given, _, surname = _pick(rng, made).partition(" ")
        i = int(rng.random() * len(given))
        letter = _pick(rng, "aeinorstlm" if i else "BDHKLMNRST")
        return given[:i] + letter + given[i + 1 :] + " " + surname
    return f"{_pick(rng, GIVEN)} {_pick(rng, pool)}"


def _pick(rng: random.Random, seq: Any) -> Any:
    return seq[int(rng.random() * len(seq))]  # 3x cheaper than rng.choice: values are the hot path


def _slots(a: Attribute) -> list[list[str]] | None:
    """The choices of each position of a code (letters, digits, literals) or a phrase (its parts)."""
    if a.kind == "code":
        pattern = a.pattern or "AA-9999"
        return [list(_LETTERS) if ch == "A" else list("0123456789") if ch == "9" else [ch] for ch in pattern]
    if a.kind == "phrase" and a.parts:
        return [list(p) for p in a.parts if p]
    return None


def unique_draw(a: Attribute, n: int, rng: random.Random) -> list[str] | None:
    """``n`` distinct values of a code or phrase attribute, drawn without replacement, or None.

    None when the kind has no enumerable value space. When the space holds fewer than ``n``
    values, every value comes once, then numbered ones (``"R-07 2"``). Drawing indices into the
    product of the positions' choices costs ``n`` draws, where redrawing on collisions costs
    ever more as the space fills up.
    """
    slots = _slots(a)
    if slots is None:
        return None
    total = 1
    for choices in slots:
        total *= len(choices)
    sep = "" if a.kind == "code" else " "
    out = []
    for index in rng.sample(range(total), min(n, total)):
        parts = []
        for choices in reversed(slots):
            index, i = divmod(index, len(choices))
            parts.append(choices[i])
        out.append(sep.join(reversed(parts)))
    # a space smaller than the table: every value once, then numbered ones (still unique)
    return out + [f"{out[i % total]} {i // total + 1}" for i in range(total, n)]


def _numeric(a: Attribute) -> Generator:
    """int, money, rating, percent, duration."""
    if a.kind == "money":
        lo, hi = _num(a.min, 1), _num(a.max, 1000)
        return lambda rng, row: round(lo + (hi - lo) * rng.random(), 2)
    if a.kind == "rating":
        lo, hi, step = _num(a.min, 1), _num(a.max, 5), a.step or 0.5
        n = max(0, round((hi - lo) / step))
        return lambda rng, row: round(lo + step * int(rng.random() * (n + 1)), 2)
    if a.kind == "duration":
        lo, hi, step = int(_num(a.min, 15)), int(_num(a.max, 120)), int(a.step or 15)
        slots_n = max(0, (hi - lo) // step) + 1
        return lambda rng, row: lo + step * int(rng.random() * slots_n)
    lo_i, hi_i = int(_num(a.min, 0)), int(_num(a.max, 100 if a.kind == "percent" else 50))
    span = max(0, hi_i - lo_i) + 1
    return lambda rng, row: lo_i + int(rng.random() * span)


def _temporal(a: Attribute, now: dt.datetime) -> Generator:
    """date, datetime, time."""
    if a.kind == "time":
        h0, h1 = a.hours or (8, 20)
        step = int(a.step or 15)
        slots = [f"{h:02d}:{m:02d}" for h in range(h0, h1) for m in range(0, 60, step)]
        return lambda rng, row: _pick(rng, slots)
    lo = resolve_time(str(a.min), now) if a.min is not None else now - dt.timedelta(days=365)
    hi = resolve_time(str(a.max), now) if a.max is not None else now + dt.timedelta(days=30)
    days = max(0, (hi.date() - lo.date()).days)
    start = lo.date()
    if a.kind == "date":
        first = start.toordinal()
        return lambda rng, row: dt.date.fromordinal(first + int(rng.random() * (days + 1))).isoformat()
    h0, h1 = a.hours or (8, 20)
    step = int(a.step or 15)
    slots = [f"T{h:02d}:{m:02d}" for h in range(h0, h1) for m in range(0, 60, step)]
    first = start.toordinal()
    return lambda rng, row: dt.date.fromordinal(first + int(rng.random() * (days + 1))).isoformat() + _pick(rng, slots)


def generator(a: Attribute, now: dt.datetime, world_rng: random.Random) -> Generator:
    """The value generator of one attribute in one world (see the module docstring).

    Args:
        a: The attribute (its kind and kind parameters).
        now: The world's fixed present (bounds like ``today-60d`` resolve against it).
        world_rng: The world's generator: pools (cities, surnames) are drawn from it once here.

    Returns:
        ``(rng, row) -> value``; for ``ref`` a placeholder returning None (the world fills refs).
    """
    k = a.kind
    if k == "person_name":
        pool = world_rng.sample(SURNAMES, 8) + [nm.word(world_rng) for _ in range(6)]
        made: list[str] = []

        def person(rng: random.Random, row: dict[str, Any]) -> str:
            name = person_name(rng, pool, made)
            made.append(name)
            return name

        return person
    if k == "company_name":
        return lambda rng, row: f"{nm.word(rng)} {_pick(rng, _COMPANY)}"
    if k == "email":
        src = a.source

        def email(rng: random.Random, row: dict[str, Any]) -> str:
            base = row.get(src) if src else None
            local = ".".join(re.findall(r"[a-z]+", str(base).lower())) if base else nm.word(rng).lower()
            if rng.random() < 0.3:
                local += str(rng.randrange(10, 99))
            return f"{local}@{_pick(rng, _EMAIL_DOMAINS)}"

        return email
    if k == "phone":
        return lambda rng, row: f"+1-555-{rng.randrange(10000):04d}"
    if k in ("address", "city"):
        cities = [nm.city_name(world_rng) for _ in range(world_rng.randint(5, 9))]
        if k == "city":
            return lambda rng, row: _pick(rng, cities)
        return lambda rng, row: (
            f"{1 + int(rng.random() * 199)} {nm.word(rng)} {_pick(rng, _STREETS)}, {_pick(rng, cities)}"
        )
    if k == "code":
        code_slots = _slots(a) or []
        return lambda rng, row: "".join([_pick(rng, c) for c in code_slots])
    if k == "phrase":
        parts = a.parts or [[]]
        slots = [list(p) for p in parts if p]
        return lambda rng, row: " ".join([_pick(rng, p) for p in slots])
    if k in ("text", "enum"):
        values = list(a.values or [])
        weights = list(a.weights) if a.weights else None
        if weights:
            cum = list(itertools.accumulate(weights))
            top = cum[-1]
            return lambda rng, row: values[min(bisect.bisect_right(cum, rng.random() * top), len(values) - 1)]
        return lambda rng, row: _pick(rng, values)
    if k == "flag":
        p = 0.5 if a.p is None else a.p
        return lambda rng, row: rng.random() < p
    if k in ("int", "money", "rating", "percent", "duration"):
        return _numeric(a)
    if k in ("date", "datetime", "time"):
        gen = _temporal(a, now)
        return gen if a.after is None else _not_before(gen, a.after)
    return lambda rng, row: None  # ref: filled by the world


def _not_before(gen: Generator, after: str) -> Generator:
    """``gen`` redrawn (up to 30 times) until it is not before the row's ``after`` value, else that day.

    Dates and datetimes compare on their common prefix (a date is not before a datetime of the
    same day), so an end never precedes its start; a start left null constrains nothing.
    """

    def draw(rng: random.Random, row: dict[str, Any]) -> Any:
        value = gen(rng, row)
        base = row.get(after)
        if base is None:
            return value
        for _ in range(30):
            n = min(len(value), len(base))
            if value[:n] >= base[:n]:
                return value
            value = gen(rng, row)
        # the start itself (as a date, for a date after a datetime), or a time on the start's day
        return base[: len(value)] if len(value) <= len(base) else base + value[len(base) :]

    return draw


NUMERIC = frozenset({"int", "money", "rating", "percent", "duration"})
TEMPORAL = frozenset({"date", "datetime", "time"})
#: Kinds whose values are free strings (filters match them exactly).
STRINGS = frozenset({"person_name", "company_name", "email", "phone", "address", "city", "code", "phrase", "text"})
