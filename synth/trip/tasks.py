"""Trip-planning tasks: constraints by difficulty, thresholds from the world, varied prompts.

Difficulty raises the task step by step, as the DeepSeek-V3.2 workflow does: more days (so
more cities and a longer search), more constraint kinds (opening days, weather rules, a
conditional budget tier, cuisine and category requirements, allowed transport modes), a
tighter budget relative to the optimum, and (through the world) more venues, paginated lists
and distractors. Thresholds are read off the world (rating quantiles, price quantiles) so
every constraint bites without emptying the search space.

Every task is solvable by construction: the generator searches the whole world for the
cheapest plan meeting all non-budget constraints and sets the budget a little above its cost;
if no plan exists it drops optional constraints one by one, and gives up on this start city
only if even the base task is infeasible.

The allowed-transport-modes rule (difficulty 4 and 5) is drawn last and made to **bind**: it
bans every connection of one move of the optimum found without it, so the plan a policy would
choose by ignoring the rule is invalid (``binding_modes_rule``; checked by
``tests/synth/test_kinds.py``). When no binding rule leaves the task feasible, the task
ships without one; ``toolgym bench synth`` reports how often each kind ships, per difficulty
(:func:`constraint_labels`).
"""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import jinja2

from toolgym.spec import TaskDraft
from toolgym.synth.text import join_words, with_article
from toolgym.synth.trip.solver import TripView, cheapest_plan
from toolgym.synth.trip.world import MODES, WEEKDAYS, TripWorld, weekday

# (days, budget slack over the optimum, optional constraint kinds in the order they are added)
LEVELS: dict[int, tuple[int, float, tuple[str, ...]]] = {
    1: (2, 0.04, ("open", "min_rating_hotel", "cuisine")),
    2: (2, 0.05, ("open", "min_rating_hotel", "weather_indoor", "cuisine", "category")),
    3: (3, 0.08, ("open", "min_rating_hotel", "weather_indoor", "tiered_day", "category")),
    4: (3, 0.08, ("open", "min_rating_hotel", "weather_indoor", "tiered_day", "cuisine", "category", "modes")),
    5: (
        4,
        0.06,
        (
            "open",
            "min_rating_hotel",
            "min_rating_restaurant",
            "weather_indoor",
            "tiered_day",
            "cuisine",
            "category",
            "modes",
        ),
    ),
}

STRUCTURAL = frozenset({"days", "start_city", "distinct_cities", "connected", "in_city", "no_repeats"})
_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False)
INTRO_SOURCES: tuple[str, ...] = (
    "Plan a {{ n }}-day trip that starts in {{ start }} on {{ date }} ({{ wd }}).",
    "I'm starting a {{ n }}-day journey in {{ start }} on {{ wd }} {{ date }}. Please build my itinerary.",
    "Build an itinerary for {{ n }} days, beginning in {{ start }} on {{ date }}, a {{ wd }}.",
    "Starting from {{ start }} on {{ date }} ({{ wd }}), I want to travel for {{ n }} days. Plan it for me.",
)
RULE_SOURCES: dict[str, list[str]] = {
    "distinct_cities": ["Spend each day in a different city.", "Never spend two days in the same city."],
    "connected": [
        "Each day after the first, move to a city with a direct connection from the previous day's city"
        "{% if c.modes %} by {{ c.modes | or_list }}{% endif %}"
        "{% if c.max_hours is not none %} taking at most {{ c.max_hours }} hours{% endif %}.",
        "Consecutive days' cities must be linked by a direct {% if c.modes %}{{ c.modes | join('/') }} {% endif %}"
        "connection{% if c.max_hours is not none %} of at most {{ c.max_hours }} hours{% endif %}.",
    ],
    "in_city": [
        "A day's hotel, lunch and dinner restaurants and attraction must all be in that day's city.",
        "Everything you book for a day (hotel, both meals, the attraction) has to be in the city of that day.",
    ],
    "no_repeats": [
        "Never use the same hotel, restaurant or attraction twice; lunch and dinner must be at different places.",
        "No venue may appear twice in the plan (lunch and dinner included).",
    ],
    "open": [
        "Restaurants and attractions must be open on the weekday you visit them.",
        "Only pick restaurants and attractions that are not closed on that day's weekday.",
    ],
    "weather_indoor": [
        "If the forecast for a day's city is {{ c.conditions | or_list }}, that day's attraction must be indoors.",
        "On days whose forecast says {{ c.conditions | or_list }}, choose an indoor attraction.",
    ],
    "min_rating": [
        "Every {{ c.what }} must be rated at least {{ c.value }}.",
        "Only use {{ c.what }}s with a rating of {{ c.value }} or more.",
    ],
    "tiered_day": [
        "Day {{ c.day }} depends on that night's hotel price: {% for t in c.tiers %}"
        "{% if not loop.first %}; otherwise, {% endif %}if it is at least {{ t.min_price }}, "
        "{{ tier_clauses(t) | join(', ') }}{% endfor %}; a cheaper hotel has no extra rule.",
        "On day {{ c.day }}, the hotel's nightly price sets extra rules: {% for t in c.tiers %}"
        "{% if not loop.first %}; else {% endif %}at {{ t.min_price }} or more, "
        "{{ tier_clauses(t) | join(' and ') }}{% endfor %}. Below that, nothing extra applies.",
    ],
    "budget": [
        "The whole trip may cost at most {{ c.max_total }}: hotel nights, lunches, dinners, tickets, "
        "and for each move the cheapest allowed connection.",
        "Keep the total at or below {{ c.max_total }}, counting every night, meal and ticket plus the "
        "cheapest permitted connection for each change of city.",
    ],
    "cuisine": [
        "At least one {{ 'dinner' if c.meal == 'dinner' else 'meal (lunch or dinner)' }} must be {{ c.cuisine }}.",
        "Include {{ c.cuisine }} food for at least one {{ 'dinner' if c.meal == 'dinner' else 'meal' }}.",
    ],
    "category": ["Visit at least one {{ c.category }}.", "The plan must include {{ c.category | with_article }}."],
}


