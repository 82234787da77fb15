"""``toolgym mcp``: a task's tools over MCP (stdio), played by the official MCP Python SDK as client.

The server is a real subprocess (``python -m toolgym.cli mcp TASK``) and the client the SDK's
``stdio_client`` + ``ClientSession``: list the tools (their schemas are toolgym's), send calls the
env refuses (unknown tool, arguments of the wrong type, missing or extra, arguments that are not an
object at all), then play the reference solution to reward 1, and see the episode closed after.
"""

from __future__ import annotations

import os
import sys

import anyio
import pytest
from typer.testing import CliRunner

pytest.importorskip("mcp")
import mcp_types as types  # noqa: E402
from mcp import ClientSession, StdioServerParameters, stdio_client  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402

from toolgym.cli import app  # noqa: E402
from toolgym.envs import markup as mk  # noqa: E402
from toolgym.envs.rollout import ProgramPolicy  # noqa: E402
from toolgym.synth import get_family  # noqa: E402
from toolgym.synth.fly import SynthSource  # noqa: E402

TASK = "trip-fly-s0-d1"


def server_params(*args: str) -> StdioServerParameters:
    env = {k: os.environ[k] for k in ("PYTHONPATH", "PATH", "HOME") if k in os.environ}
    return StdioServerParameters(command=sys.executable, args=["-m", "toolgym.cli", "mcp", *args], env=env)


async def bad_calls(session: ClientSession) -> list[types.CallToolResult]:
    """Calls the env refuses; each must come back as an error result, not a crash."""
    return [
        await session.call_tool("book_spaceship", {"to": "Mars"}),  # unknown tool
        await session.call_tool("search_hotels", {"city": 3}),  # wrong type
        await session.call_tool("search_hotels", {}),  # missing argument
        await session.call_tool("search_hotels", {"city": "X", "stars": "many", "colour": 1}),  # extra ones
        await session.call_tool("submit", {"answer": "not a plan"}),  # an answer of the wrong shape
    ]


async def not_an_object(session: ClientSession) -> str:
    """``arguments`` that are not a JSON object: the SDK refuses the request with a JSON-RPC error."""
    params = types.CallToolRequestParams.model_construct(name="search_hotels", arguments=[1, 2])
    try:
        await session.send_request(types.CallToolRequest(params=params), types.CallToolResult)
    except MCPError as exc:
        return str(exc)
    return "no error"


async def play_reference(session: ClientSession, policy: ProgramPolicy) -> types.CallToolResult:
    """Play the reference program's calls one at a time; the observation is rebuilt from the result texts."""
    observation = mk.ASSISTANT
    while True:
        action = policy.act(observation, {})
        texts = []
        for call in mk.parse_action(action).tool_calls:
            result = await session.call_tool(call.name, call.arguments)
            assert not result.is_error, result.content
            texts += [c.text for c in result.content if c.text.startswith("{")]
            if call.name == "submit":
                return result
        observation = "".join(mk.TOOL + t + mk.END for t in texts) + mk.ASSISTANT


async def scenario(task) -> dict:
    async with stdio_client(server_params(TASK)) as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()
        listed = await session.list_tools()
        prompt = await session.get_prompt("task")
        bad = await bad_calls(session)
        refused = await not_an_object(session)
        policy = ProgramPolicy(get_family(task.family).reference(task.params, task.tool_config))
        submitted = await play_reference(session, policy)
        after = await session.call_tool("submit", {"answer": policy.answer})
    return {"init": init, "tools": listed.tools, "prompt": prompt, "bad": bad, "refused": refused,
            "submitted": submitted, "after": after}  # fmt: skip


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")  # the deliberately malformed request
def test_an_mcp_client_lists_tools_plays_the_reference_to_reward_1_and_bad_calls_are_error_results():
    task, _ = SynthSource(get_family("trip"), [1]).get(TASK)
    got = anyio.run(scenario, task)

    assert task.prompt in got["init"].instructions
    assert got["prompt"].messages[0].content.text.startswith(task.prompt)
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in task.tools}
    assert {t.name: t.input_schema for t in got["tools"]} == schemas  # toolgym's own schemas, submit included
    assert "submit" in schemas

    for result in got["bad"]:
        assert result.is_error, result.content
        assert '"error"' in result.content[0].text
    assert "book_spaceship" in got["bad"][0].content[0].text
    assert "city" in got["bad"][1].content[0].text
    assert "no error" not in got["refused"]  # refused by the protocol layer; the server lived on

    submitted = got["submitted"]
    assert submitted.structured_content["reward"] == 1.0 and submitted.structured_content["passed"] is True
    assert submitted.content[-1].text == "reward: 1"
    assert got["after"].is_error and "episode is over" in got["after"].content[0].text


def test_bad_arguments_are_one_error_line(tmp_path):
    runner = CliRunner()
    for args in (["not-a-task"], ["trip-fly-sX-d1"], ["trip-fly-s0-d1", "--task", "x"], [TASK, "--max-calls", "0"]):
        result = runner.invoke(app, ["mcp", *args])
        assert result.exit_code == 2, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), (args, result.output)
