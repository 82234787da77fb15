"""Trip planning: world, tools, tasks, and a verifier that accepts every valid plan and only those."""

import datetime as dt
import itertools
import random

import pytest

from toolgym.envs.tools import Toolset
from toolgym.synth import get_family
from toolgym.synth.candidate import build_task
from toolgym.synth.trip.solver import cheapest_plan, view_of_world
from toolgym.synth.trip.world import TripWorld, generate
from toolgym.verifiers.verdict import verify

FAM = get_family("trip")


def make(seed, difficulty):
    world = FAM.make_world(seed, difficulty)
    for k in range(10):
        draft = FAM.make_task(world, difficulty, random.Random(seed * 100 + k))
        if draft is not None:
            return world, build_task(FAM, "w", f"t{seed}", difficulty, "train", draft)
    raise AssertionError("no feasible task")


def oracle(plan, cons, world):
    """A literal, slow transcription of the prompt's rules: a third reading of the constraints."""
    kinds = {c["kind"]: c for c in cons}
    days = kinds["days"]
    if len(plan) != days["n_days"]:
        return False
    start = dt.date.fromisoformat(days["start_date"])
    total = 0
    seen = []
    for i, d in enumerate(plan):
        if d["date"] != (start + dt.timedelta(days=i)).isoformat():
            return False
        recs = {}
        for slot, kind in (
            ("hotel", "hotel"),
            ("lunch", "restaurant"),
            ("attraction", "attraction"),
            ("dinner", "restaurant"),
        ):
            hit = world.venue(d[slot])
            if hit is None or hit[0] != kind or hit[1]["city"] != d["city"]:
                return False
            recs[slot] = hit[1]
            seen.append(d[slot])
        wd = dt.date.fromisoformat(d["date"]).strftime("%a")
        for c in cons:
            k = c["kind"]
            if k == "open" and any(wd in recs[s]["closed_on"] for s in ("lunch", "attraction", "dinner")):
                return False
            if k == "min_rating":
                slots = {"hotel": ["hotel"], "restaurant": ["lunch", "dinner"], "attraction": ["attraction"]}[c["what"]]
                if any(recs[s]["rating"] < c["value"] for s in slots):
                    return False
            if k == "weather_indoor" and world.weather(d["city"], d["date"])["condition"] in c["conditions"]:
                if not recs["attraction"]["indoor"]:
                    return False
            if k == "tiered_day" and c["day"] == i + 1:
                for t in c["tiers"]:
                    if recs["hotel"]["price"] >= t["min_price"]:
                        meals = recs["lunch"]["price"] + recs["dinner"]["price"]
                        r = (recs["lunch"]["rating"], recs["dinner"]["rating"])
                        if t["max_meals"] is not None and meals > t["max_meals"]:
                            return False
                        if t["min_rating_both"] is not None and min(r) < t["min_rating_both"]:
                            return False
                        if t["min_rating_one"] is not None and max(r) < t["min_rating_one"]:
                            return False
                        if t["max_ticket"] is not None and recs["attraction"]["ticket"] > t["max_ticket"]:
                            return False
                        break
        total += (
            recs["hotel"]["price"] + recs["lunch"]["price"] + recs["dinner"]["price"] + recs["attraction"]["ticket"]
        )
        if i > 0:
            opts = world.transport(plan[i - 1]["city"], d["city"])
            for c in cons:
                if c["kind"] == "connected":
                    opts = [
                        o
                        for o in opts
                        if (not c["modes"] or o["mode"] in c["modes"])
                        and (c["max_hours"] is None or o["hours"] <= c["max_hours"])
                    ]
            if not opts:
                return False
            total += min(o["price"] for o in opts)
    if plan[0]["city"] != kinds["start_city"]["city"] or len({d["city"] for d in plan}) != len(plan):
        return False
    if len(set(seen)) != len(seen):
        return False
    for c in cons:
        if c["kind"] == "cuisine":
            slots = ["dinner"] if c["meal"] == "dinner" else ["lunch", "dinner"]
            if not any(world.venue(d[s])[1]["cuisine"] == c["cuisine"] for d in plan for s in slots):
                return False
        if c["kind"] == "category" and not any(
            world.venue(d["attraction"])[1]["category"] == c["category"] for d in plan
        ):
            return False
        if c["kind"] == "budget" and total > c["max_total"]:
            return False
    return True


