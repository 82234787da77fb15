"""Trajectory: equality compares what is stored (not the runtime ``info``), and ``text`` edges."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.data.dataset import Dataset
from toolgym.envs.rollout import ProgramPolicy, run_episode
from toolgym.envs.toolenv import ToolEnv
from toolgym.spec import Trajectory
from toolgym.synth import get_family

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def trajectories(draw: st.DrawFn) -> Trajectory:
    actions = draw(st.lists(st.text(), max_size=4))
    return Trajectory(
        task_id=draw(st.text(max_size=20)),
        actions=actions,
        observations=draw(st.lists(st.text(), min_size=len(actions) + 1, max_size=len(actions) + 1)),
        answer=draw(JSON),
        tool_calls=draw(st.integers(0, 1000)),
        reward=draw(st.floats(allow_nan=False, allow_infinity=False)),
        terminated=draw(st.booleans()),
        truncated=draw(st.booleans()),
        info=draw(st.dictionaries(st.text(max_size=8), JSON, max_size=3)),
    )


@settings(max_examples=150, deadline=None)
@given(trajectories(), st.dictionaries(st.text(max_size=8), JSON, max_size=3))
def test_a_dump_validate_round_trip_is_equal_whatever_the_info(traj, other_info):
    back = Trajectory.model_validate_json(traj.model_dump_json())
    assert back == traj and traj == back and not (back != traj)
    assert back.info == {}  # info is runtime only: never dumped
    assert Trajectory.model_validate(traj.model_dump()) == traj
    assert traj.model_copy(update={"info": other_info}) == traj
    assert back.text == traj.text


@settings(max_examples=80, deadline=None)
@given(trajectories(), st.sampled_from(["task_id", "answer", "tool_calls", "reward", "terminated", "truncated"]))
def test_any_stored_field_that_differs_makes_them_unequal(traj, name):
    changed = {
        "task_id": traj.task_id + "x",
        "answer": [traj.answer],
        "tool_calls": traj.tool_calls + 1,
        "reward": traj.reward + 1.0 if abs(traj.reward) < 1e15 else 0.0,
        "terminated": not traj.terminated,
        "truncated": not traj.truncated,
    }[name]
    assert traj.model_copy(update={name: changed}) != traj
    assert traj.model_copy(update={"observations": [*traj.observations[:-1], traj.observations[-1] + "!"]}) != traj


def test_equality_with_other_types_and_hashing():
    t = Trajectory(observations=["hi"])
    assert t != "hi" and t != {"observations": ["hi"]} and t != None  # noqa: E711 - the == operator is tested
    with pytest.raises(TypeError, match="unhashable"):
        hash(t)


def test_a_replayed_reference_equals_the_stored_one(trip_dataset):
    """The stored reference and a fresh run of the family's reference program agree on every stored
    field once the replay's answer is set (``run_episode`` leaves it None); the runtime ``info``
    differs (the stored one has none) and is not compared."""
    family = get_family("trip")
    with Dataset(trip_dataset, read_only=True) as ds:
        task_id = ds.task_ids()[0]
        stored, task = ds.trajectory(task_id), ds.task(task_id)
    env = ToolEnv(family="trip", dataset=trip_dataset)
    try:
        replay = run_episode(
            env, ProgramPolicy(family.reference(task.params, task.tool_config)), options={"task_id": task_id}
        )
    finally:
        env.close()
    assert replay.info and not stored.info and replay.answer is None and stored.answer is not None
    assert replay != stored  # the answer is a stored field
    assert replay.model_copy(update={"answer": stored.answer}) == stored


def test_text_of_an_episode_with_no_observations_is_empty():
    assert Trajectory().text == ""
    assert Trajectory(observations=["p"], actions=["a"], info={}).model_copy(
        update={"observations": ["p", "o"]}
    ).text == ("pao")
    with pytest.raises(ValueError, match="one more observation than actions, got 0 observations for 1 actions"):
        _ = Trajectory(actions=["a"]).text
    with pytest.raises(ValueError, match="got 1 observations for 1 actions"):
        _ = Trajectory(observations=["p"], actions=["a"]).text
