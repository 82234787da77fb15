"""The ``openai`` policy against a scripted fake endpoint (a real FastAPI app behind uvicorn).

Each behaviour of a real server the policy must survive: 429 then success, persistent 5xx,
a timeout, an unreachable port, a model without tool support, replies without tool calls or
with malformed arguments; the action text must reach a real ToolEnv, whose observation judges it.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("openai")
fastapi = pytest.importorskip("fastapi")

from fastapi.responses import JSONResponse  # noqa: E402

import toolgym  # noqa: E402
from toolgym.envs import markup as mk  # noqa: E402
from toolgym.envs.toolenv import make_env  # noqa: E402
from toolgym.errors import ConfigError, EndpointError  # noqa: E402
from toolgym.policy.openai_policy import action_text, call_text, is_tool_support_error, openai_policy  # noqa: E402
from toolgym.policy.serve import BackgroundServer, listen  # noqa: E402


class Fake:
    """A scripted endpoint: each request pops the next (status, body) or waits; records requests."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict, dict] | float] = []
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.lock = threading.Lock()
        app = fastapi.FastAPI()

        @app.get("/v1/models")
        def models():
            return {"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "x"}]}

        @app.post("/v1/chat/completions")
        def chat(body: dict, request: fastapi.Request):
            with self.lock:
                self.requests.append(body)
                self.headers.append(dict(request.headers))
                step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
            if isinstance(step, float):
                time.sleep(step)
                return reply(content="late")
            status, payload, headers = step
            return JSONResponse(payload, status_code=status, headers=headers)

        self.app = app


def reply(content=None, calls=(), reasoning=None, finish=None):
    message = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = [
            {"id": f"c{i}", "type": "function", "function": {"name": n, "arguments": a}}
            for i, (n, a) in enumerate(calls)
        ]
    choice = {"index": 0, "message": message, "finish_reason": finish or ("tool_calls" if calls else "stop")}
    return {"id": "x", "object": "chat.completion", "created": 0, "model": "fake-model", "choices": [choice]}


def ok(**kw):
    return (200, reply(**kw), {})


@pytest.fixture(scope="module")
def fake():
    f = Fake()
    with BackgroundServer(f.app) as url:
        f.url = url
        yield f


@pytest.fixture
def served(fake):
    fake.script.clear()
    fake.requests.clear()
    fake.headers.clear()
    return fake


def first_step(factory, seed=0):
    """Reset a real trip env, act once through the policy, step: (action, observation, request count)."""
    env = make_env("trip", difficulty=1, max_turns=4)
    obs, info = env.reset(seed=seed)
    action = factory(env.task, env.world, 0).act(obs, info)
    return action, env.step(action)[0], info


def test_a_tool_call_reaches_the_env_and_the_request_carries_the_conversation(served, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-test")
    served.script[:] = [ok(calls=[("search_hotels", '{"city": "Lisbon"}')], reasoning="look up hotels")]
    factory = openai_policy(base_url=served.url, api_key_env="MY_KEY", temperature=0.5, top_p=0.9, max_new_tokens=64)
    action, obs, info = first_step(factory)
    assert action == mk.render_action([("search_hotels", {"city": "Lisbon"})], reasoning="look up hotels")
    assert '"name":"search_hotels"' in obs
    (body,) = served.requests
    assert body["model"] == "fake-model"  # the endpoint's only model
    assert body["messages"] == info["messages"]
    assert body["tools"] == info["tools"]
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.5, 0.9, 64)
    assert served.headers[0]["authorization"] == "Bearer sk-test"
    again, _, _ = first_step(factory)
    assert served.requests[1]["seed"] == body["seed"]  # same task, sample and turn: same seed


def test_429_then_success_is_retried(served):
    served.script[:] = [(429, {"error": {"message": "slow down"}}, {"retry-after-ms": "10"}), ok(content="hi")]
    factory = openai_policy(base_url=served.url, model="fake-model", max_retries=2)
    action, _, _ = first_step(factory)
    assert action == "hi" + mk.END
    assert len(served.requests) == 2


def test_persistent_5xx_fails_with_one_line_after_bounded_retries(served):
    served.script[:] = [(503, {"error": {"message": "overloaded"}}, {"retry-after-ms": "5"})]
    factory = openai_policy(base_url=served.url, model="fake-model", max_retries=2)
    with pytest.raises(EndpointError, match=r"answered HTTP 503: .*overloaded") as exc:
        first_step(factory)
    assert "\n" not in str(exc.value)
    assert len(served.requests) == 3


def test_a_model_without_tool_support_is_named(served):
    said = {"error": {"message": '"auto" tool choice requires --enable-auto-tool-choice', "type": "BadRequestError"}}
    served.script[:] = [(400, said, {})]
    factory = openai_policy(base_url=served.url, model="fake-model", max_retries=3)
    with pytest.raises(EndpointError, match="does not support tool calls"):
        first_step(factory)
    assert len(served.requests) == 1  # a 400 is not retried


@pytest.mark.parametrize(
    "message",
    [
        "messages[2] (assistant) contains '<|bos|>', a special string of the policy's markup; it may not occur in "
        "message text (tool arguments and results are JSON, where it is escaped)",
        "messages[1].tool_calls[0] needs a name and arguments\n that are a JSON object",
        "This model's maximum context length is 2048 tokens (the tools take 300)",
    ],
)
def test_a_400_about_something_else_gives_the_server_s_own_message(served, message):
    """Only a 400 about tool support blames tool support; any other is the server's message, on one line."""
    served.script[:] = [(400, {"error": {"message": message, "type": "invalid_request_error"}}, {})]
    factory = openai_policy(base_url=served.url, model="fake-model", max_retries=3)
    with pytest.raises(EndpointError) as exc:
        first_step(factory)
    line = str(exc.value)
    assert "does not support tool calls" not in line and "enable-auto-tool-choice" not in line
    assert "answered HTTP 400: " + " ".join(message.split())[:60] in line and "\n" not in line
    assert len(served.requests) == 1


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ('"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set', None),
        ("registry.ollama.ai/library/gemma:2b does not support tools", None),
        ("tools is not supported by this model", None),
        ("Function calling is not enabled for this deployment", None),
        ("invalid value", "tool_choice"),
    ],
)
def test_tool_support_errors_are_recognised(message, param):
    assert is_tool_support_error(message, param)


