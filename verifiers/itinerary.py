"""Constraint checks for itineraries: any plan that meets every constraint passes.

``{"kind": "itinerary", "constraints": [...]}``. The answer is checked against the world
(``state``), which must offer four lookups: ``venue(name) -> (kind, record) | None``,
``transport(a, b) -> [options]``, ``weather(city, date) -> forecast | None`` and
``closest(name, kind) -> name | None`` (for the hint of a miss), and store its names in
canonical form. No reference plan is consulted: a different plan that satisfies everything
scores 1 just the same.

Names follow the one name rule (:mod:`toolgym.envs.naming`): every string of the plan (the
names, and the date alike) is put in canonical form (Unicode NFC, surrounding whitespace trimmed)
before any rule runs, and then matched exactly, case-sensitively, so a plan written in NFD or
with stray spaces scores as its canonical twin. An unknown venue's reason names the closest one.

This checker is written independently of the trip family's search (``synth/trip/solver.py``);
the gate "the reference scores 1" cross-checks the two on every synthesized task. Scores are
binary and the reason names the first broken rule, so a reward never pays for "most rules".

Constraint kinds: ``days``, ``start_city``, ``distinct_cities``, ``connected``, ``in_city``,
``no_repeats``, ``open``, ``weather_indoor``, ``min_rating``, ``tiered_day``, ``budget``,
``cuisine``, ``category`` (see ``toolgym/synth/trip/tasks.py`` for their wording).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from toolgym.envs import naming
from toolgym.verifiers.verdict import Verdict

KEYS = ("date", "city", "hotel", "lunch", "attraction", "dinner")
_KEYSET = frozenset(KEYS)
SLOTS = (("hotel", "hotel"), ("lunch", "restaurant"), ("attraction", "attraction"), ("dinner", "restaurant"))
_WD = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class _Plan:
    """A structurally valid answer with its venues resolved against the world (once)."""

    def __init__(self, days: list[dict[str, str]], world: Any):
        self.days = days
        self.world = world
        self.hits: list[dict[str, tuple[str, dict[str, Any]] | None]] = [
            {slot: world.venue(d[slot]) for slot, _ in SLOTS} for d in days
        ]
        self.rec: list[dict[str, dict[str, Any]]] = [
            {slot: hit[1] if hit else {} for slot, hit in row.items()} for row in self.hits
        ]
        self.weekdays = [_WD[dt.date.fromisoformat(d["date"]).weekday()] for d in days]

    def weekday(self, i: int) -> str:
        return self.weekdays[i]

    def moves(self) -> list[tuple[str, str]]:
        return [(a["city"], b["city"]) for a, b in zip(self.days, self.days[1:], strict=False)]


def _structure(answer: Any) -> str | None:
    if not isinstance(answer, list) or not answer:
        return "answer must be a non-empty list of day objects"
    for i, d in enumerate(answer, 1):
        if not isinstance(d, dict) or d.keys() != _KEYSET:
            return f"day {i} must have exactly the keys {list(KEYS)}"
        if not all(type(v) is str for v in d.values()):
            return f"day {i}: every value must be a string"
    return None


def _dates(days: list[dict[str, str]]) -> str | None:
    for i, d in enumerate(days, 1):
        try:
            dt.date.fromisoformat(d["date"])
        except ValueError:
            return f"day {i}: {d['date']!r} is not an ISO date"
    return None


def _allowed(world: Any, a: str, b: str, cons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    opts = list(world.transport(a, b))
    for c in cons:
        opts = [
            o
            for o in opts
            if (not c.get("modes") or o["mode"] in c["modes"])
            and (c.get("max_hours") is None or o["hours"] <= c["max_hours"])
        ]
    return opts


# ----------------------------------------------------------------------------- the rules
# One function per constraint kind: ``(constraint, plan, every constraint of the spec) -> the
# first broken rule's reason, or None``.


def _days(c: dict[str, Any], p: _Plan, all_cons: list[dict[str, Any]]) -> str | None:
    days = p.days
    if len(days) != c["n_days"]:
        return f"the plan has {len(days)} day{'' if len(days) == 1 else 's'}, not {c['n_days']}"
    start = dt.date.fromisoformat(c["start_date"])
    for i, d in enumerate(days):
        want = (start + dt.timedelta(days=i)).isoformat()
        if d["date"] != want:
            return f"day {i + 1} must be {want}, not {d['date']}"
    return None


def _start_city(c: dict[str, Any], p: _Plan, all_cons: list[dict[str, Any]]) -> str | None:
    if p.days[0]["city"] != c["city"]:
        return f"the trip must start in {c['city']}"
    return None


def _distinct_cities(c: dict[str, Any], p: _Plan, all_cons: list[dict[str, Any]]) -> str | None:
    cities = [d["city"] for d in p.days]
    if len(set(cities)) != len(cities):
        return "a city is used on two days"
    return None


def _connected(c: dict[str, Any], p: _Plan, all_cons: list[dict[str, Any]]) -> str | None:
    for a, b in p.moves():
        if not _allowed(p.world, a, b, [c]):
            return f"no allowed direct connection from {a} to {b}"
    return None


def _in_city(c: dict[str, Any], p: _Plan, all_cons: list[dict[str, Any]]) -> str | None:
    for i, d in enumerate(p.days):
        for slot, want in SLOTS:
            hit = p.hits[i][slot]
            if hit is None:
                return f"day {i + 1}: no {want} named {d[slot]!r}{naming.hint(p.world.closest(d[slot], want))}"
            if hit[0] != want:
                return f"day {i + 1}: {d[slot]!r} is one of the {hit[0]}s, not the {want}s"
            if hit[1]["city"] != d["city"]:
                return f"day {i + 1}: {d[slot]!r} is in {hit[1]['city']}, not {d['city']}"
    return None


def _no_repeats(c: dict[str, Any], p: _Plan, all_cons: list[dict[str, Any]]) -> str | None:
    used = [d[s] for d in p.days for s, _ in SLOTS]
    if len(set(used)) != len(used):
        return "a venue appears twice"
    return None


def _open(c: dict[str, Any], p: _Plan, all_cons: list[dict[str, Any]]) -> str | None:
    for i, r in enumerate(p.rec):
        for slot in ("lunch", "attraction", "dinner"):
            if p.weekday(i) in r[slot].get("closed_on", ()):
                return f"day {i + 1}: {p.days[i][slot]!r} is closed on {p.weekday(i)}"
    return None


def _weather_indoor(c: dict[str, Any], p: _Plan, all_cons: list[dict[str, Any]]) -> str | None:
    for i, d in enumerate(p.days):
        f = p.world.weather(d["city"], d["date"])
        if f is None:
            return f"day {i + 1}: no forecast for {d['city']} on {d['date']}"
        if f["condition"] in c["conditions"] and not p.rec[i]["attraction"].get("indoor"):
            return f"day {i + 1}: {f['condition']} in {d['city']} but {d['attraction']!r} is outdoors"
    return None


def _min_rating(c: dict[str, Any], p: _Plan, all_cons: list[dict[str, Any]]) -> str | None:
    for i, r in enumerate(p.rec):
        for slot, what in SLOTS:
            if what == c["what"] and r[slot].get("rating", 0.0) < c["value"]:
                return f"day {i + 1}: {p.days[i][slot]!r} is rated below {c['value']}"
    return None


def _tiered_day(c: dict[str, Any], p: _Plan, all_cons: list[dict[str, Any]]) -> str | None:
    i = c["day"] - 1
    if i >= len(p.days):
        return f"the plan has no day {c['day']}"
    r = p.rec[i]
    price = r["hotel"].get("price", 0)
    tier = next((t for t in c["tiers"] if price >= t["min_price"]), None)
    if tier is None:
        return None
    lunch, dinner = r["lunch"], r["dinner"]
    ratings = (lunch.get("rating", 0.0), dinner.get("rating", 0.0))
    if tier.get("max_meals") is not None and lunch.get("price", 0) + dinner.get("price", 0) > tier["max_meals"]:
        return f"day {c['day']}: meals cost more than {tier['max_meals']} for a hotel of {price}"
    if tier.get("min_rating_both") is not None and min(ratings) < tier["min_rating_both"]:
        return f"day {c['day']}: both restaurants must be rated {tier['min_rating_both']}+"
    if tier.get("min_rating_one") is not None and max(ratings) < tier["min_rating_one"]:
        return f"day {c['day']}: one restaurant must be rated {tier['min_rating_one']}+"
    if tier.get("max_ticket") is not None and r["attraction"].get("ticket", 0) > tier["max_ticket"]:
        return f"day {c['day']}: the ticket costs more than {tier['max_ticket']}"
    return None


def _budget(c: dict[str, Any], p: _Plan, all_cons: list[dict[str, Any]]) -> str | None:
    connected = [x for x in all_cons if x["kind"] == "connected"]
    total = sum(
        r["hotel"]["price"] + r["lunch"]["price"] + r["dinner"]["price"] + r["attraction"]["ticket"] for r in p.rec
    )
    for a, b in p.moves():
        opts = _allowed(p.world, a, b, connected)
        if not opts:
            return f"no allowed connection from {a} to {b}"
        total += min(o["price"] for o in opts)
    if total > c["max_total"]:
        return f"the trip costs {total}, over the budget of {c['max_total']}"
    return None


def _cuisine(c: dict[str, Any], p: _Plan, all_cons: list[dict[str, Any]]) -> str | None:
    slots = ("dinner",) if c["meal"] == "dinner" else ("lunch", "dinner")
    if not any(r[s].get("cuisine") == c["cuisine"] for r in p.rec for s in slots):
        return f"no {c['cuisine']} {'dinner' if c['meal'] == 'dinner' else 'meal'}"
    return None


def _category(c: dict[str, Any], p: _Plan, all_cons: list[dict[str, Any]]) -> str | None:
    if not any(r["attraction"].get("category") == c["category"] for r in p.rec):
        return f"no {c['category']} visited"
    return None


_Rule = Callable[[dict[str, Any], _Plan, list[dict[str, Any]]], str | None]
#: Every constraint kind and its rule (the kinds of the module docstring).
_RULES: dict[str, _Rule] = {
    "days": _days,
    "start_city": _start_city,
    "distinct_cities": _distinct_cities,
    "connected": _connected,
    "in_city": _in_city,
    "no_repeats": _no_repeats,
    "open": _open,
    "weather_indoor": _weather_indoor,
    "min_rating": _min_rating,
    "tiered_day": _tiered_day,
    "budget": _budget,
    "cuisine": _cuisine,
    "category": _category,
}


def _check(kind: str, c: dict[str, Any], p: _Plan, all_cons: list[dict[str, Any]]) -> str | None:
    rule = _RULES.get(kind)
    if rule is None:
        return f"unknown constraint kind {kind!r} (verifier bug)"
    return rule(c, p, all_cons)


# Rules that only make sense once every venue is known to exist run after in_city.
_ORDER: dict[str, int] = {"days": 0, "start_city": 1, "distinct_cities": 2, "in_city": 3, "no_repeats": 4}


def verify_itinerary(spec: dict[str, Any], answer: Any, state: Any) -> Verdict:
    """Check a plan against every constraint of the spec, in a fixed order."""
    err = _structure(answer)
    if err:
        return Verdict.fail(err)
    cons: list[dict[str, Any]] = spec["constraints"]
    if not any(c["kind"] == "in_city" for c in cons):  # venue records are needed by most rules
        cons = [*cons, {"kind": "in_city"}]
    days = [{k: naming.canon(v) for k, v in d.items()} for d in answer]
    err = _dates(days)
    if err:
        return Verdict.fail(err)
    plan = _Plan(days, state)
    ordered = sorted(cons, key=lambda c: _ORDER.get(c["kind"], 10))
    for c in ordered:
        msg = _check(c["kind"], c, plan, cons)
        if msg:
            return Verdict.fail(msg)
    return Verdict.ok(f"all {len(cons)} constraints met")