def neighbours(world, plan):
    """Plans one venue away from ``plan``: each slot swapped for every venue of its kind in that city."""
    out = []
    slots = (("hotel", "hotel"), ("lunch", "restaurant"), ("attraction", "attraction"), ("dinner", "restaurant"))
    for i, d in enumerate(plan):
        for slot, kind in slots:
            for rec in world.by_kind[kind][d["city"]]:
                out.append([dict(x, **({slot: rec["name"]} if j == i else {})) for j, x in enumerate(plan)])
    return out


@pytest.mark.parametrize(("seed", "difficulty"), [(1, 1), (2, 2), (3, 3), (4, 5)])
def test_verifier_agrees_with_a_literal_oracle_on_thousands_of_plans(seed, difficulty):
    world, task = make(seed, difficulty)
    cons = task.params["constraints"]
    planted = task.meta["planted"]
    rng = random.Random(seed)
    plans = [FAM.random_answer(world, task, rng) for _ in range(1500)] + neighbours(world, planted)
    agree = [verify(task.verifier_spec, p, world).passed == oracle(p, cons, world) for p in plans]
    assert all(agree), f"{agree.count(False)} disagreements"
    assert any(oracle(p, cons, world) for p in plans[1500:]), "no valid neighbour of the optimum was tried"


def test_every_valid_plan_passes_not_only_the_reference():
    world, task = make(5, 2)
    cons = task.params["constraints"]
    planted = task.meta["planted"]
    alternatives = [alt for alt in neighbours(world, planted) if alt != planted and oracle(alt, cons, world)]
    budget = next(c for c in cons if c["kind"] == "budget")
    no_budget = {"kind": "itinerary", "constraints": [c for c in cons if c["kind"] != "budget"]}
    assert verify(task.verifier_spec, planted, world).passed
    for alt in alternatives:
        assert verify(task.verifier_spec, alt, world).passed
    assert budget["max_total"] >= task.meta["optimum"]
    assert verify(no_budget, planted, world).passed


def test_solver_optimum_is_the_true_minimum_by_exhaustive_search():
    world, task = make(7, 1)
    cons = [c for c in task.params["constraints"] if c["kind"] != "budget"]
    spec = {"kind": "itinerary", "constraints": cons}
    days = next(c for c in cons if c["kind"] == "days")
    start = next(c for c in cons if c["kind"] == "start_city")["city"]
    dates = [(dt.date.fromisoformat(days["start_date"]) + dt.timedelta(days=i)).isoformat() for i in range(2)]

    def day_options(city, date):
        bk = world.by_kind
        for h, lu, a, di in itertools.product(
            bk["hotel"][city], bk["restaurant"][city], bk["attraction"][city], bk["restaurant"][city]
        ):
            if lu is not di:
                yield (
                    {
                        "date": date,
                        "city": city,
                        "hotel": h["name"],
                        "lunch": lu["name"],
                        "attraction": a["name"],
                        "dinner": di["name"],
                    },
                    h["price"] + lu["price"] + di["price"] + a["ticket"],
                )

    best = None
    for city in world.cities:
        if city == start or not world.transport(start, city):
            continue
        move = min(o["price"] for o in world.transport(start, city))
        for d1, c1 in day_options(start, dates[0]):
            for d2, c2 in day_options(city, dates[1]):
                cost = c1 + c2 + move
                if (best is None or cost < best) and verify(spec, [d1, d2], world).passed:
                    best = cost
    assert best == task.meta["optimum"] == cheapest_plan(view_of_world(world), cons, world.cities)[0]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (None, "non-empty list"),
        ([], "non-empty list"),
        ("Plan: day 1 …", "non-empty list"),
        ([{"date": "2026-01-01"}], "exactly the keys"),
        ([{"date": 1, "city": 2, "hotel": 3, "lunch": 4, "attraction": 5, "dinner": 6}], "must be a string"),
    ],
)
def test_malformed_answers_score_zero(answer, reason):
    world, task = make(1, 1)
    v = verify(task.verifier_spec, answer, world)
    assert v.score == 0.0 and reason in v.reason


def test_padded_and_multi_answers_score_zero():
    world, task = make(2, 1)
    plan = task.meta["planted"]
    assert verify(task.verifier_spec, plan, world).passed
    extra = dict(plan[-1], date=(dt.date.fromisoformat(plan[-1]["date"]) + dt.timedelta(days=1)).isoformat())
    assert not verify(task.verifier_spec, [*plan, extra], world).passed  # padded with a day
    assert not verify(task.verifier_spec, [plan, plan], world).passed  # several answers at once
    assert not verify(task.verifier_spec, [dict(d, note="x") for d in plan], world).passed  # extra keys


