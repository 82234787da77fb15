"""Isolation of write toolsets and the reference replay behind state checks (envs/runtime.py, envs/replay.py).

The toy families of ``tests/conftest.py``: ``inventory`` (state-only verifier, its expected state
filled only by the replay) and ``ledger`` (state check filled by hand). Neither overrides
``episode_context``: the env isolates their episodes.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.data.dataset import Dataset
from toolgym.envs import markup as mk
from toolgym.envs.agents import NullAgent, RandomAgent, SubmitAgent
from toolgym.envs.replay import replay_writes, with_expected_state, write_actions
from toolgym.envs.rollout import ProgramPolicy, run_episode
from toolgym.envs.runtime import final_state, open_context
from toolgym.envs.sources import MemorySource
from toolgym.envs.toolenv import make_env
from toolgym.errors import ConfigError, ReferenceSolutionError
from toolgym.spec import Trajectory
from toolgym.synth import get_family
from toolgym.synth.candidate import build_task
from toolgym.synth.config import SynthConfig
from toolgym.synth.run import synthesize
from toolgym.verifiers.state import UNFILLED, fill_expected_state, state_hash, unfilled_state_checks, verify_state
from toolgym.verifiers.verdict import verify

INV = get_family("inventory")


@pytest.fixture(scope="module")
def inventory_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inv") / "inventory.duckdb"
    stats = synthesize(SynthConfig(family="inventory", count=10, workers=1, seed=5), path)
    assert stats.shipped == 10 and not stats.dropped, stats  # every gate passed on every candidate
    return path


def _task(seed: int = 0, difficulty: int = 2):
    world = INV.make_world(seed, difficulty)
    draft = INV.make_task(world, difficulty, random.Random(seed))
    assert draft is not None
    return world, build_task(INV, "w", f"t{seed}", difficulty, "train", draft)


def test_the_family_emits_no_hash_and_the_pipeline_fills_it_by_replay(inventory_dataset):
    world, task = _task()
    assert task.verifier_spec == {"kind": "state", "fields": ["bins"]}  # no hand computation
    with Dataset(inventory_dataset, read_only=True) as ds:
        rows = [(ds.task(r["task_id"]), ds.world_data(r["world_id"]), ds.trajectory(r["task_id"])) for r in ds.rows()]
    assert len(rows) == 10
    for task, data, traj in rows:
        world = INV.load_world(data)
        assert traj.reward == 1.0 and traj.terminated and traj.turns == 3
        # the stored hash is the state of the items moved, in order, to the end of the target bin
        bins = json.loads(json.dumps(world.data["bins"]))
        for item in task.params["items"]:
            for b in bins.values():
                if item in b:
                    b.remove(item)
            bins[task.params["to_bin"]].append(item)
        assert task.verifier_spec["expected_hash"] == state_hash({"bins": bins}, ["bins"])
        assert task.verifier_spec["expected_hash"] != state_hash(world, ["bins"])  # the task changes the world


def test_reference_scores_one_and_every_gate_agent_zero(inventory_dataset):
    env = make_env("inventory", dataset=inventory_dataset)
    with Dataset(inventory_dataset, read_only=True) as ds:
        tids = [r["task_id"] for r in ds.rows()][:4]
    for tid in tids:
        task, _ = env.source.get(tid)
        opts = {"task_id": tid}
        assert run_episode(env, ProgramPolicy(INV.reference(task.params, task.tool_config)), options=opts).reward == 1
        assert run_episode(env, NullAgent(), options=opts).reward == 0
        assert run_episode(env, SubmitAgent(INV.bluff_answer(task, random.Random(0))), options=opts).reward == 0
        for seed in range(5):
            assert run_episode(env, RandomAgent(random.Random(seed), "done"), options=opts).reward == 0
    env.close()


def _perturbed(env, tid: str, actions: list[str]) -> float:
    return run_episode(env, SubmitAgent("done", actions), options={"task_id": tid}).reward


def test_a_wrong_write_order_or_a_collateral_write_fails_the_state_check(inventory_dataset):
    with Dataset(inventory_dataset, read_only=True) as ds:
        tid = next(ds.rows())["task_id"]
        reference = ds.trajectory(tid)
    env = make_env("inventory", dataset=inventory_dataset)
    task, world = env.source.get(tid)
    _, moves = (mk.parse_action(a).tool_calls for a in reference.actions[:2])
    calls = [(c.name, c.arguments) for c in moves]
    assert _perturbed(env, tid, [mk.render_action(calls)]) == 1.0  # the writes alone: the same state
    assert _perturbed(env, tid, [mk.render_action(calls[::-1])]) == 0.0  # the same writes, in another order
    bystander = next(i for b, items in world.data["bins"].items() for i in items if i not in task.params["items"])
    home = next(b for b, items in world.data["bins"].items() if bystander in items)
    away = next(b for b in world.data["bins"] if b != home)
    collateral = [*calls, ("move_item", {"item": bystander, "from_bin": home, "to_bin": away})]
    assert _perturbed(env, tid, [mk.render_action(collateral)]) == 0.0
    # a detour of the first item (another route, more moves: "moves" is not a checked field) still passes
    first = calls[0][1]
    detour = {**first, "to_bin": next(b for b in world.data["bins"] if b not in (first["from_bin"], first["to_bin"]))}
    back = {**first, "from_bin": detour["to_bin"]}
    assert _perturbed(env, tid, [mk.render_action([("move_item", detour), ("move_item", back), *calls[1:]])]) == 1.0
    env.close()


@pytest.mark.parametrize("family_id", ["inventory", "ledger"])
def test_two_episodes_in_one_env_share_no_state(family_id):
    fam = get_family(family_id)
    world = fam.make_world(3, 2)
    draft = fam.make_task(world, 2, random.Random(3))
    task = build_task(fam, "w", "t", 2, "train", draft)
    before = json.dumps(world.to_json(), sort_keys=True)
    env = make_env(family_id, source=MemorySource([(task, world)]), messages=False)
    runs = [run_episode(env, ProgramPolicy(fam.reference(task.params, {})), options={"task_id": "t"}) for _ in "ab"]
    assert runs[0].observations == runs[1].observations  # the second episode saw the same start
    assert json.dumps(world.to_json(), sort_keys=True) == before  # the shared world was never written
    env.reset(options={"task_id": "t"})
    first = env._ctx
    env.reset(options={"task_id": "t"})
    assert env._ctx is not first and env._ctx is not world and env._ctx.to_json() == world.to_json()
    env.close()


def test_a_read_only_toolset_shares_the_world_uncopied():
    trip = get_family("trip")
    world = trip.make_world(1, 1)
    task = build_task(trip, "w", "t", 1, "train", trip.make_task(world, 1, random.Random(1)))
    assert open_context(trip, world, task, writes=False) is world
    assert open_context(trip, world, task, writes=True) is not world  # the copy is what writes would get


def test_the_first_reference_run_cannot_pass_an_unfilled_check():
    world, task = _task(1)
    env = make_env("inventory", source=MemorySource([(task, world)]), messages=False)
    ref = run_episode(env, ProgramPolicy(INV.reference(task.params, {})), options={"task_id": task.task_id})
    assert ref.reward == 0.0 and ref.info["verdict"]["reason"] == UNFILLED  # fails closed
    filled = with_expected_state(INV, task, world, ref)
    assert filled.verifier_spec["expected_hash"] and task.verifier_spec == {"kind": "state", "fields": ["bins"]}
    assert with_expected_state(INV, filled, world, ref) is filled  # nothing left to fill
    env2 = make_env("inventory", source=MemorySource([(filled, world)]), messages=False)
    again = run_episode(env2, ProgramPolicy(INV.reference(task.params, {})), options={"task_id": task.task_id})
    assert again.reward == 1.0


def test_a_write_the_replay_cannot_redo_is_a_reference_failure():
    world, task = _task(2)
    bad = mk.render_action([("move_item", {"item": "nope", "from_bin": "A", "to_bin": "B"})])
    with pytest.raises(ReferenceSolutionError, match="replaying the reference's write move_item of turn 1"):
        with_expected_state(INV, task, world, Trajectory(actions=[bad]))


def test_fill_walks_all_and_keeps_hand_filled_hashes():
    state = {"a": 1, "b": [2]}
    spec = {
        "kind": "all",
        "checks": [
            {"kind": "state", "fields": ["a"]},
            {"kind": "numeric", "expected": 3},
            {"kind": "all", "checks": [{"kind": "state", "fields": None}, {"kind": "state", "expected_hash": "x"}]},
        ],
    }
    assert unfilled_state_checks(spec) == 2
    filled = fill_expected_state(spec, state)
    assert unfilled_state_checks(filled) == 0 and unfilled_state_checks(spec) == 2  # a copy
    assert filled["checks"][0]["expected_hash"] == state_hash(state, ["a"])
    assert filled["checks"][2]["checks"][0]["expected_hash"] == state_hash(state)
    assert filled["checks"][2]["checks"][1]["expected_hash"] == "x" and filled["checks"][1] == spec["checks"][1]
    assert not verify_state({"kind": "state", "fields": None}, None, state).passed


def test_a_field_the_state_lacks_is_an_error_not_a_pass():
    """A typo in ``fields`` would compare None with None and pass everything (a newcomer's bank family did)."""
    state = {"accounts": {"a": 1}, "log": []}
    with pytest.raises(ConfigError, match="'acounts' the state lacks \\('accounts', 'log'\\)"):
        fill_expected_state({"kind": "state", "fields": ["acounts"]}, state)
    good = fill_expected_state({"kind": "state", "fields": ["accounts"]}, state)
    assert verify_state(good, None, state).passed
    v = verify_state({**good, "fields": ["acounts"]}, None, state)
    assert not v.passed and "acounts" in v.reason
    assert not verify_state(good, None, {"log": []}).passed  # a write that deleted a listed field fails


MOVES = st.lists(st.tuples(st.sampled_from(sorted(INV.make_world(0, 1).data["bins"])), st.integers(0, 40)), max_size=8)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), moves=MOVES, reads=st.booleans())
def test_replay_equals_the_writes_done_by_hand_and_leaves_the_world_alone(seed, moves, reads):
    """Property: replaying rendered write calls (reads interleaved or not) gives the state of
    doing the same moves directly, on a copy; the world the replay starts from is untouched."""
    world, task = _task(seed % 50)
    before = json.dumps(world.to_json(), sort_keys=True)
    by_hand = INV.load_world(json.loads(before))
    actions = []
    for to_bin, k in moves:
        items = [i for b in by_hand.data["bins"].values() for i in b]
        item = items[k % len(items)]
        src = next(b for b, v in by_hand.data["bins"].items() if item in v)
        if src == to_bin:
            continue
        by_hand.data["bins"][src].remove(item)
        by_hand.data["bins"][to_bin].append(item)
        by_hand.data["moves"] += 1
        call = ("move_item", {"item": item, "from_bin": src, "to_bin": to_bin})
        actions.append(mk.render_action([("list_bin", {"bin": to_bin}), call] if reads else [call]))
    actions.append(mk.render_action([("submit", {"answer": "done"})]))
    context = replay_writes(INV, world, task, actions)
    assert final_state(context).to_json() == by_hand.to_json()
    assert json.dumps(world.to_json(), sort_keys=True) == before
    expected = {**task.verifier_spec, "expected_hash": state_hash(by_hand, ["bins"])}
    assert verify(expected, "done", final_state(context)).passed


def test_write_actions_keep_the_writes_in_order_and_stop_at_submit():
    """The perturbed-answer gate replays these: reads go, turns without a write go, submit ends it."""
    actions = [
        mk.render_action([("get", {"id": "a"}), ("put", {"id": "a", "n": 1}), ("get", {"id": "b"})]),
        mk.render_action([("get", {"id": "c"})]),
        mk.render_action([("put", {"id": "b", "n": 2}), ("submit", {"answer": 1}), ("put", {"id": "c", "n": 3})]),
        mk.render_action([("put", {"id": "d", "n": 4})]),
    ]
    got = [[(c.name, c.arguments) for c in mk.parse_action(a).tool_calls] for a in write_actions(actions, ["put"])]
    assert got == [[("put", {"id": "a", "n": 1})], [("put", {"id": "b", "n": 2})]]
    assert write_actions(actions, []) == []
