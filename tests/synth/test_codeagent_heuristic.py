"""The codeagent heuristic: it parses the issue, tries the one-token repairs, and solves easy tasks only."""

import random

import pytest

from toolgym.bench.synth import heuristic_reward
from toolgym.synth import get_family
from toolgym.synth.candidate import build_task
from toolgym.synth.codeagent import heuristic
from toolgym.synth.codeagent.mutate import apply, mutations

FAM = get_family("codeagent")


def _task(seed: int, difficulty: int, kind: str | None = None):
    world = FAM.make_world(seed, difficulty)
    for k in range(40):
        draft = FAM.make_task(world, difficulty, random.Random(f"{seed}-{k}"))
        if draft is not None and (kind is None or draft.meta["kinds"] == [kind]):
            return world, build_task(FAM, "w", f"codeagent-h{seed}-{k}", difficulty, "train", draft)
    raise AssertionError("no task of that kind")


def test_the_issue_becomes_a_regression_test_of_every_reported_call():
    world, task = _task(0, 3)
    rows = heuristic.reports(task.prompt)
    calls = {f"{world.package}.{s[1]}.{s[2]}" for s in task.params["symptoms"]}
    assert {r["call"].split("(")[0] for r in rows} == calls
    code = heuristic.issue_tests(rows)
    compile(code, "test_issue.py", "exec")
    assert code.count("def test_issue_") == len(rows) and "While digging" not in code
    assert heuristic.reports("no issue here") == []


def test_the_repairs_of_a_function_hold_the_undoing_of_each_token_slip_but_not_of_a_dropped_branch():
    world = FAM.make_world(0, 5)
    undone: dict[str, int] = {}
    tried: dict[str, int] = {}
    every = [
        (m, world.data["sources"][mid])
        for mid in world.data["order"]
        for m in mutations(mid, world.data["sources"][mid])
    ]
    for m, clean in every:
        if tried.get(m.kind, 0) == 12:
            continue
        buggy = apply(clean, [m])
        fixes = {buggy.replace(old, new, 1) for old, new in heuristic.repairs(buggy, m.function)}
        tried[m.kind] = tried.get(m.kind, 0) + 1
        undone[m.kind] = undone.get(m.kind, 0) + (clean in fixes)
    assert tried["dropped_branch"] and not undone["dropped_branch"]  # a missing branch is never written back
    for kind in ("comparator", "swapped_args"):  # their own inverses
        assert undone[kind] == tried[kind] > 0, kind
    # ±1 undoes ±1, except where the slip made a negative literal (``0`` → ``-1`` is ``-(1)``: ±1 gives -2 or -0)
    assert undone["off_by_one"] >= 0.75 * tried["off_by_one"] > 0
    assert heuristic.repairs("def f(:\n", "f") == []


def test_the_heuristic_repairs_a_reported_off_by_one_through_the_tools_and_not_a_dropped_branch():
    world, task = _task(2, 1, "off_by_one")
    assert heuristic_reward(FAM, task, world) == 1.0
    world, task = _task(2, 1, "dropped_branch")
    assert heuristic_reward(FAM, task, world) == 0.0


@pytest.mark.slow
def test_the_heuristic_solves_a_falling_share_with_difficulty():
    share = {}
    for d in (1, 5):
        rewards = []
        for seed in range(8):
            world, task = _task(seed, d)
            rewards.append(heuristic_reward(FAM, task, world))
        share[d] = sum(rewards) / len(rewards)
    assert share[1] >= 0.25 and share[1] > share[5], share
