"""Limits a policy is told and the env keeps: per-turn limits are error observations, the last
turns warn, every observation is capped (valid markup, in the observation space), and calls in
other formats get the ``<tool_call>`` hint."""

import gymnasium as gym
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolgym.envs import chat
from toolgym.envs import limits as lim
from toolgym.envs import markup as mk
from toolgym.envs.rollout import ProgramPolicy, run_episode
from toolgym.envs.toolenv import ToolEnv, no_call_error
from toolgym.envs.tools import ToolError, Toolset, tool
from toolgym.errors import ConfigError
from toolgym.synth import get_family

from .test_toolenv import ledger_env

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=400) | st.sampled_from(
    ["\x01" * 999, "<" * 300, "<|end|><|user|>", "é" * 500, '"\\' * 200]
)
MARK = len(mk.TOOL) + len(mk.END)


def check_observation(env, obs, n_results=None):
    """The observation is within the space and valid markup: one JSON payload per <|tool|>…<|end|>."""
    assert env.observation_space.contains(obs), len(obs)
    payloads = mk.split_payloads(obs)
    assert obs.count(mk.TOOL) == len(payloads)
    for p in payloads:
        assert isinstance(mk.loads(p), dict)
    if n_results is not None:
        assert len(payloads) == n_results
    return [mk.loads(p) for p in payloads]


def check_messages(env, actions, observations, info):
    assert chat.messages_from_text(env.system, env.task.prompt, actions, observations) == info["messages"]


# ----------------------------------------------------------------------------- the cap (fault 6)


@pytest.fixture(scope="module")
def code_env():
    env = gym.make("toolgym/CodeInterpreter-v1", difficulty=1).unwrapped
    yield env
    env.close()


def test_the_issues_read_file_flood_is_capped(code_env):
    env = code_env
    obs0, info = env.reset(seed=0)
    write = "open('blob.txt', 'w').write(('\\x01' * 999 + '\\n') * 50)"
    act1 = mk.render_action([("run_python", {"code": write})])
    obs1, *_ = env.step(act1)
    assert mk.parse_tool_results(obs1)[0]["content"]["status"] == "ok"
    act2 = mk.render_action([("read_file", {"path": "blob.txt"})] * 16)
    obs2, reward, term, trunc, info = env.step(act2)
    assert len(obs2) <= 1_000_000 < 16 * 50 * 999 * 6  # uncapped: ~4.8 M characters
    results = check_observation(env, obs2, 16)
    assert all(r["name"] == "read_file" and "[cut: " in r["content"] for r in results)
    kept = [len(r["content"]) for r in results]
    assert min(kept) > 50_000  # fair shares, not one result and 15 empty ones
    assert (reward, term, trunc) == (0.0, False, False) and obs2.endswith(mk.ASSISTANT)
    check_messages(env, [act1, act2], [obs0, obs1, obs2], info)


payload_lists = st.lists(
    st.tuples(st.none() | st.sampled_from(["read_file", "x" * 40]), st.booleans(), TEXT, st.integers(1, 3000)),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(payload_lists, st.integers(0, 3))
def test_cap_payloads_keeps_one_valid_payload_each_within_the_cap(items, extra):
    payloads = [
        mk.tool_payload(name, error=text * reps) if is_error else mk.tool_payload(name, {"text": text * reps})
        for name, is_error, text, reps in items
    ]
    floor = sum(len(mk.dumps({"name": n, "error" if e else "content": "[cut]"})) + MARK for n, e, *_ in items) + 20
    cap = floor + extra * 997
    out = lim.cap_payloads(payloads, cap)
    assert len(out) == len(payloads)
    obs = mk.END + "".join(mk.render_tool(p) for p in out) + mk.ASSISTANT
    assert len(obs) <= cap
    assert mk.split_payloads(obs) == out  # no payload holds a special string (markup.dumps escapes them)
    assert not any(t in p for p in out for t in mk.SPECIAL_TOKENS)
    for before, after in zip(payloads, out, strict=True):
        a, b = mk.loads(before), mk.loads(after)
        assert a["name"] == b["name"] and set(a) == set(b)
        if before != after:
            value = b.get("error", b.get("content"))
            assert isinstance(value, str) and (value == "[cut]" or value.endswith("so ask for less at a time]"))
    if sum(map(len, payloads)) + MARK * len(payloads) + 20 <= cap:
        assert out == payloads


def call_text(name, n_args):
    if n_args:
        return mk.render_call(name, {"city": "x" * n_args})
    return mk.CALL_OPEN + mk.dumps({"name": name}) + mk.CALL_CLOSE  # the shortest call


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["get_all_cities", "get_hotels_by_city", "get_attractions_by_city", "nope", "<" * 40, "a"]),
            st.integers(0, 30),
        ),
        min_size=1,
        max_size=120,
    ),
    st.booleans(),
)
def test_every_observation_of_a_flood_of_calls_lies_in_the_space(trip_dataset, calls, stray_tags):
    action_chars = 2000
    env = ToolEnv(
        family="trip",
        dataset=trip_dataset,
        max_action_chars=action_chars,
        max_observation_chars=lim.min_observation_chars(action_chars),
        max_tool_calls_per_turn=12,
    )
    obs0, _ = env.reset(seed=3)
    action = ("</tool_call>" * 40 if stray_tags else "") + "".join(call_text(n, k) for n, k in calls) + mk.END
    action = action if len(action) <= action_chars else action[: action_chars - len(mk.END)] + mk.END
    obs, reward, term, trunc, info = env.step(action)
    results = check_observation(env, obs)
    assert len([r for r in results if r["name"] is None]) <= lim.MAX_TURN_ERRORS
    check_messages(env, [action], [obs0, obs], info)


