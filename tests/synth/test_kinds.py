"""Every kind the README claims ships, and the trip constraint kinds bind.

"Binds" (the criterion ``toolgym bench synth`` reports): dropping the constraint from a shipped
task changes the optimum into a plan the full task rejects. The transport-modes rule binds in
*every* task that carries it: it bans every connection of one move of the optimum found
without it.
"""

from pathlib import Path

import pytest

from toolgym.bench.synth import kind_mix, kind_table
from toolgym.data.dataset import Dataset
from toolgym.synth import get_family
from toolgym.synth.config import SynthConfig
from toolgym.synth.run import synthesize
from toolgym.synth.trip.solver import cheapest_plan, view_of_world
from toolgym.synth.trip.tasks import constraint_labels

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
# The README's words for each trip constraint kind → the labels of constraint_labels.
TRIP_CLAIMS = {
    "a budget just above the world's optimum": ["budget"],
    "rating floors": ["min_rating (hotel)", "min_rating (restaurant)"],
    "opening days": ["open"],
    "weather rules": ["weather_indoor"],
    "a hotel-price tier rule": ["tiered_day"],
    "cuisine and category requirements": ["cuisine", "category"],
    "allowed transport modes": ["modes"],
}
CODE_CLAIMS = {
    "statistics under conditions": ["stat", "count"],
    "group-by + best group": ["argmax"],
    "per-group and per-period comparisons": ["compare"],
    "replaying an event log with rejections": ["simulate"],
    "small combinatorial searches": ["pairs"],
    "number-theory counts": ["numbers"],
}


@pytest.fixture(scope="module")
def trip_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("kinds") / "trip.duckdb"
    synthesize(SynthConfig(family="trip", count=100, seed=4, workers=1), out)
    return out


def _flat(text):
    return " ".join(text.split())


def test_every_trip_kind_the_readme_names_ships_and_binds(trip_run):
    (rows,) = kind_mix(trip_run).values()
    shipped = sum((r.counts for r in rows), start=type(rows[0].counts)())
    binds = sum((r.binds for r in rows), start=type(rows[0].binds)())
    for phrase, labels in TRIP_CLAIMS.items():
        assert phrase in _flat(README), phrase
        for label in labels:
            assert shipped[label] > 0, f"{label} ({phrase}) never ships"
            assert label == "budget" or binds[label] > 0, f"{label} ({phrase}) never binds"
    for r in rows:  # the modes rule binds wherever it ships, and ships at 4-5 in most tasks
        assert r.binds["modes"] == r.counts["modes"]
        if r.difficulty >= 4:
            assert r.counts["modes"] >= 0.6 * r.tasks


def test_modes_rule_bans_a_move_of_the_unconstrained_optimum(trip_run):
    """Independent of the verifier: some move of the optimum without the rule has no allowed connection."""
    fam = get_family("trip")
    checked = 0
    with Dataset(trip_run, read_only=True) as ds:
        for tid in ds.task_ids("trip", difficulties=[4, 5]):
            task = ds.task(tid)
            cons = task.params["constraints"]
            rule = next((c for c in cons if c["kind"] == "connected" and c["modes"]), None)
            if rule is None:
                continue
            world = fam.load_world(ds.world_data(task.world_id))
            rest = [c for c in cons if c is not rule] + [{"kind": "connected", "modes": None, "max_hours": None}]
            cost, plan = cheapest_plan(view_of_world(world), rest, world.cities)
            cities = [d["city"] for d in plan]
            allowed = [
                [
                    o
                    for o in world.transport(a, b)
                    if o["mode"] in rule["modes"] and (rule["max_hours"] is None or o["hours"] <= rule["max_hours"])
                ]
                for a, b in zip(cities, cities[1:], strict=False)
            ]
            assert [] in allowed, (tid, rule, cities)
            assert cost <= task.meta["optimum"]  # the rule can only make the optimum dearer
            checked += 1
    assert checked >= 10


def test_constraint_labels():
    cons = [
        {"kind": "days"},
        {"kind": "connected", "modes": None, "max_hours": None},
        {"kind": "min_rating", "what": "hotel", "value": 3.5},
        {"kind": "connected", "modes": ["bus"], "max_hours": None},
        {"kind": "budget", "max_total": 9},
    ]
    assert constraint_labels(cons) == ["min_rating (hotel)", "modes", "budget"]


def test_kind_table_renders(trip_run):
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(kind_table(trip_run))
    text = console.export_text()
    assert "modes" in text and "binds" in text and "d5" in text


@pytest.mark.slow
def test_every_code_kind_the_readme_names_ships(tmp_path):
    out = tmp_path / "code.duckdb"
    synthesize(SynthConfig(family="code", count=40, seed=0, workers=2), out)
    (rows,) = kind_mix(out).values()
    shipped = sum((r.counts for r in rows), start=type(rows[0].counts)())
    for phrase, labels in CODE_CLAIMS.items():
        assert phrase in _flat(README), phrase
        for label in labels:
            assert shipped[label] > 0, f"{label} ({phrase}) never ships"
    with Dataset(out, read_only=True) as ds:
        queries = [ds.task(t).params["query"] for t in ds.task_ids("code")]
    refs = [c["ref"]["t"] for q in queries for c in q.get("where", [])]
    assert {"E", "A"} & set(refs), "no shipped task joins"
    assert any(q.get("mode") == "periods" for q in queries), "no per-period comparison ships"
