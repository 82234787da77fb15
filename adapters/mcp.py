"""MCP: one task's tools served over the Model Context Protocol (stdio), so any MCP client can play it.

``toolgym mcp TASK_OR_DATASET`` runs :func:`serve_stdio`; the official MCP Python SDK (the
``mcp`` package, ``pip install 'toolgym[mcp]'``) speaks the protocol. What a client sees:

* **tools/list**: the task's toolset, each tool's ``inputSchema`` the JSON schema toolgym derived
  from its typed signature (the same schema a policy gets in ``info["tools"]``), ``submit`` among them.
* **tools/call**: runs through a real :class:`~toolgym.envs.toolenv.ToolEnv` episode, one call per
  env turn, so validation, name matching, observation caps and errors are exactly the env's. The
  result's text is the env's tool-result payload (``{"name": …, "content": …}`` JSON); a payload
  with an ``error`` (unknown tool, arguments failing validation, a tool that raised) is a result
  with ``isError: true`` saying what was wrong, never a crash or a protocol error.
* **submit** ends the episode: its result carries the verifier's reward, as text and as
  ``structuredContent`` ``{"reward", "passed", "reason"}``. After it (or after ``max_calls``
  calls, reward 0) every call is an error result saying the episode is over; restart the server
  to play again (one process, one episode: nothing carries over).
* **The task's prompt** is the server's ``instructions`` and the prompt ``task`` (prompts/get),
  for clients that show one or the other.

Decisions: one call per env turn (an MCP client calls tools one at a time), so the turn limit is
``max_calls`` (default 1,000, far above any reference solution's calls) rather than the env's 48
turns of batched calls. Requests the SDK itself cannot parse (``arguments`` not an object) are
answered by the SDK with a JSON-RPC error; the server keeps running.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from toolgym.envs import markup as mk
from toolgym.envs.sources import MemorySource
from toolgym.envs.toolenv import make_env
from toolgym.errors import ConfigError
from toolgym.spec import TaskSpec

#: What to install for ``toolgym mcp``.
INSTALL_HINT = "pip install 'toolgym[mcp]'"
_SUBMIT_NOTE = "When you have the answer, call submit: it ends the episode, and its result is your reward (0 to 1)."


class McpConfig(BaseModel):
    """Options of ``toolgym mcp``."""

    model_config = ConfigDict(extra="forbid")

    max_calls: int = Field(1000, ge=1, description="tool calls in the episode (each is one env turn); then reward 0")
    name: str = Field("toolgym", min_length=1, description="the server's name in the MCP handshake")


class Outcome(BaseModel):
    """One tool call's result, before it is put in MCP's types.

    Attributes:
        texts: The env's payloads of the call (the JSON texts), then any closing line.
        is_error: Whether the call failed (its payload holds an ``error``, or the episode is over).
        verdict: ``{"reward", "passed", "reason"}`` after ``submit``, else None.
    """

    texts: list[str]
    is_error: bool = False
    verdict: dict[str, Any] | None = None


class TaskEpisode:
    """One episode of one task, played one tool call at a time (the MCP server's state; no MCP here).

    Args:
        task: The task.
        world: Its world (from the family's ``load_world`` or synthesis).
        config: Options (:class:`McpConfig`).
    """

    def __init__(self, task: TaskSpec, world: Any, config: McpConfig | None = None) -> None:
        self.config = config or McpConfig()
        self.task = task
        self.env = make_env(
            task.family, source=MemorySource([(task, world)]), max_turns=self.config.max_calls, messages=False
        )
        self.env.reset(options={"task_id": task.task_id})
        self.over: str | None = None  # why the episode is over, once it is

    @property
    def instructions(self) -> str:
        """The task's prompt and how the episode ends (the server's ``instructions``)."""
        return f"{self.task.prompt}\n\n{_SUBMIT_NOTE}"

    def tools(self) -> list[dict[str, Any]]:
        """``[{"name", "description", "inputSchema"}, …]``: the task's tools with their toolgym schemas."""
        out = []
        for t in self.task.tools:
            fn = t["function"]
            schema = fn.get("parameters") or {"type": "object", "properties": {}}
            out.append({"name": fn["name"], "description": fn.get("description") or "", "inputSchema": schema})
        return out

    def call(self, name: str, arguments: dict[str, Any] | None) -> Outcome:
        """Run one tool call as one env turn.

        Args:
            name: The tool's name (an unknown one gets the env's error and the closest names).
            arguments: Its arguments (None: none). Any JSON object is accepted here; the env
                validates it against the tool's schema.
        """
        if self.over is not None:
            return Outcome(
                texts=[f"the episode is over ({self.over}); restart the server to play again"], is_error=True
            )
        action = mk.CALL_OPEN + mk.dumps({"name": name, "arguments": arguments or {}}) + mk.CALL_CLOSE + mk.END
        obs, reward, terminated, truncated, info = self.env.step(action)
        texts = mk.split_payloads(obs)
        failed = any("error" in mk.loads(p) for p in texts)
        if terminated:
            verdict = info.get("verdict") or {}
            summary = {"reward": float(reward), "passed": bool(verdict.get("passed")), "reason": verdict.get("reason")}
            self.over = f"submitted, reward {reward:g}"
            return Outcome(texts=[*texts, f"reward: {reward:g}"], verdict=summary)
        if truncated:
            self.over = f"the limit of {self.config.max_calls} tool calls was reached, reward 0"
            return Outcome(texts=[*texts, f"the episode is over: {self.over}"], is_error=True)
        return Outcome(texts=texts, is_error=failed)


def require_mcp() -> None:
    """Raise ConfigError (one line, naming the extra) when the ``mcp`` package is not installed."""
    try:
        import mcp.server.lowlevel  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"toolgym mcp needs the 'mcp' package ({INSTALL_HINT}): {exc}") from None


