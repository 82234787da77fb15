"""The cheapest itinerary that meets every constraint: the trip family's search.

One search serves two callers with different data sources:

* the task generator runs it on a view of the whole world to find the optimum cost ``C*``
  and sets the task's budget a little above it (so a valid plan exists by construction and
  near-optimal planning is required);
* the reference program runs it on a view it assembled **only from tool results**, then
  submits the plan it finds.

The itinerary *verifier* (``toolgym.verifiers.itinerary``) is separate code on purpose: the
search and the checker are two independent readings of the same constraint specs, and the
gate "reference scores 1" cross-checks them on every task.

Search: constraints factor by day except distinct cities, transport between consecutive
cities, the total budget and "at least one meal/attraction of X" requirements. So for each
(day, city) the cheapest day-combo is computed per *mask* of requirements it satisfies, then a
depth-first search over city paths combines days with a min-cost table keyed by the OR of
masks. Small worlds (≤ 8 cities, ≤ 4 days) keep it to milliseconds.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from toolgym.synth.trip.world import add_days, weekday

Combo = tuple[str, str, str, str]  # hotel, lunch, attraction, dinner


@dataclass
class TripView:
    """What a planner knows: venues per city, connections, forecasts."""

    hotels: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    restaurants: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    attractions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    links: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    weather: dict[tuple[str, str], str] = field(default_factory=dict)


def view_of_world(world: Any) -> TripView:
    """A view holding the whole world (what the generator may see)."""
    v = TripView(
        hotels=world.by_kind["hotel"],
        restaurants=world.by_kind["restaurant"],
        attractions=world.by_kind["attraction"],
        links=world.links,
    )
    for city, days in world.data["weather"].items():
        for date, f in days.items():
            v.weather[(city, date)] = f["condition"]
    return v


def by_kind(constraints: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Constraints grouped by kind."""
    out: dict[str, list[dict[str, Any]]] = {}
    for c in constraints:
        out.setdefault(c["kind"], []).append(c)
    return out