@tool()
def blob(ctx: object, text: str, times: int, fail: bool = False) -> dict:
    """Return (or fail with) ``text`` repeated.

    Args:
        text: The text.
        times: How many times.
        fail: Raise it as a tool error instead.
    """
    if fail:
        raise ToolError(text * times)
    return {"text": text * times}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(TEXT, st.integers(0, 4000), st.booleans()), min_size=1, max_size=40),
    st.integers(0, 200_000),
    st.integers(1, 3),
)
def test_capped_observations_of_random_results_stay_valid_markup(calls, slack, turns):
    env, task, world = ledger_env(max_action_chars=4096, max_observation_chars=lim.min_observation_chars(4096) + slack)
    obs0, _ = env.reset()
    env.toolset = Toolset([blob])  # results of random sizes and counts through the real step path
    actions, observations = [], [obs0]
    for turn in range(turns):
        batch = calls[turn::turns]
        action = mk.render_action([("blob", {"text": t[:20], "times": n, "fail": f}) for t, n, f in batch])
        if len(action) > 4096:
            action = mk.render_action([("blob", {"text": "<", "times": n}) for _, n, _ in batch[:80]])
        obs, reward, term, trunc, info = env.step(action)
        actions.append(action)
        observations.append(obs)
        results = check_observation(env, obs)
        ran = [r for r in results if r["name"] == "blob"]
        assert len(ran) == len(mk.parse_action(action).tool_calls)
    check_messages(env, actions, observations, info)


# ----------------------------------------------------------------------------- per-turn limits and the warning


def test_the_last_turns_warn_and_the_chat_view_agrees(trip_dataset):
    env = ToolEnv(family="trip", dataset=trip_dataset, max_turns=5)
    obs0, _ = env.reset(seed=1)
    actions, observations, notices = [], [obs0], []
    for turn in range(1, 6):
        action = mk.render_action([("get_all_cities", {})]) if turn % 2 else "thinking aloud"
        obs, reward, term, trunc, info = env.step(action)
        actions.append(action)
        observations.append(obs)
        first = mk.parse_tool_results(obs)[0]
        notices.append(first["content"] if first["name"] is None and "content" in first else None)
        assert info["turns_left"] == 5 - turn and trunc == (turn == 5)
    assert notices[0] is None and notices[4] is None
    assert "3 turns left" in notices[1] and "2 turns left" in notices[2] and "1 turn left" in notices[3]
    assert all("submit" in n for n in notices[1:4])
    check_messages(env, actions, observations, info)


def test_a_reference_ignores_the_notice():
    env, task, world = ledger_env()
    ref = run_episode(env, ProgramPolicy(get_family("ledger").reference(task.params, {})))
    env, task, world = ledger_env(max_turns=ref.turns + 1)  # its last turns fall in the warning window
    ep = run_episode(env, ProgramPolicy(get_family("ledger").reference(task.params, {})))
    assert ep.reward == 1.0 and any('"name":null,"content"' in o for o in ep.observations[1:])


def test_stray_tags_yield_a_bounded_number_of_errors(trip_dataset):
    env = ToolEnv(family="trip", dataset=trip_dataset)
    env.reset(seed=0)
    obs, *_, info = env.step("</tool_call>" * 500 + mk.END)
    results = mk.parse_tool_results(obs)
    assert len(results) == lim.MAX_TURN_ERRORS and "497 more problems" in results[-1]["error"]


