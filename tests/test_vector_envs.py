"""Registry-wide (issue 8, fault 8): every env id runs in Sync and Async vector envs, shared memory on and off.

The observation space is a real ``spaces.Text`` whose charset covers every character the env
emits, so Gymnasium's shared-memory transport (``flatten`` into int32 charset indices) and
``gymnasium.spaces.utils.flatten`` work on every observation.
"""

import gymnasium as gym
import pytest
from gymnasium.spaces.utils import flatten, unflatten

import toolgym
from toolgym.envs import markup as mk

IDS = sorted(toolgym.ENV_IDS)


def _check(venv, obs):
    space = venv.single_observation_space
    for o in obs:
        assert space.contains(o) and unflatten(space, flatten(space, o)) == o


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize(
    ("vector", "shared"), [("sync", False), ("async", True), ("async", False)], ids=["sync", "async-shm", "async"]
)
def test_vector_envs_reset_and_step(env_id, vector, shared):
    fns = [lambda: gym.make(env_id, difficulty=1) for _ in range(2)]
    venv = gym.vector.SyncVectorEnv(fns) if vector == "sync" else gym.vector.AsyncVectorEnv(fns, shared_memory=shared)
    try:
        obs, info = venv.reset(seed=[1, 2])
        assert all(o.endswith(mk.ASSISTANT) for o in obs) and obs[0] != obs[1]
        _check(venv, obs)
        obs, reward, term, trunc, info = venv.step(["no call", mk.render_action([("日<|end|>", {})])])
        assert list(reward) == [0.0, 0.0] and "no tool call" in obs[0] and "\\u65e5\\u003c|end|>" in obs[1]
        _check(venv, obs)
    finally:
        venv.close()


def test_issue_input_async_vector_env_on_a_dataset(trip_dataset):
    """The issue's input: the system text's U+2026 killed the shared-memory worker with KeyError."""
    venv = gym.vector.AsyncVectorEnv([lambda: gym.make("toolgym/TripPlanning-v1", dataset=trip_dataset)] * 2)
    try:
        obs, info = venv.reset(seed=[1, 2])
        assert all("…" in o for o in obs)
        _check(venv, obs)
    finally:
        venv.close()