def tier_clauses(tier: dict[str, Any]) -> list[str]:
    """The rules of one price tier, as phrases."""
    out = []
    if tier.get("max_meals") is not None:
        out.append(f"lunch plus dinner must cost at most {tier['max_meals']}")
    if tier.get("min_rating_both") is not None:
        out.append(f"both restaurants must be rated at least {tier['min_rating_both']}")
    if tier.get("min_rating_one") is not None:
        out.append(f"at least one restaurant must be rated {tier['min_rating_one']} or more")
    if tier.get("max_ticket") is not None:
        out.append(f"the attraction ticket must cost at most {tier['max_ticket']}")
    return out


_ENV.globals["tier_clauses"] = tier_clauses
_ENV.filters["with_article"] = with_article
_ENV.filters["or_list"] = lambda items: join_words(list(items), "or")
FORMAT_SOURCE = (
    "Submit a list of {{ n }} objects, one per day in order, each with date, city, hotel, lunch, attraction "
    "and dinner, using names exactly as the tools spell them."
)
# Every wording variant becomes a macro of one template, so a prompt is one render instead of
# one per rule (each render costs ~16 µs of Jinja context set-up; this is synthesis's hot path).
_FLAT: list[str] = []
RULE_INDEX: dict[str, list[int]] = {}  # kind -> macro numbers of its variants
for _kind, _variants in RULE_SOURCES.items():
    RULE_INDEX[_kind] = list(range(len(_FLAT), len(_FLAT) + len(_variants)))
    _FLAT += _variants
PROMPT = _ENV.from_string(
    "".join(f"{{% macro i{i}(n, start, date, wd) %}}{src}{{% endmacro %}}" for i, src in enumerate(INTRO_SOURCES))
    + "".join(f"{{% macro r{k}(c) %}}{src}{{% endmacro %}}" for k, src in enumerate(_FLAT))
    + "{%- set INTROS = ["
    + ", ".join(f"i{i}" for i in range(len(INTRO_SOURCES)))
    + "] -%}"
    + "{%- set RULES = ["
    + ", ".join(f"r{k}" for k in range(len(_FLAT)))
    + "] -%}"
    + "{{ INTROS[intro](n, start, date, wd) }}\nRequirements:"
    + "{% for c, k in rules %}\n- {{ RULES[k](c) }}{% endfor %}\n"
    + FORMAT_SOURCE
)