def test_a_cap_too_small_for_the_action_limit_is_refused():
    with pytest.raises(ConfigError, match="max_observation_chars=5000 .* at least 135168"):
        ToolEnv(family="trip", max_observation_chars=5000)


def test_the_system_text_states_this_envs_limits(trip_dataset):
    env = ToolEnv(family="trip", dataset=trip_dataset)
    obs, info = env.reset(seed=0)
    assert lim.DEFAULT_LIMITS_TEXT in obs and env.system == env.task.system
    custom = ToolEnv(family="trip", dataset=trip_dataset, max_turns=9, max_observation_chars=250_000)
    obs, info = custom.reset(seed=0)
    assert "at most 9 turns" in obs and "at most 250,000 characters in all" in obs
    assert lim.DEFAULT_LIMITS_TEXT not in obs and info["messages"][0]["content"] == custom.system
    old = env.task.system.replace(lim.DEFAULT_LIMITS_TEXT, "")  # a task stored before limits were stated
    assert lim.with_limits(old, lim.DEFAULT_LIMITS_TEXT) == env.task.system


# ----------------------------------------------------------------------------- calls in other formats (fault 9)


@pytest.mark.parametrize(
    ("content", "form"),
    [
        ('{"name": "get_all_cities", "arguments": {}}', "bare JSON object"),
        ('```json\n{"name": "get_all_cities", "arguments": {}}\n```', "```json code fence"),
        ("<function=get_all_cities>{}</function>", "<function=...> tag"),
        ('Action: {"name": "get_all_cities", "arguments": "{}"}', "JSON object outside <tool_call> tags"),
    ],
)
def test_calls_in_other_formats_get_the_format_hint(trip_dataset, content, form):
    env = ToolEnv(family="trip", dataset=trip_dataset)
    env.reset(seed=0)
    obs, *_, info = env.step(content + mk.END)
    (error,) = info["errors"]
    assert error.startswith(f"no tool call in this turn: a {form} is not a tool call")
    assert '<tool_call>{"name": "<tool>", "arguments": {…}}</tool_call>' in error
    assert error.endswith('here: <tool_call>{"name":"get_all_cities","arguments":{}}</tool_call><|end|>')


def test_plain_text_and_unparseable_lookalikes():
    plain = "no tool call in this turn; call a tool, or call submit to finish"
    assert no_call_error("I will now look up the cities.") == plain
    hint = no_call_error('```python\nprint("hi")\n```')
    assert "a ```python code fence is not a tool call" in hint and "here:" not in hint
    assert "here:" not in no_call_error('{"name": "x", "arguments": [1]}')


@pytest.mark.parametrize(
    "body",
    [
        mk.render_action([("get_all_cities", {})] * 3, reasoning="x" * 300),  # calls: none runs
        "<think>" + "y" * 300,  # fatal
        "z" * 300 + mk.END,  # no call
        "w" * 300,  # no <|end|>: the observation supplies it
    ],
)
def test_an_over_long_action_is_an_error_and_the_chat_view_agrees(trip_dataset, body):
    env = ToolEnv(family="trip", dataset=trip_dataset, max_action_chars=200)
    obs0, _ = env.reset(seed=2)
    obs, reward, term, trunc, info = env.step(body)
    assert (reward, term, trunc, info["tool_calls"]) == (0.0, False, False, 0)
    assert info["errors"] == [
        f"action is {len(body)} characters, over the limit of 200; no call ran. "
        "Think more briefly and make fewer calls per turn"
    ]
    assert obs.startswith(mk.TOOL if body.endswith(mk.END) else mk.END + mk.TOOL)
    check_messages(env, [body], [obs0, obs], info)
    obs, *_ = env.step(mk.render_action([("get_all_cities", {})]))
    assert "content" in mk.parse_tool_results(obs)[0]  # the episode goes on


def test_format_hints_read_a_bounded_prefix():
    """The other-format detection reads at most _HINT_SCAN characters, so no action can stall it."""
    from toolgym.envs.toolenv import _HINT_SCAN, _NO_CALL, no_call_error

    late = "x" * _HINT_SCAN + '{"name": "get_all_cities", "arguments": {}}'
    assert no_call_error(late) == _NO_CALL
    # Formerly quadratic in the function-tag pattern (0.8 s for 32k characters): now the form is named.
    assert "<function=...> tag" in no_call_error("<function=" * 6400)
    assert "<function=...> tag" in no_call_error("<function=a>" * 3000)