def move_options(view: TripView, a: str, b: str, cons: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Connections from a to b that the ``connected`` constraint allows."""
    opts = view.links.get((a, b), [])
    for c in cons.get("connected", []):
        if c.get("modes"):
            opts = [o for o in opts if o["mode"] in c["modes"]]
        if c.get("max_hours") is not None:
            opts = [o for o in opts if o["hours"] <= c["max_hours"]]
    return opts


def _floor(cons: dict[str, list[dict[str, Any]]], what: str) -> float:
    return max((c["value"] for c in cons.get("min_rating", []) if c["what"] == what), default=0.0)


def day_table(
    view: TripView, city: str, day: int, date: str, cons: dict[str, list[dict[str, Any]]]
) -> dict[int, tuple[int, Combo]]:
    """Cheapest day-combo in ``city`` on ``day`` (1-based) per requirement mask.

    Mask bits follow the order of ``cons["cuisine"] + cons["category"]``. Given the hotel's
    price tier, the hotel no longer interacts with the rest of the day, so only the cheapest
    hotel of each tier can be part of an optimum: at most four hotel groups are searched.
    """
    wd = weekday(date) if cons.get("open") else ""  # "" is in no closed_on list: closing days ignored
    rains = any(view.weather.get((city, date)) in c["conditions"] for c in cons.get("weather_indoor", []))
    hotels = [h for h in view.hotels.get(city, []) if h["rating"] >= _floor(cons, "hotel")]
    rests = [
        r
        for r in view.restaurants.get(city, [])
        if r["rating"] >= _floor(cons, "restaurant") and wd not in r["closed_on"]
    ]
    atts = [
        a
        for a in view.attractions.get(city, [])
        if a["rating"] >= _floor(cons, "attraction") and wd not in a["closed_on"] and (a["indoor"] or not rains)
    ]
    cuisine, category = cons.get("cuisine", []), cons.get("category", [])
    tiers = next((c["tiers"] for c in cons.get("tiered_day", []) if c["day"] == day), None) or []
    # Requirement bits a restaurant earns as lunch / as dinner, and an attraction earns.
    as_lunch = [
        sum(1 << i for i, c in enumerate(cuisine) if c["meal"] != "dinner" and r["cuisine"] == c["cuisine"])
        for r in rests
    ]
    as_dinner = [sum(1 << i for i, c in enumerate(cuisine) if r["cuisine"] == c["cuisine"]) for r in rests]
    att_bits = [
        sum(1 << (len(cuisine) + i) for i, c in enumerate(category) if a["category"] == c["category"]) for a in atts
    ]
    pairs = [
        (lu["price"] + di["price"], as_lunch[i] | as_dinner[j], lu, di)
        for i, lu in enumerate(rests)
        for j, di in enumerate(rests)
        if i != j
    ]
    groups: dict[int, dict[str, Any]] = {}  # tier index (len(tiers) = no tier) -> cheapest hotel
    for h in hotels:
        t = next((k for k, tier in enumerate(tiers) if h["price"] >= tier["min_price"]), len(tiers))
        if t not in groups or h["price"] < groups[t]["price"]:
            groups[t] = h
    table: dict[int, tuple[int, Combo]] = {}
    for t, h in groups.items():
        tier = tiers[t] if t < len(tiers) else {}
        max_ticket, max_meals = tier.get("max_ticket"), tier.get("max_meals")
        both, one = tier.get("min_rating_both"), tier.get("min_rating_one")
        best_att: dict[int, dict[str, Any]] = {}
        for a, b in zip(atts, att_bits, strict=True):
            if max_ticket is None or a["ticket"] <= max_ticket:
                if b not in best_att or a["ticket"] < best_att[b]["ticket"]:
                    best_att[b] = a
        best_pair: dict[int, tuple[int, dict[str, Any], dict[str, Any]]] = {}
        for cost, b, lu, di in pairs:
            if max_meals is not None and cost > max_meals:
                continue
            if both is not None and min(lu["rating"], di["rating"]) < both:
                continue
            if one is not None and max(lu["rating"], di["rating"]) < one:
                continue
            if b not in best_pair or cost < best_pair[b][0]:
                best_pair[b] = (cost, lu, di)
        for (mb, (meals, lu, di)), (ab, a) in itertools.product(best_pair.items(), best_att.items()):
            cost = h["price"] + meals + a["ticket"]
            mask = mb | ab
            if mask not in table or cost < table[mask][0]:
                table[mask] = (cost, (h["name"], lu["name"], a["name"], di["name"]))
    return table


def cheapest_plan(
    view: TripView, constraints: list[dict[str, Any]], cities: list[str]
) -> tuple[int, list[dict[str, Any]]] | None:
    """The minimum-cost plan meeting every constraint except the budget; None if none exists.

    Args:
        view: What the planner knows.
        constraints: The task's constraint specs (a ``budget`` among them is ignored here).
        cities: Every city name.

    Returns:
        (total cost, plan as a list of day dicts), or None.
    """
    cons = by_kind(constraints)
    days = cons["days"][0]
    n, start_date = days["n_days"], days["start_date"]
    start = cons["start_city"][0]["city"]
    dates = [add_days(start_date, i) for i in range(n)]
    full = (1 << (len(cons.get("cuisine", [])) + len(cons.get("category", [])))) - 1
    tables: dict[tuple[int, str], dict[int, tuple[int, Combo]]] = {}

    def table(i: int, city: str) -> dict[int, tuple[int, Combo]]:
        key = (i, city)
        if key not in tables:
            tables[key] = day_table(view, city, i + 1, dates[i], cons)
        return tables[key]

    best: list[Any] = [None, None]  # cost, (path, per-day masks)

    def dfs(i: int, path: list[str], acc: dict[int, tuple[int, list[Combo]]]) -> None:
        if not acc:
            return
        if i == n:
            if full in acc and (best[0] is None or acc[full][0] < best[0]):
                best[0], best[1] = acc[full][0], (list(path), acc[full][1])
            return
        lower = min(c for c, _ in acc.values())
        if best[0] is not None and lower >= best[0]:
            return
        for city in cities:
            if city in path:
                continue
            opts = move_options(view, path[-1], city, cons)
            if not opts:
                continue
            move = min(o["price"] for o in opts)
            nxt = _merge(acc, table(i, city), move)
            path.append(city)
            dfs(i + 1, path, nxt)
            path.pop()

    first = _merge({0: (0, [])}, table(0, start), 0)
    dfs(1, [start], first)
    if best[0] is None:
        return None
    path, combos = best[1]
    plan = [
        {"date": d, "city": c, "hotel": h, "lunch": lu, "attraction": a, "dinner": di}
        for d, c, (h, lu, a, di) in zip(dates, path, combos, strict=True)
    ]
    return int(best[0]), plan


def _merge(
    acc: dict[int, tuple[int, list[Combo]]], day: dict[int, tuple[int, Combo]], move: int
) -> dict[int, tuple[int, list[Combo]]]:
    out: dict[int, tuple[int, list[Combo]]] = {}
    for m1, (c1, combos) in acc.items():
        for m2, (c2, combo) in day.items():
            m, c = m1 | m2, c1 + c2 + move
            if m not in out or c < out[m][0]:
                out[m] = (c, [*combos, combo])
    return out