def test_a_timeout_is_one_line(served):
    served.script[:] = [1.5]
    factory = openai_policy(base_url=served.url, model="fake-model", timeout=0.2, max_retries=0)
    with pytest.raises(EndpointError, match=r"did not answer within 0.2 s"):
        first_step(factory)


def test_an_unreachable_endpoint_fails_at_once():
    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    started = time.monotonic()
    with pytest.raises(EndpointError, match=rf"cannot reach the endpoint http://127.0.0.1:{port}/v1"):
        openai_policy(base_url=f"http://127.0.0.1:{port}/v1", model="m")
    assert time.monotonic() - started < 10


def test_no_tool_calls_and_malformed_arguments_get_the_env_s_error(served):
    factory = openai_policy(base_url=served.url, model="fake-model")
    served.script[:] = [ok(content="The answer is 4.")]
    action, obs, _ = first_step(factory)
    assert action == "The answer is 4." + mk.END
    assert "no tool call in this turn" in obs
    served.script[:] = [ok(calls=[("search_hotels", '{"city": "Lis')])]
    action, obs, _ = first_step(factory)
    assert "arguments string is not JSON" in obs
    served.script[:] = [ok(calls=[("", "{}"), ("search_hotels", "[1, 2]")])]
    _, obs, _ = first_step(factory)
    assert 'missing \\"name\\"' in obs or "missing" in obs
    assert "must be an object" in obs


def test_markup_in_content_and_a_cut_reply_are_passed_through(served):
    factory = openai_policy(base_url=served.url, model="fake-model")
    served.script[:] = [ok(content="x <|user|> forged")]
    action, obs, _ = first_step(factory)
    assert action == "x <|user|> forged" + mk.END and "not allowed inside an action" in obs
    served.script[:] = [ok(content="I was cut", finish="length")]
    action, obs, _ = first_step(factory)
    assert action == "I was cut" and obs.startswith(mk.END)


def test_options_are_validated():
    with pytest.raises(ConfigError, match="checkpoint"):
        openai_policy(base_url="http://127.0.0.1:9/v1", checkpoint="runs/x")
    with pytest.raises(ConfigError, match="base_url"):
        openai_policy(model="m")
    with pytest.raises(ConfigError, match="NO_SUCH_KEY_VAR, which is not set"):
        openai_policy(base_url="http://127.0.0.1:9/v1", model="m", api_key_env="NO_SUCH_KEY_VAR")
    assert toolgym.POLICIES.get("openai") is openai_policy


def test_env_without_messages_is_a_clear_error(served):
    served.script[:] = [ok(content="x")]
    policy = openai_policy(base_url=served.url, model="fake-model")(None, None, 0)
    env = make_env("trip", difficulty=1, messages=False)
    obs, info = env.reset(seed=0)
    with pytest.raises(ConfigError, match="messages=True"):
        policy.act(obs, info)


names = st.text(max_size=12)
# 64-bit integers: the env's parser (orjson) reads larger JSON integers as floats, whoever wrote them.
ints = st.integers(-(2**63), 2**64 - 1)
json_objects = st.dictionaries(st.text(max_size=6), st.one_of(ints, st.text(max_size=8), st.none()), max_size=3)


@given(name=names, arguments=st.one_of(st.text(max_size=40), json_objects.map(json.dumps)))
def test_any_call_parses_back_to_itself_or_to_an_error(name, arguments):
    """The kind: whatever a server returns as a call, the env reads that call or says why not; nothing raises."""
    parsed = mk.parse_action(call_text(name, arguments) + mk.END)
    try:
        args = mk.loads(arguments) if arguments.strip() else {}
    except ValueError:
        args = None
    if name and isinstance(args, dict):
        assert [(c.name, c.arguments) for c in parsed.tool_calls] == [(name, args)] and not parsed.errors
    else:
        assert not parsed.tool_calls and parsed.errors


safe_text = st.text(alphabet=st.characters(blacklist_characters="<"), max_size=30)


@given(
    content=safe_text,
    reasoning=st.one_of(st.none(), safe_text),
    calls=st.lists(st.tuples(st.text(min_size=1, max_size=8), json_objects), max_size=3),
)
def test_valid_replies_render_canonically(content, reasoning, calls):
    """A reply the markup can carry becomes exactly render_action's text (so conversations re-render byte for byte)."""
    text = action_text(content, reasoning, [(n, json.dumps(a)) for n, a in calls])
    assert text == mk.render_action(calls, reasoning, content)
