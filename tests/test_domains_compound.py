"""Compound read answers of the domains family: the ranking (difficulty 2) and the breakdown (difficulty 3).

They ship across archetypes (reference 1, gates 0), their exact random-pass chance is what a
brute-force count of the random gate's whole support gives on a small world, and their
verifiers accept every correct answer and nothing else; a ranking's ties go to the lower id, and
difficulty 2 tries the ranking first two times in three.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from toolgym.synth.candidate import build_task, evaluate_candidate
from toolgym.synth.config import SynthConfig
from toolgym.synth.domains import query, tasks
from toolgym.synth.domains.family import Domains
from toolgym.synth.domains.world import DomainState
from toolgym.verifiers.verdict import verify

FAM = Domains()


def _breakdown(b: tasks.Builder) -> Any:
    for e in b.rng.sample(list(b.world.entities), len(b.world.entities)):
        draft = tasks._breakdown(b, e)
        if draft is not None:
            return draft
    return None


MAKERS = {"ranking": (2, tasks.ranking), "breakdown": (3, _breakdown)}


def _candidates(kind: str, seeds: range) -> Any:
    """(world, task) of the kind for each seed whose world hosts it."""
    difficulty, make = MAKERS[kind]
    for seed in seeds:
        world = FAM.make_world(seed, difficulty)
        draft = make(tasks.Builder(world, difficulty, random.Random(seed)))
        if draft is not None:
            yield world, build_task(FAM, f"w{seed}", f"w{seed}-t", difficulty, "train", draft)


@pytest.mark.parametrize("kind", ["ranking", "breakdown"])
def test_the_compound_kinds_ship_across_archetypes_with_the_reference_scoring_one(kind: str) -> None:
    shipped: set[str] = set()
    for world, task in _candidates(kind, range(40)):
        config = SynthConfig(family="domains", difficulty=(task.difficulty,) * 2, seed=0, workers=1)
        outcome = evaluate_candidate(FAM, task, world, random.Random(0), config)  # gates at 0, or dropped
        if outcome.status == "shipped":
            assert (
                outcome.trajectory.reward == 1.0
                and outcome.trajectory.answer == task.verifier_spec["checks"][0]["expected"]
            )
            shipped.add(world.arch.id)
        else:
            assert outcome.status == "random", outcome  # only a small table's guessable answer drops
        if len(shipped) >= 4:
            break
    assert len(shipped) >= 4, shipped


def _small(world: Any, task: Any) -> None:
    """Shrink the asked entity's table to the rows the answer rests on plus a few (the gate's N)."""
    gate = task.meta["gate"]
    if "ids_of" in gate:  # the answer's ids and others up to 12
        e, keep = gate["ids_of"], list(task.verifier_spec["checks"][0]["expected"])
        keep += [k for k in world.rows[e] if k not in keep][: 12 - len(keep)]
    else:  # the group's rows only: N_v is then the expected count itself
        e, keep = gate["counts_of"][0], [r["id"] for r in query.matching(DomainState(world), task.params["target"])]
    world.rows[e] = {k: world.rows[e][k] for k in keep}
    world._index.clear()


def test_ranking_random_pass_is_a_brute_force_count_over_every_ordered_draw() -> None:
    world, task = next(_candidates("ranking", range(40)))
    expected = task.verifier_spec["checks"][0]["expected"]
    _small(world, task)
    keys, state = list(world.rows[task.meta["gate"]["ids_of"]]), DomainState(world)
    assert set(expected) <= set(keys) and len(keys) == 12
    passing = sum(verify(task.verifier_spec, list(t), state).passed for t in itertools.permutations(keys, 3))
    assert passing == 1 and FAM.random_pass(world, task) == pytest.approx(1 / (12 * 11 * 10))
    rng = random.Random(0)  # the gate draws within that support: ordered, distinct, of the entity
    for _ in range(50):
        got = FAM.random_answer(world, task, rng)
        assert len(got) == 3 == len(set(got)) and set(got) <= set(keys)


def test_breakdown_random_pass_is_a_brute_force_count_over_every_draw() -> None:
    world, task = next(_candidates("breakdown", range(40)))
    _small(world, task)
    e, attr = task.meta["gate"]["counts_of"]
    values, state = task.meta["gate"]["values"], DomainState(world)
    tops = [len(world.index(e, attr).get(v, [])) for v in values]
    support = list(itertools.product(*(range(n + 1) for n in tops)))
    assert len(support) <= 50_000, tops
    passing = sum(verify(task.verifier_spec, dict(zip(values, c, strict=True)), state).passed for c in support)
    assert passing == 1 and FAM.random_pass(world, task) == pytest.approx(1 / len(support))
    rng = random.Random(0)
    for _ in range(50):
        got = FAM.random_answer(world, task, rng)
        assert tuple(got[v] for v in values) in set(support)


def test_the_ranking_verifier_takes_the_order_and_only_the_order() -> None:
    world, task = next(_candidates("ranking", range(40)))
    spec, state = task.verifier_spec, DomainState(world)
    ids = spec["checks"][0]["expected"]
    assert verify(spec, list(ids), state).passed
    assert verify(spec, [f" {i} " for i in ids], state).passed  # ids as names: surrounding spaces free
    wrong_order = [list(p) for p in itertools.permutations(ids) if list(p) != ids]
    for wrong in (*wrong_order, ids[:2], [*ids, ids[0]], [i.lower() for i in ids]):
        assert not verify(spec, wrong, state).passed, wrong
    assert not verify(spec, set(ids), state).passed and not verify(spec, ",".join(ids), state).passed
    for broken in FAM.perturb(world, task, ids, random.Random(0)):
        assert not verify(spec, broken, state).passed
    assert not verify(spec, FAM.bluff_answer(task, random.Random(0)), state).passed
    assert FAM.random_pass(world, task) <= 0.001
    assert "highest first" in task.prompt or "lowest first" in task.prompt


def test_the_breakdown_verifier_takes_any_key_order_and_exact_counts_only() -> None:
    world, task = next(_candidates("breakdown", range(40)))
    spec, state = task.verifier_spec, DomainState(world)
    counts: dict[str, int] = spec["checks"][0]["expected"]
    assert min(counts.values()) >= 1 and all(v in task.prompt for v in counts)
    assert verify(spec, dict(reversed(list(counts.items()))), state).passed
    assert verify(spec, {k: float(v) for k, v in counts.items()}, state).passed  # 3.0 is the number 3
    first = next(iter(counts))
    for wrong in (
        {**counts, first: counts[first] + 1},
        {**counts, first: counts[first] + 0.4},  # counts are exact: no tolerance
        {k: v for k, v in counts.items() if k != first},  # a value left out
        {**counts, "other": 1},
        {**counts, first: True},
        list(counts.values()),
        sum(counts.values()),
    ):
        assert not verify(spec, wrong, state).passed, wrong
    for broken in FAM.perturb(world, task, counts, random.Random(0)):
        assert not verify(spec, broken, state).passed, broken
    assert not verify(spec, FAM.bluff_answer(task, random.Random(1)), state).passed
    assert FAM.random_pass(world, task) <= 0.001


def test_a_tie_in_a_ranking_goes_to_the_lower_id_as_the_prompt_says() -> None:
    tied = 0
    for world, task in _candidates("ranking", range(60)):
        field, best, ids = task.params["field"], task.params["best"], task.verifier_spec["checks"][0]["expected"]
        assert "lower id" in task.prompt
        values = [world.rows[task.meta["gate"]["ids_of"]][i][field] for i in ids]
        assert values == sorted(values, reverse=best == "max")
        for (a, va), (b, vb) in itertools.pairwise(zip(ids, values, strict=True)):
            if va == vb:
                tied += 1
                assert a < b, (ids, values)
        group = query.matching(DomainState(world), task.params["target"])
        beyond = [r for r in group if r["id"] not in ids and r[field] == values[-1]]
        assert all(r["id"] > ids[-1] for r in beyond)  # the cut: a tie with the third goes to the lower id
    assert tied >= 3  # the rule is exercised, not only stated


def test_difficulty_2_tries_the_ranking_first_two_times_in_three() -> None:
    kinds: dict[str, int] = {"ranking": 0, "select": 0}
    for seed in range(30):
        world = FAM.make_world(seed, 2)
        for k in range(6):
            draft = FAM.make_task(world, 2, random.Random(seed * 10 + k))
            if draft is not None and draft.meta["kind"] in kinds:
                kinds[draft.meta["kind"]] += 1
    share = kinds["ranking"] / sum(kinds.values())
    assert 0.5 < share < 0.75, kinds  # 2/3 where a world hosts a ranking; select is the fallback