def test_each_perturbation_breaks_the_plan_for_its_own_reason():
    world, task = make(3, 3)
    plan = task.meta["planted"]
    reasons = [verify(task.verifier_spec, p, world).reason for p in FAM.perturb(world, task, plan, random.Random(0))]
    assert len(reasons) == 6
    expected = ["is in", "appears twice", "days, not", "must be", "must be", "no attraction named"]
    for want, got in zip(expected, reasons, strict=True):
        assert want in got, (want, got)


def test_world_is_deterministic_and_names_are_unique():
    assert generate(11, 4) == generate(11, 4) and generate(11, 4) != generate(12, 4)
    world = TripWorld(generate(11, 5))
    names = [r["name"] for k in ("hotels", "restaurants", "attractions") for r in world.data[k]]
    assert len(names) == len(set(names)) == len(world.venues)
    assert not set(names) & set(world.cities)


def test_tools_paginate_and_explain_errors():
    world = TripWorld(generate(2, 5))
    ts = Toolset(FAM.tools({"weather": True}))
    city = world.cities[0]
    ok, first = ts.call(world, "get_hotels_by_city", {"city": city})
    assert ok and first["page"] == 1 and len(first["hotels"]) == world.page_size
    pages = [
        ts.call(world, "get_hotels_by_city", {"city": city, "page": p})[1]["hotels"]
        for p in range(1, first["pages"] + 1)
    ]
    assert sum(pages, []) == [h["name"] for h in world.by_kind["hotel"][city]]
    assert ts.call(world, "get_hotels_by_city", {"city": city, "page": 99}) == (
        False,
        f"page 99 does not exist; there are {first['pages']} pages",
    )
    assert "did you mean" in ts.call(world, "get_hotels_by_city", {"city": city.lower()})[1]
    assert "greater than or equal to 1" in ts.call(world, "get_all_cities", {"page": 0})[1]
    hotel = world.data["hotels"][0]["name"]
    assert "is one of the hotels, not the restaurants" in ts.call(world, "get_restaurant_info", {"name": hotel})[1]
    assert "forecasts cover" in ts.call(world, "get_weather", {"city": city, "date": "1999-01-01"})[1]
    assert "get_weather" not in Toolset(FAM.tools({"weather": False})).tools


def test_prompts_state_every_rule_with_varied_wording():
    texts = set()
    for seed in range(6):
        world, task = make(seed, 4)
        kinds = {c["kind"] for c in task.params["constraints"]}
        assert str(next(c for c in task.params["constraints"] if c["kind"] == "budget")["max_total"]) in task.prompt
        assert task.prompt.count("\n- ") == len(kinds - {"days", "start_city"}) + (
            sum(c["kind"] == "min_rating" for c in task.params["constraints"]) - ("min_rating" in kinds)
        )
        texts.add(task.prompt.splitlines()[0].split(" ")[0])
    assert len(texts) > 1


def test_harder_tasks_need_more_calls_and_have_larger_search_spaces():
    from toolgym.synth.candidate import synthesize_world
    from toolgym.synth.config import SynthConfig

    calls, space = {}, {}
    for d in (1, 3, 5):
        res = synthesize_world(SynthConfig(family="trip", difficulty=(d, d), tasks_per_world=2, workers=1), 0)
        shipped = [o for o in res.outcomes if o.task]
        calls[d] = max(o.trajectory.tool_calls for o in shipped)
        space[d] = max(o.task.meta["log10_candidates"] for o in shipped)
    assert calls[1] < calls[3] < calls[5] and space[1] < space[3] < space[5]


@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
def test_a_page_past_the_end_is_an_error_in_every_world(difficulty):
    """One paging behaviour, paginated world or not: the last page works, the next one says how many there are."""
    world = TripWorld(generate(difficulty, difficulty))
    ts = Toolset(FAM.tools({}))
    city = world.cities[0]
    calls = [("get_all_cities", {}, "cities")] + [
        (f"get_{kind}s_by_city", {"city": city}, f"{kind}s") for kind in ("hotel", "restaurant", "attraction")
    ]
    for name, args, key in calls:
        ok, first = ts.call(world, name, args)
        pages = first.get("pages", 1)
        assert ok and first[key] and (world.page_size is None) == ("pages" not in first)
        assert ts.call(world, name, {**args, "page": pages})[0]
        for past in (pages + 1, 9 + pages):
            ok, err = ts.call(world, name, {**args, "page": past})
            want = "there is 1 page" if pages == 1 else f"there are {pages} pages"
            assert not ok and err == f"page {past} does not exist; {want}", err
        ok, err = ts.call(world, name, {**args, "page": True})
        assert not ok and "a boolean is not a number" in err
