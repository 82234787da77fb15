"""ToolEnv: the protocol of DESIGN.md, token-exact, with errors as observations and a turn limit that truncates."""

import gymnasium as gym
import pytest
from gymnasium.error import ResetNeeded

from toolgym.envs import chat
from toolgym.envs import markup as mk
from toolgym.envs.rollout import ProgramPolicy, run_episode
from toolgym.envs.sources import MemorySource
from toolgym.envs.toolenv import ToolEnv, make_env
from toolgym.errors import ConfigError, UnknownNameError
from toolgym.synth import get_family
from toolgym.synth.candidate import build_task


def ledger_env(**kw):
    fam = get_family("ledger")
    world = fam.make_world(3, 1)
    import random

    task = build_task(fam, "w", "ledger-t", 1, "train", fam.make_task(world, 1, random.Random(0)))
    return make_env("ledger", source=MemorySource([(task, world)]), **kw), task, world


def trip_env(trip_dataset, **kw):
    return ToolEnv(family="trip", dataset=trip_dataset, **kw)


def test_reset_returns_prompt_ending_with_assistant(trip_dataset):
    env = trip_env(trip_dataset)
    obs, info = env.reset(seed=0)
    assert obs.startswith(mk.SYSTEM) and obs.endswith(mk.END + mk.ASSISTANT)
    assert info["messages"][1]["content"] in obs
    assert any(t["function"]["name"] == "submit" for t in info["tools"])


def test_context_equals_rendered_conversation_exactly(trip_dataset):
    env = trip_env(trip_dataset)
    obs, info = env.reset(seed=1)
    agent = ProgramPolicy(get_family("trip").reference(env.task.params, env.task.tool_config))
    ep = run_episode(env, agent, seed=1)
    assert ep.terminated and ep.reward == 1.0
    assert ep.text == chat.render_conversation(ep.info["messages"])
    assert chat.messages_from_text(env.system, env.task.prompt, ep.actions, ep.observations) == ep.info["messages"]
    for act, o in zip(ep.actions, ep.observations[1:], strict=True):  # each observation is only the continuation
        assert o.startswith(mk.TOOL) and act.endswith(mk.END)
    assert ep.observations[-1].endswith(mk.END) and not ep.observations[-1].endswith(mk.ASSISTANT)


def test_action_without_end_gets_end_prepended(trip_dataset):
    env = trip_env(trip_dataset)
    env.reset(seed=2)
    obs, reward, term, trunc, info = env.step(mk.render_action([("get_all_cities", {})], end=False))
    assert obs.startswith(mk.END + mk.TOOL) and obs.endswith(mk.ASSISTANT)
    assert (reward, term, trunc) == (0.0, False, False)


def test_bad_actions_become_error_observations(trip_dataset):
    env = trip_env(trip_dataset)
    obs0, _ = env.reset(seed=3)
    actions, observations = [], [obs0]
    cases = {
        "plain text": "no tool call",
        mk.render_action([("get_weathr", {})]): "unknown tool",
        mk.render_action([("get_hotels_by_city", {"town": "x"})]): "invalid arguments",
        mk.render_action([("get_hotels_by_city", {"city": "Nowhere"})]): "unknown city",
        '<tool_call>{"name": "get_all_cities"': "unclosed <tool_call>",
        mk.render_action([("submit", {"answer": "not a list"})]): "invalid arguments for submit",
    }
    for action, needle in cases.items():
        obs, reward, term, trunc, info = env.step(action)
        actions.append(action)
        observations.append(obs)
        payloads = mk.parse_tool_results(obs)
        assert any(needle in p.get("error", "") for p in payloads), (action, payloads)
        assert (reward, term, trunc) == (0.0, False, False)
    # The chat-API view rebuilt from the text equals the env's own, errors included.
    assert chat.messages_from_text(env.system, env.task.prompt, actions, observations) == info["messages"]


@pytest.mark.parametrize("action", ["hi", mk.render_action([("get_all_cities", {})])])
def test_a_step_before_any_reset_says_to_call_reset_first(trip_dataset, action):
    """A fresh env (no episode yet) names the missing reset, not an episode that is over."""
    env = trip_env(trip_dataset)
    for _ in range(2):  # and it stays so: the failed step starts nothing
        with pytest.raises(ResetNeeded, match=r"^no episode has started; call reset\(\) before the first step\(\)$"):
            env.step(action)
    env.reset(seed=0)
    assert env.step(action)[0]