def build_server(episode: TaskEpisode) -> Any:
    """The MCP server (the SDK's low-level ``Server``) serving ``episode``.

    Raises:
        ConfigError: When the ``mcp`` package is not installed.
    """
    require_mcp()
    import mcp_types as types
    from mcp.server.lowlevel import Server

    tools = [
        types.Tool(name=t["name"], description=t["description"], input_schema=t["inputSchema"]) for t in episode.tools()
    ]
    prompt = types.Prompt(name="task", description=f"the task {episode.task.task_id}")

    async def list_tools(ctx: Any, params: Any) -> Any:
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: Any) -> Any:
        # Run in the event loop, not a worker thread: calls the client sends at once then run one
        # after another, as env turns must (a ToolEnv is not thread-safe).
        out = episode.call(params.name, params.arguments)
        content = [types.TextContent(text=t) for t in out.texts]
        return types.CallToolResult(content=content, is_error=out.is_error, structured_content=out.verdict)

    async def list_prompts(ctx: Any, params: Any) -> Any:
        return types.ListPromptsResult(prompts=[prompt])

    async def get_prompt(ctx: Any, params: Any) -> Any:
        if params.name != "task":
            raise ValueError(f"unknown prompt {params.name!r}; the one prompt is 'task'")
        text = types.TextContent(text=episode.instructions)
        return types.GetPromptResult(messages=[types.PromptMessage(role="user", content=text)])

    import toolgym

    return Server(
        episode.config.name,
        version=toolgym.__version__,
        instructions=episode.instructions,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
    )


def serve_stdio(task: TaskSpec, world: Any, config: McpConfig | None = None) -> None:
    """Serve one episode of ``task`` over stdio until the client closes the connection.

    Raises:
        ConfigError: When the ``mcp`` package is not installed.
    """
    server = build_server(TaskEpisode(task, world, config))
    import anyio
    from mcp.server.stdio import stdio_server

    async def run() -> None:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    anyio.run(run)


__all__ = ["INSTALL_HINT", "McpConfig", "Outcome", "TaskEpisode", "build_server", "require_mcp", "serve_stdio"]
