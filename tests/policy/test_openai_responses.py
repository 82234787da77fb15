"""``toolgym eval --policy openai --api responses``: the official client against a real Responses server.

The server (FastAPI behind uvicorn, in this process) is strict where the API is: each request's
``input`` must validate as ``ResponseInputItemParam`` items and its ``tools`` as
``FunctionToolParam`` (unknown keys refused), and each reply is validated as an ``openai``
``Response`` before it is sent. It plays the task's reference program, reading the tool results
back from the ``function_call_output`` items, so a pass@1 of 1 means the conversation crossed the
Responses API intact in both directions.
"""

from __future__ import annotations

import json
import threading

import pytest
from typer.testing import CliRunner

pytest.importorskip("openai")
fastapi = pytest.importorskip("fastapi")

from fastapi.responses import JSONResponse  # noqa: E402
from openai.types.responses import FunctionToolParam, Response, ResponseInputItemParam  # noqa: E402
from pydantic import ConfigDict, TypeAdapter, ValidationError  # noqa: E402

from toolgym.cli import app  # noqa: E402
from toolgym.envs import markup as mk  # noqa: E402
from toolgym.envs.responses import assistant_items, messages_from_items  # noqa: E402
from toolgym.envs.rollout import ProgramPolicy  # noqa: E402
from toolgym.policy.openai_policy import response_action  # noqa: E402
from toolgym.policy.serve import BackgroundServer  # noqa: E402
from toolgym.synth import get_family  # noqa: E402
from toolgym.synth.fly import SynthSource  # noqa: E402

ITEMS = TypeAdapter(list[ResponseInputItemParam], config=ConfigDict(extra="forbid"))
TOOLS = TypeAdapter(list[FunctionToolParam], config=ConfigDict(extra="forbid"))
TASKS = ["trip-fly-s0-d1", "trip-fly-s1-d1"]  # what `eval --family trip --difficulty 1 --limit 2` synthesizes


class ReferenceServer:
    """``POST /v1/responses`` answering with the reference program of the task the prompt names."""

    def __init__(self) -> None:
        src = SynthSource(get_family("trip"), [1])
        self.tasks = {t.prompt: t for t, _ in (src.get(i) for i in TASKS)}
        self.policies: dict[str, ProgramPolicy] = {}
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        api = fastapi.FastAPI()

        @api.get("/v1/models")
        def models():
            return {"object": "list", "data": [{"id": "ref", "object": "model", "created": 0, "owned_by": "x"}]}

        @api.post("/v1/responses")
        def responses(body: dict):
            with self.lock:
                self.requests.append(body)
                try:
                    ITEMS.validate_python(body["input"])
                    TOOLS.validate_python(body.get("tools", []))
                except ValidationError as exc:
                    return JSONResponse({"error": {"message": str(exc)[:2000], "type": "invalid_request"}}, 400)
                return self.reply(body)

        self.app = api

    def reply(self, body: dict) -> dict:
        messages = messages_from_items(body["input"])
        task = self.tasks[messages[1]["content"]]
        policy = self.policies.setdefault(
            task.task_id, ProgramPolicy(get_family("trip").reference(task.params, task.tool_config))
        )
        results = []  # the tool messages after the last assistant message: the latest observation
        for m in reversed(messages):
            if m["role"] != "tool":
                break
            results.insert(0, mk.TOOL + m["content"] + mk.END)
        action = policy.act("".join(results) + mk.ASSISTANT, {})
        parsed = mk.parse_action(action)
        calls = [{"function": {"name": c.name, "arguments": mk.dumps(c.arguments)}} for c in parsed.tool_calls]
        turn = sum(m["role"] == "assistant" for m in messages) + 1
        message = {"content": parsed.content, "reasoning_content": parsed.reasoning, "tool_calls": calls}
        output = [
            {**i, "call_id": f"srv_{i['id']}"} if i["type"] == "function_call" else i
            for i in assistant_items(turn, message)
        ]
        reply = {
            "id": f"resp_{len(self.requests)}",
            "object": "response",
            "created_at": 0,
            "model": body["model"],
            "status": "completed",
            "output": output,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": body.get("tools", []),
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "metadata": {},
            "temperature": None,
            "top_p": None,
        }
        Response.model_validate(reply)  # the reply is a Response as the API defines it
        return reply


@pytest.fixture(scope="module")
def server():
    s = ReferenceServer()
    with BackgroundServer(s.app) as url:
        s.url = url
        yield s


def test_eval_over_the_responses_api_plays_the_reference_to_pass_1(server, tmp_path):
    args = ["eval", "--policy", "openai", "--api", "responses", "--base-url", server.url, "--family", "trip"]
    args += ["--difficulty", "1", "--limit", "2", "-n", "1", "--max-new-tokens", "512", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted(r["task_id"] for r in rows) == TASKS
    assert all(r["reward"] == 1.0 for r in rows), [(r["task_id"], r["reason"]) for r in rows]
    body = server.requests[-1]
    assert body["store"] is False and body["max_output_tokens"] == 512 and "seed" not in body
    kinds = {i["type"] for i in body["input"]}
    assert {"reasoning", "function_call", "function_call_output"} <= kinds
    assert {t["name"] for t in body["tools"]} >= {"submit"}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["policy"]["options"]["api"] == "responses"


def test_a_bad_api_value_is_one_error_line(server):
    result = CliRunner().invoke(app, ["eval", "--policy", "openai", "--api", "soap", "--base-url", server.url])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error:") and "soap" in result.output


def test_reply_items_become_the_env_s_action_text():
    out = [
        {"type": "reasoning", "id": "r", "summary": [{"type": "summary_text", "text": "plan"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
        {"type": "function_call", "call_id": "c", "name": "search_hotels", "arguments": '{"city": "Lisbon"}'},
        {"type": "web_search_call", "id": "w"},  # a hosted tool's item: not the env's business
        {"type": "function_call", "call_id": "d", "name": "submit", "arguments": "{oops"},
    ]
    text = response_action(out)
    assert text.startswith(
        mk.THINK_OPEN + "plan" + mk.THINK_CLOSE + "ok" + mk.render_call("search_hotels", {"city": "Lisbon"})
    )
    assert '"arguments":"{oops"' in text and text.endswith(mk.END)  # malformed arguments: the env's error
    assert not response_action(out[:2], cut=True).endswith(mk.END)  # cut at max_output_tokens
    refusal = [{"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]}]
    assert response_action(refusal) == "no" + mk.END
