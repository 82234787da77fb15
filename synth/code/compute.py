"""Kinds that compute rather than aggregate: simulation, combinatorial search, number theory.

``simulate`` replays the event log in time order, ``pairs`` searches pairs or triples of
entities, ``numbers`` counts integers in a range (no files at all).
"""

from __future__ import annotations

import random
from typing import Any

from toolgym.synth.code import prompts as pr
from toolgym.synth.code import queries as qy
from toolgym.synth.code.aggregate import Built, quantile
from toolgym.synth.code.world import CodeWorld


def build_simulate(world: CodeWorld, rng: random.Random, difficulty: int, n: int) -> Built | None:
    """A question about replaying the event log."""
    if "L" not in world.roles:
        return None
    e, log = world.roles["E"], world.roles["L"]
    asks = ["rejected", "record"] + (["emptied", "first_empty"] if difficulty >= 4 else [])
    ask = rng.choice(asks)
    q: dict[str, Any] = {"kind": "simulate", "ask": ask, "until": None}
    if difficulty >= 5 and rng.random() < 0.6:
        q["until"] = sorted(r["ts"] for r in world.rows["L"])[int(len(world.rows["L"]) * rng.uniform(0.5, 0.8))][:10]
    sim = qy.simulate(world, q)
    name = world.name_of("E")
    ranked = sorted(sim["rejected"].items(), key=lambda kv: (-kv[1], kv[0]))  # ties: the first name
    until = f" up to and including {q['until']} (ignore later events)" if q["until"] else ""
    extra: dict[str, Any] = {}
    if ask == "rejected":
        expected: Any = sum(sim["rejected"].values())
        question, answer = f"How many `{log.by_kind('event')[0].values[1]}` events are rejected in total?", "integer"
        ok = expected > 0
    elif ask == "record":
        expected = {"name": ranked[0][0], "count": ranked[0][1]}
        question, answer = f"Which {e.noun} has the most rejected events, and how many?", "record"
        extra = {
            "fields": f'{{"name": <its `{name}`>, "count": <its number of rejected events>}}',
            "runner_up": ranked[1][0],
            "record": "name_count",
        }
        ok = ranked[0][1] > (ranked[1][1] if difficulty < 3 else 0)  # from 3, ties follow the stated rule
    elif ask == "emptied":
        expected = sorted(sim["first_empty"])
        question, answer = f"Which {e.plural} reach a level of exactly 0 at some point? Give their `{name}`s.", "names"
        ok = 2 <= len(expected) <= len(world.rows["E"]) - 2
    else:
        options = sorted(sim["first_empty"])
        if not options:
            return None
        q["item"] = rng.choice(options)
        expected = sim["first_empty"][q["item"]]
        question = (
            f'When does the {e.noun} whose `{name}` is "{q["item"]}" first reach a level of exactly 0? '
            "Give the `ts` of that event."
        )
        answer, ok = "string", True
    if not ok:
        return None
    add, remove = log.by_kind("event")[0].values
    text = pr.question(
        "simulate",
        rng,
        log=world.file_of["L"],
        until=until,
        noun=e.noun,
        level=e.by_kind("level")[0].name,
        efile=world.file_of["E"],
        add=add,
        remove=remove,
        qty=log.by_kind("int")[0].name,
        ask=question,
    )
    return Built(q=q, answer=answer, expected=expected, text=text, roles=["E", "L"], **extra)


def build_pairs(world: CodeWorld, rng: random.Random, difficulty: int, n: int) -> Built | None:
    """Count pairs (or triples) of entities by category, spread and a floor."""
    e = world.roles["E"]
    nums = [c for c in e.by_kind("int", "float")]
    num = rng.choice(nums)
    size = 3 if difficulty >= 5 else 2
    q: dict[str, Any] = {
        "kind": "pairs",
        "size": size,
        "cat": e.by_kind("cat")[0].name,
        "num": num.name,
        "min_col": None,
        "min_value": None,
    }
    others = [c for c in nums if c is not num]
    rules = [f"their `{q['cat']}` values are all different"]
    if difficulty >= 4 and others:
        floor = rng.choice(others)
        q["min_col"], q["min_value"] = floor.name, quantile([r[floor.name] for r in world.rows["E"]], 0.3)
        rules.append(f"each has `{floor.name}` of at least {q['min_value']}")
    values = sorted(r[num.name] for r in world.rows["E"])
    gaps = sorted(b - a for a, b in zip(values, values[size - 1 :], strict=False))
    spread = quantile(gaps, rng.uniform(0.3, 0.6)) if gaps else 0
    # A half-step above a value the data can produce, so no spread equals the threshold exactly.
    q["max_spread"] = round(spread + 0.5 * 10**-num.dec, num.dec + 1) if num.dec else int(spread)
    rules.append(f"the largest and smallest `{num.name}` among them differ by at most {q['max_spread']}")
    expected = qy.pairs(world, q)
    if expected < 5 or (q["min_col"] is not None and qy.pairs(world, {**q, "min_col": None}) == expected):
        return None  # too few to be worth counting, or a floor that excludes nothing
    what = "pairs of distinct" if size == 2 else "groups of three distinct"
    text = pr.question("pairs", rng, efile=world.file_of["E"], what=what, plural=e.plural, rules="; ".join(rules))
    return Built(q=q, answer="integer", expected=expected, text=text, roles=["E"])


NUMBER_SIZES = {1: (2, 3_000), 2: (3, 10_000), 4: (3, 40_000), 5: (4, 60_000)}


def build_numbers(world: CodeWorld, rng: random.Random, difficulty: int, n: int) -> Built | None:
    """Count integers in a range meeting several number-theory predicates."""
    k, width = NUMBER_SIZES[difficulty]
    lo = rng.randrange(1, 5 * width)
    hi = lo + rng.randrange(width // 2, width)
    pool: list[list[Any]] = [
        ["mod", (a := rng.randrange(3, 14)), rng.randrange(a)],
        ["digit_sum_mod", rng.randrange(3, 10)],
        [rng.choice(("has_digit", "no_digit")), rng.randrange(10)],
        ["popcount", rng.randrange(max(2, hi.bit_length() // 3), max(3, hi.bit_length() // 2 + 1))],
        ["coprime", rng.choice((30, 42, 66, 70, 78, 105, 110, 130))],
        ["not_square"],
    ]
    preds = rng.sample(pool, k)
    q = {"kind": "numbers", "lo": lo, "hi": hi, "preds": preds}
    expected = qy.numbers(q)
    if expected < 5 or any(qy.numbers(q, drop=i) == expected for i in range(len(preds))):
        return None
    rules = "; ".join(pr.NUMBER_RULES[p[0]].format(*p[1:]) for p in preds)
    return Built(
        q=q, answer="integer", expected=expected, text=pr.question("numbers", rng, lo=lo, hi=hi, rules=rules), roles=[]
    )
