"""The verifiers adapter: real episodes through verifiers' Env, interception server and eval client, against a
scripted OpenAI-compatible model server (stdlib HTTP, in a thread), scored by the toolgym verifier."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import toolgym
from toolgym.envs import markup as mk
from toolgym.envs.rollout import Final

from .conftest import readme_snippet

adapter = pytest.importorskip(
    "toolgym.adapters.verifiers",
    reason="the verifiers adapter needs the `verifiers` extra: pip install 'toolgym[verifiers]'",
)
vf = adapter.vf

#: A script maps the request's messages to the reply's tool calls [(name, JSON arguments text)].
Script = Callable[[list[dict[str, Any]]], list[tuple[str, str]]]


def reference_script(task_id: str, family: str, dataset: str | None, split: str | None) -> Script:
    """The task's reference program as a model: each request answers the previous step's results."""
    task, _ = adapter._task(family, dataset, split, task_id)
    program = toolgym.family(family).reference(task.params, task.tool_config)

    def reply(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
        tail = []
        for m in reversed(messages):
            if m["role"] != "tool":
                break
            tail.insert(0, mk.loads(m["content"]))
        try:
            step = next(program) if messages[-1]["role"] == "user" else program.send(tail)
        except StopIteration as stop:
            answer = stop.value.answer if isinstance(stop.value, Final) else stop.value
            return [("submit", json.dumps({"answer": answer}))]
        return [(name, json.dumps(args)) for name, args in step.calls]

    return reply


def completion(calls: list[tuple[str, str]], turn: int) -> dict[str, Any]:
    tool_calls = [
        {"id": f"call_{turn}_{i}", "type": "function", "function": {"name": n, "arguments": a}}
        for i, (n, a) in enumerate(calls)
    ]
    message: dict[str, Any] = {"role": "assistant", "content": None if calls else "I am done."}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": f"chatcmpl-{turn}", "object": "chat.completion", "created": 0, "model": "scripted",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }  # fmt: skip


@pytest.fixture
def model_server() -> Iterator[tuple[str, list[dict[str, Any]], dict[str, Script]]]:
    """``(base_url, requests seen, {"script": …})``: a chat-completions endpoint replying with the current script."""
    seen: list[dict[str, Any]] = []
    state: dict[str, Script] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            out = json.dumps(completion(state["script"](body["messages"]), len(seen))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen, state
    finally:
        server.shutdown()
        server.server_close()


def run_episode(env: Any, task: Any, base_url: str) -> Any:
    ctx = vf.ModelContext(
        model="scripted", client=vf.EvalClientConfig(base_url=base_url, api_key_var="TOOLGYM_TEST_KEY")
    )

    async def go() -> Any:
        async with env.serving():
            return await env.run_episode(task, ctx)

    return asyncio.run(go())


@pytest.fixture(scope="module")
def env() -> Any:
    return adapter.load_environment(family="search", split="train", difficulty=1, num_tasks=1, seed=0, max_turns=8)


def test_the_reference_earns_the_verifiers_reward_through_verifiers(env, model_server):
    base_url, seen, state = model_server
    [task] = list(env.taskset)
    d = task.data
    assert d.family == "search" and d.id.startswith("search-fly-") and d.tools and "submit" in d.prompt
    state["script"] = reference_script(d.id, d.family, d.dataset, d.split)
    episode = run_episode(env, task, base_url)
    assert episode.ok, episode.errors
    [trace] = episode.traces
    assert trace.reward == 1.0
    assert trace.metrics["submitted"] == 1.0
    # the model saw the task's tools natively, and every call went through verifiers' interception
    assert {t["function"]["name"] for t in seen[0]["tools"]} == {t["function"]["name"] for t in d.tools}
    assert seen[0]["messages"][-1]["content"] == d.prompt
    calls = [c.name for m in trace.messages for c in (getattr(m, "tool_calls", None) or ())]
    assert calls[-1] == "submit" and len(seen) == sum(1 for m in trace.messages if m.role == "assistant")


def test_unknown_tools_and_malformed_arguments_are_error_results(env, model_server):
    base_url, seen, state = model_server
    [task] = list(env.taskset)
    turns = iter(
        [
            [("no_such_tool", "{}"), ("search", "{not json"), ("search", '{"bogus": 1}'), ("search", "[1]")],
            [("submit", '{"answer": "Nobody At All"}')],
        ]
    )
    state["script"] = lambda messages: next(turns)
    episode = run_episode(env, task, base_url)
    assert episode.ok, episode.errors
    [trace] = episode.traces
    assert trace.reward == 0.0 and trace.metrics["submitted"] == 1.0
    # the errors came back to the model as tool results (the second request carries them)
    errors = [mk.loads(m["content"])["error"] for m in seen[-1]["messages"] if m["role"] == "tool"]
    assert errors[0].startswith("unknown tool 'no_such_tool'")
    assert errors[1].startswith("arguments are not valid JSON")
    assert "unknown argument" in errors[2]
    assert errors[3] == "arguments must be a JSON object, got list"


def test_a_reply_without_a_call_ends_the_episode_unscored(env, model_server):
    base_url, seen, state = model_server
    [task] = list(env.taskset)
    state["script"] = lambda messages: []
    episode = run_episode(env, task, base_url)
    assert episode.ok, episode.errors
    [trace] = episode.traces
    assert len(seen) == 1 and trace.reward == 0.0 and trace.metrics["submitted"] == 0.0


def test_the_readme_snippet_runs(model_server, capsys):
    base_url, seen, state = model_server
    code = readme_snippet(1, {'"https://api.openai.com/v1"': repr(base_url), "num_tasks=8": "num_tasks=1"})
    [task] = list(adapter.load_environment(family="search", split="train", difficulty=1, num_tasks=1).taskset)
    state["script"] = reference_script(task.data.id, "search", None, "train")
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    assert capsys.readouterr().out.split() == [task.data.id, "1.0"]
