"""The trip family's reference solution: a program that plans **only through tool calls**.

It is handed the task's constraint list (the structured form of the prompt) and nothing of the
world. It lists the cities, probes every connection, lists the venues of every city it could
reach in time (following pagination), reads every venue's details and the forecasts it needs,
and then runs the same min-cost search the generator used, on the view it built from tool
results. Calls are batched (up to ``BATCH`` per turn: the env's limit less the reference
margin), and each turn carries a short thought, so its run is a realistic interleaved
reasoning + tool-use trajectory for SFT.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from toolgym.envs.limits import reference_batch
from toolgym.envs.rollout import Final, Program, Step
from toolgym.errors import ReferenceSolutionError
from toolgym.synth.text import plural
from toolgym.synth.trip.solver import TripView, by_kind, cheapest_plan, move_options
from toolgym.synth.trip.world import add_days

BATCH = reference_batch()  # 75% of the env's default calls-per-turn limit: the margin every reference keeps


def _chunks(calls: list[tuple[str, dict[str, Any]]]) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    for i in range(0, len(calls), BATCH):
        yield calls[i : i + BATCH]


def _batched(calls: list[tuple[str, dict[str, Any]]], thought: str) -> Program:
    """Run calls in batches; returns their results in call order."""
    out: list[dict[str, Any]] = []
    for i, chunk in enumerate(_chunks(calls)):
        results = yield Step(chunk, thought if i == 0 else f"Next batch. {thought}")
        out.extend(r["content"] for r in results)
    return out


def _paged(calls: list[tuple[str, dict[str, Any]]], key: str, thought: str) -> Program:
    """Call list tools on page 1, then fetch any further pages; returns full lists per call."""
    first = yield from _batched(calls, thought)
    more: list[tuple[int, tuple[str, dict[str, Any]]]] = []
    for i, r in enumerate(first):
        for p in range(2, r.get("pages", 1) + 1):
            more.append((i, (calls[i][0], {**calls[i][1], "page": p})))
    lists = [list(r[key]) for r in first]
    if more:
        rest = yield from _batched([c for _, c in more], "Some lists have more pages; fetching them.")
        for (i, _), r in zip(more, rest, strict=True):
            lists[i].extend(r[key])
    return lists


def program(params: dict[str, Any]) -> Program:
    """Solve a trip task through the tools; returns the plan it submits."""
    constraints = params["constraints"]
    cons = by_kind(constraints)
    n_days, start_date = cons["days"][0]["n_days"], cons["days"][0]["start_date"]
    start = cons["start_city"][0]["city"]
    budget = cons["budget"][0]["max_total"]
    view = TripView()

    (cities,) = yield from _paged(
        [("get_all_cities", {})], "cities", f"A {n_days}-day trip from {start}. First I need every city in the region."
    )
    pairs = [(a, b) for i, a in enumerate(cities) for b in cities[i + 1 :]]
    links = yield from _batched(
        [("get_inter_city_transport", {"from_city": a, "to_city": b}) for a, b in pairs],
        "Connections decide which cities can follow each other; checking every pair (they run both ways).",
    )
    for (a, b), r in zip(pairs, links, strict=True):
        if r["options"]:
            view.links[(a, b)] = view.links[(b, a)] = r["options"]
    # Cities reachable within the trip: breadth-first over allowed connections.
    reach = {start: 0}
    frontier = [start]
    for hop in range(1, n_days):
        frontier = [c for f in frontier for c in cities if c not in reach and move_options(view, f, c, cons)]
        for c in frontier:
            reach.setdefault(c, hop)
    useful = [c for c in cities if c in reach]
    kinds = (
        ("hotel", "get_hotels_by_city", "hotels"),
        ("restaurant", "get_restaurants_by_city", "restaurants"),
        ("attraction", "get_attractions_by_city", "attractions"),
    )
    names: dict[str, dict[str, list[str]]] = {}
    for kind, fn, key in kinds:
        lists = yield from _paged(
            [(fn, {"city": c}) for c in useful],
            key,
            f"Listing the {key} of the {plural(len(useful), 'city', 'cities')} reachable in {n_days} days.",
        )
        names[kind] = dict(zip(useful, lists, strict=True))
    needs = {
        "hotel": "price and rating",
        "restaurant": "price, rating, cuisine and closing days",
        "attraction": "ticket, rating, category, indoor flag and closing days",
    }
    for kind, _, key in kinds:
        flat = [(c, n) for c in useful for n in names[kind][c]]
        infos = yield from _batched(
            [(f"get_{kind}_info", {"name": n}) for _, n in flat],
            f"I need the {needs[kind]} of every {kind} ({len(flat)} in all).",
        )
        store = getattr(view, key)
        for (c, _), info in zip(flat, infos, strict=True):
            if info["city"] == c:  # a namesake listed elsewhere would be a tool bug; trust the info
                store.setdefault(c, []).append(info)
    if cons.get("weather_indoor"):
        days = [(i, c) for c in useful for i in range(n_days) if reach[c] <= i]
        forecasts = yield from _batched(
            [("get_weather", {"city": c, "date": add_days(start_date, i)}) for i, c in days],
            "Some rules depend on the weather; checking the forecasts for the days each city could be visited.",
        )
        for f in forecasts:
            view.weather[(f["city"], f["date"])] = f["condition"]
    found = cheapest_plan(view, constraints, cities)
    if found is None or found[0] > budget:
        raise ReferenceSolutionError(
            f"reference found no plan within budget {budget} (best: {None if found is None else found[0]})"
        )
    cost, plan = found
    route = " → ".join(d["city"] for d in plan)
    return Final(
        plan,
        f"The cheapest plan that meets every rule costs {cost}, within the budget of {budget}: {route}. Submitting it.",
    )
