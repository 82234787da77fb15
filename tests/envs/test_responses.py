"""The Responses-API view of an episode (``info["response_items"]``, :mod:`toolgym.envs.responses`).

Every item is validated against the ``openai`` package's own types (``ResponseInputItemParam``,
unknown keys refused), and the view maps back to the chat view exactly (so the two carry one
conversation), on reference episodes and on episodes full of bad actions.
"""

from __future__ import annotations

import pytest

from toolgym.envs import markup as mk
from toolgym.envs.chat import render_conversation
from toolgym.envs.responses import messages_from_items, response_items, response_tools
from toolgym.envs.rollout import ProgramPolicy
from toolgym.envs.toolenv import make_env
from toolgym.errors import ConfigError
from toolgym.synth import get_family

openai_types = pytest.importorskip("openai.types.responses")
from pydantic import ConfigDict, TypeAdapter  # noqa: E402

#: Strict validators: an item with a key the API does not define fails.
ITEMS = TypeAdapter(list[openai_types.ResponseInputItemParam], config=ConfigDict(extra="forbid"))
TOOLS = TypeAdapter(list[openai_types.FunctionToolParam], config=ConfigDict(extra="forbid"))

BAD_ACTIONS = [
    "just text, no call" + mk.END,  # no call: a developer notice
    "",  # an empty action: an empty assistant message item
    mk.THINK_OPEN + "hmm" + mk.THINK_CLOSE + mk.CALL_OPEN + "{not json" + mk.CALL_CLOSE + mk.END,
    mk.render_action([("no_such_tool", {"x": 1}), ("search_hotels", {"city": 3})], reasoning="two calls"),
    mk.render_action([("search_hotels", {"city": "Nowhere"})], reasoning=None, content="let me look"),
]


def check_view(info: dict) -> list[dict]:
    """The info's items are valid API items and map back to the info's messages."""
    items = info["response_items"]
    assert ITEMS.dump_python(ITEMS.validate_python(items), mode="json") == items  # nothing dropped or coerced
    assert items == response_items(info["messages"])  # incremental == from scratch
    assert messages_from_items(items) == info["messages"]
    return items


def test_a_reference_episode_has_a_valid_view_that_maps_back():
    env = make_env("trip", difficulty=2, response_items=True, render_mode="ansi")
    obs, info = env.reset(seed=3)
    assert [i["role"] for i in check_view(info)] == ["system", "user"]
    policy = ProgramPolicy(get_family("trip").reference(env.task.params, env.task.tool_config))
    reward = 0.0
    while True:
        obs, reward, terminated, truncated, info = env.step(policy.act(obs, info))
        items = check_view(info)
        if terminated or truncated:
            break
    assert reward == 1.0
    kinds = {i["type"] for i in items}
    assert kinds == {"message", "reasoning", "function_call", "function_call_output"}
    calls = [i for i in items if i["type"] == "function_call"]
    outputs = [i for i in items if i["type"] == "function_call_output"]
    assert [c["call_id"] for c in calls] == [o["call_id"] for o in outputs]
    assert calls[-1]["name"] == "submit" and calls[0]["call_id"] == "call_1_0"
    assert render_conversation(messages_from_items(items), drop_old_reasoning=False) == env.render()
    tools = response_tools(info["tools"])
    assert TOOLS.dump_python(TOOLS.validate_python(tools), mode="json") == tools


def test_bad_actions_keep_a_valid_view_and_notices_are_developer_messages():
    env = make_env("trip", difficulty=1, response_items=True, render_mode="ansi", max_turns=len(BAD_ACTIONS) + 1)
    obs, info = env.reset(seed=0)
    for action in BAD_ACTIONS:
        obs, _, terminated, truncated, info = env.step(action)
        items = check_view(info)
        assert not (terminated or truncated)
    notices = [i for i in items if i["type"] == "message" and i["role"] == "developer"]
    assert notices and all('"name":null' in n["content"] for n in notices)
    empty = [i for i in items if i.get("id") == "msg_2"]
    assert empty and empty[0]["content"][0]["text"] == ""  # the empty action is still a turn


def test_response_items_need_the_chat_view():
    with pytest.raises(ConfigError, match="response_items=True needs messages=True"):
        make_env("trip", response_items=True, messages=False)
    _, info = make_env("trip", difficulty=1).reset(seed=0)
    assert "response_items" not in info  # off by default: the step path does no extra work


def test_items_of_other_kinds_are_refused():
    with pytest.raises(ValueError, match="web_search_call"):
        messages_from_items([{"type": "web_search_call", "id": "x", "status": "completed"}])