def _q(values: list[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default method)."""
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _optional(kind: str, world: TripWorld, n_days: int, rng: random.Random) -> dict[str, Any]:
    d = world.data
    if kind == "min_rating_hotel":
        return {
            "kind": "min_rating",
            "what": "hotel",
            "value": math.floor(_q([h["rating"] for h in d["hotels"]], 0.3) * 2) / 2,
        }
    if kind == "min_rating_restaurant":
        return {
            "kind": "min_rating",
            "what": "restaurant",
            "value": math.floor(_q([r["rating"] for r in d["restaurants"]], 0.25) * 2) / 2,
        }
    if kind == "open":
        return {"kind": "open"}
    if kind == "weather_indoor":
        conds = ["rain", "storm"] if rng.random() < 0.6 else ["rain", "storm", "snow"]
        return {"kind": "weather_indoor", "conditions": conds}
    if kind == "cuisine":
        counts: dict[str, set[str]] = {}
        for r in d["restaurants"]:
            counts.setdefault(r["cuisine"], set()).add(r["city"])
        options = sorted(c for c, cities in counts.items() if len(cities) >= 2) or sorted(counts)
        return {"kind": "cuisine", "cuisine": rng.choice(options), "meal": "dinner" if rng.random() < 0.5 else "any"}
    if kind == "category":
        cats = sorted({a["category"] for a in d["attractions"]})
        return {"kind": "category", "category": rng.choice(cats)}
    if kind == "tiered_day":
        prices = [h["price"] for h in d["hotels"]]
        tickets = [a["ticket"] for a in d["attractions"]]
        meals = [r["price"] for r in d["restaurants"]]
        r_q = [r["rating"] for r in d["restaurants"]]

        def r10(x: float) -> int:
            return int(round(x, -1))

        return {
            "kind": "tiered_day",
            "day": rng.randint(2, n_days),
            "tiers": [
                {
                    "min_price": r10(_q(prices, 0.7)),
                    "max_meals": r10(2 * _q(meals, 0.55)),
                    "min_rating_both": round(_q(r_q, 0.35), 1),
                    "min_rating_one": None,
                    "max_ticket": r10(_q(tickets, 0.6)),
                },
                {
                    "min_price": r10(_q(prices, 0.35)),
                    "max_meals": None,
                    "min_rating_both": None,
                    "min_rating_one": round(_q(r_q, 0.6), 1),
                    "max_ticket": r10(_q(tickets, 0.8)),
                },
                {
                    "min_price": r10(_q(prices, 0.1)),
                    "max_meals": None,
                    "min_rating_both": None,
                    "min_rating_one": round(_q(r_q, 0.3), 1),
                    "max_ticket": None,
                },
            ],
        }
    raise KeyError(kind)


def binding_modes_rule(
    view: TripView,
    cities: list[str],
    constraints: list[dict[str, Any]],
    plan: list[dict[str, Any]],
    rng: random.Random,
) -> tuple[dict[str, Any], tuple[int, list[dict[str, Any]]]] | None:
    """An allowed-transport-modes rule that binds, with the optimum under it; None if none is feasible.

    Binding is a checked property, not a hope: the rule forbids **every** connection of one move
    of ``plan`` (the optimum without the rule), so that plan breaks the rule and a policy that
    ignores it fails. Moves are tried in random order, each with a random hour limit and then
    without one, until the rule leaves a feasible task.

    Args:
        view: The whole-world view.
        cities: Every city name, in world order (the search's order).
        constraints: The task's constraints so far (a plain ``connected`` rule among them).
        plan: The cheapest plan under ``constraints``.
        rng: The task's generator.

    Returns:
        ``({"kind": "connected", "modes": [...], "max_hours": h | None}, (optimum, plan))`` or None.
    """
    rest = [c for c in constraints if c["kind"] != "connected"]
    moves = list(itertools.pairwise(d["city"] for d in plan))
    for a, b in rng.sample(moves, len(moves)):
        banned = {o["mode"] for o in view.links[(a, b)]}
        modes = [m for m in MODES if m not in banned]
        if not modes:  # an empty list would read as "any mode"
            continue
        for max_hours in (rng.choice([4.0, 5.0, 6.0]), None):
            rule = {"kind": "connected", "modes": modes, "max_hours": max_hours}
            found = cheapest_plan(view, [*rest, rule], cities)
            if found is not None:
                return rule, found
    return None


def constraint_labels(constraints: list[dict[str, Any]]) -> list[str]:
    """The claimed kinds a task's constraints exercise, one label each, in a fixed vocabulary.

    The labels are the README's: ``budget``, ``min_rating (hotel)`` and the other rating floors,
    ``open``, ``weather_indoor``, ``tiered_day``, ``cuisine``, ``category`` and ``modes`` (a
    ``connected`` rule that restricts modes or hours). The structural rules every task has
    (days, start, distinct cities, plain connections, venues in the day's city, no repeats) are
    not listed.
    """
    out = []
    for c in constraints:
        kind = c["kind"]
        if kind == "min_rating":
            out.append(f"min_rating ({c['what']})")
        elif kind == "connected":
            if c.get("modes") or c.get("max_hours") is not None:
                out.append("modes")
        elif kind not in STRUCTURAL:
            out.append(kind)
    return out


def candidate_count(world: TripWorld, start: str, n_days: int) -> float:
    """log10 of the number of structurally plausible plans (distinct connected cities, venues in city)."""
    per_city = {}
    for c in world.cities:
        h, r, a = (len(world.by_kind[k][c]) for k in ("hotel", "restaurant", "attraction"))
        per_city[c] = h * r * max(r - 1, 0) * a

    def walk(path: list[str]) -> float:
        if len(path) == n_days:
            return 1.0
        return sum(
            per_city[c] * walk([*path, c]) for c in world.cities if c not in path and world.transport(path[-1], c)
        )

    total = per_city[start] * walk([start])
    return math.log10(total) if total > 0 else float("-inf")


def make_task(world: TripWorld, view: TripView, difficulty: int, rng: random.Random) -> TaskDraft | None:
    """Propose one task over ``world`` (``view`` is the whole-world view for the generator's search)."""
    n_days, slack, optional = LEVELS[difficulty]
    dates = world.data["dates"]
    date = dates[rng.randrange(len(dates) - n_days)]
    start = rng.choice(world.cities)
    base: list[dict[str, Any]] = [
        {"kind": "days", "start_date": date, "n_days": n_days},
        {"kind": "start_city", "city": start},
        {"kind": "distinct_cities"},
        {"kind": "connected", "modes": None, "max_hours": None},
        {"kind": "in_city"},
        {"kind": "no_repeats"},
    ]
    extra = [_optional(k, world, n_days, rng) for k in optional if k != "modes"]
    while True:
        constraints = base + extra
        found = cheapest_plan(view, constraints, world.cities)
        if found is not None:
            break
        if not extra:
            return None
        extra.pop()
    if "modes" in optional:
        bound = binding_modes_rule(view, world.cities, constraints, found[1], rng)
        if bound is not None:  # a stricter rule replaces the base one
            rule, found = bound
            constraints = [c for c in constraints if c["kind"] != "connected"] + [rule]
    optimum, plan = found
    budget = int(math.ceil(optimum * (1 + slack) / 10) * 10)
    constraints = [*constraints, {"kind": "budget", "max_total": budget}]
    prompt = render_prompt(constraints, rng)
    weather = any(c["kind"] == "weather_indoor" for c in constraints)
    return TaskDraft(
        prompt=prompt,
        params={"constraints": constraints},
        verifier_spec={"kind": "itinerary", "constraints": constraints},
        tool_config={"weather": weather, "distractor_tools": difficulty >= 4},
        meta={
            "optimum": optimum,
            "budget": budget,
            "planted": plan,
            "n_constraints": len(constraints),
            "log10_candidates": round(candidate_count(world, start, n_days), 2),
        },
    )


def render_prompt(constraints: list[dict[str, Any]], rng: random.Random, variant: int | None = None) -> str:
    """The user message: an intro, the rules in shuffled order and varied wording, the format.

    Args:
        constraints: The task's constraint specs.
        rng: Draws the intro, the rule order and each rule's wording.
        variant: Force wording ``variant`` (modulo each part's number of wordings) for the intro
            and every rule; the rng is consumed the same way. Tests render every wording so.
    """
    days = next(c for c in constraints if c["kind"] == "days")
    start = next(c for c in constraints if c["kind"] == "start_city")["city"]
    intro = rng.randrange(len(INTRO_SOURCES))
    rules = [c for c in constraints if c["kind"] in RULE_INDEX]
    rng.shuffle(rules)
    picks = [(c, rng.choice(RULE_INDEX[c["kind"]])) for c in rules]
    if variant is not None:
        intro = variant % len(INTRO_SOURCES)
        picks = [(c, RULE_INDEX[c["kind"]][variant % len(RULE_INDEX[c["kind"]])]) for c in rules]
    return PROMPT.render(
        intro=intro, n=days["n_days"], start=start, date=days["start_date"], wd=weekday(days["start_date"]), rules=picks
    )


__all__ = [
    "LEVELS",
    "WEEKDAYS",
    "binding_modes_rule",
    "candidate_count",
    "constraint_labels",
    "make_task",
    "render_prompt",
]