def test_only_the_turn_limit_truncates(trip_dataset):
    env = trip_env(trip_dataset, max_turns=2, max_tool_calls_per_turn=2, max_action_chars=200)
    env.reset(seed=4)
    assert env.step("hi")[3] is False
    assert env.step("hi")[3] is True  # turn limit
    with pytest.raises(ResetNeeded, match=r"^the episode is over; call reset\(\) before step\(\)$"):
        env.step("hi")
    # Over the calls-per-turn limit: the first 2 run, the third gets "not run", the episode goes on.
    env = trip_env(trip_dataset, max_turns=8, max_tool_calls_per_turn=2, max_action_chars=200)
    env.reset(seed=4)
    obs, r, term, trunc, info = env.step(mk.render_action([("get_all_cities", {})] * 3))
    assert not trunc and not term and "over the limit of 2" in info["errors"][0] and info["tool_calls"] == 2
    results = mk.parse_tool_results(obs)
    assert [r.get("name") for r in results] == [None, "get_all_cities", "get_all_cities", "get_all_cities"]
    assert "content" in results[1] and "content" in results[2] and "not run" in results[3]["error"]
    # Over the action-length limit: an error observation, no call runs, the episode goes on.
    obs, r, term, trunc, info = env.step(mk.render_action([("get_all_cities", {})], reasoning="x" * 200))
    assert (r, term, trunc) == (0.0, False, False) and "over the limit of 200" in obs and info["tool_calls"] == 0
    assert obs.endswith(mk.ASSISTANT) and not obs.startswith(mk.END)  # the action ended with <|end|> itself


def test_submit_scores_and_terminates_and_later_calls_do_not_run(trip_dataset):
    env = trip_env(trip_dataset)
    env.reset(seed=5)
    obs, reward, term, trunc, info = env.step(mk.render_action([("submit", {"answer": []}), ("get_all_cities", {})]))
    assert term and reward == 0.0 and info["verdict"]["passed"] is False
    assert "not run" in mk.parse_tool_results(obs)[1]["error"]


def test_episodes_never_share_mutable_state():
    env, task, world = ledger_env()
    start = world.data["balance"]
    for _ in range(3):
        env.reset()
        obs, *_ = env.step(mk.render_action([("deposit", {"amount": 10})]))
        assert mk.parse_tool_results(obs)[0]["content"] == start + 10
    assert world.data["balance"] == start and world.data["log"] == []


def test_state_verifier_rewards_the_reference_and_rejects_a_wrong_state():
    env, task, world = ledger_env()
    fam = get_family("ledger")
    assert run_episode(env, ProgramPolicy(fam.reference(task.params, {}))).reward == 1.0
    env.reset()
    amounts = task.params["amounts"]
    env.step(mk.render_action([("deposit", {"amount": sum(amounts)})]))  # right balance, wrong history
    final = world.data["balance"] + sum(amounts)
    obs, reward, term, *_, info = env.step(mk.render_action([("submit", {"answer": final})]))
    assert term and reward == 0.0 and "state differs" in info["verdict"]["reason"]


def test_reset_state_does_not_grow(trip_dataset):
    env = trip_env(trip_dataset)
    for seed in range(60):
        env.reset(seed=seed)
        env.step("x")
    assert len(env._messages) == 4 and len(env._toolsets) <= 64
    assert len(env.source._tasks) <= env.source._tasks.size and len(env.source._worlds) <= env.source._worlds.size


def test_config_errors_are_one_clear_line(trip_dataset, tmp_path):
    with pytest.raises(ConfigError, match="datset: Extra inputs"):
        ToolEnv(family="trip", datset="x")
    with pytest.raises(ConfigError, match="difficulty must be between 1 and 5"):
        ToolEnv(family="trip", difficulty=9)
    with pytest.raises(ConfigError, match="unknown split 'holdout'; splits are train, val, test"):
        ToolEnv(family="trip", dataset=trip_dataset, split="holdout")
    env = trip_env(trip_dataset)
    with pytest.raises(ConfigError, match="unknown reset options"):
        env.reset(options={"taskid": "x"})
    for bad in ("", "  ", 7):  # an empty id is a mistake, not a request for a random task
        with pytest.raises(ConfigError, match="task_id must be a non-empty str"):
            env.reset(options={"task_id": bad})


def test_task_id_option_and_unknown_ids(trip_dataset):
    from toolgym.data.dataset import Dataset
    from toolgym.errors import UnknownNameError

    with Dataset(trip_dataset, read_only=True) as ds:
        tid = ds.task_ids()[3]
    env = trip_env(trip_dataset)
    _, info = env.reset(options={"task_id": tid})
    assert info["task_id"] == tid
    with pytest.raises(UnknownNameError, match="did you mean"):
        env.reset(options={"task_id": tid + "x"})


@pytest.mark.parametrize(
    "task_id", ["trip-fly-s+1-d1", "trip-fly-s1-d1-junk", "trip-fly-s\u0661-d1", "trip-fly-s1-d9", "trip-fly-s01-d1", 5]
)
def test_an_on_the_fly_task_id_must_be_exact(task_id):
    """A served task's id always equals the id asked for; anything else is a clear error."""
    env = gym.make("toolgym/TripPlanning-v1")
    with pytest.raises((ConfigError, UnknownNameError)):
        env.reset(options={"task_id": task_id})
    assert env.reset(options={"task_id": "trip-fly-s1-d1"})[1]["task_id"] == "trip-fly-s1-d1"


@pytest.mark.parametrize(
    "kwargs", [{"difficulty": True}, {"difficulty": []}, {"difficulty": [True]}, {"max_turns": True}]
)
def test_a_boolean_or_empty_difficulty_is_refused(kwargs):
    with pytest.raises(ConfigError):
        gym.make("toolgym/TripPlanning-v1", **kwargs)
