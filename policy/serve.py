"""``toolgym serve``: the in-repo policy behind OpenAI-compatible Chat Completions and Responses APIs (FastAPI).

Routes: ``GET /v1/models`` (the one served model) and ``POST /v1/chat/completions`` with
``tools``; the reply carries ``content``, ``reasoning_content`` and ``tool_calls`` (ids, JSON-string
arguments). ``POST /v1/responses`` (:mod:`toolgym.policy.serve_responses`) reads its ``input`` items
back into this route's request and answers with the same generation as ``output`` items
(``reasoning``, ``message``, ``function_call``). Every error is OpenAI-style JSON,
``{"error": {"message", "type", "param", "code"}}``.

**Token-exact with the env.** A request is rendered with the env's own markup: its messages go
through :func:`toolgym.envs.chat.render_conversation` (the inverse of the env's ``info["messages"]``),
so a conversation produced by a ToolEnv renders to exactly the env's text ``obs0 + act1 + obs1 + …``
(canonical actions; tested), which is tokenized and generated from with
:class:`~toolgym.policy.generate.Session` until ``<|end|>``, as ``--policy model`` does. The action
is parsed with :func:`~toolgym.envs.markup.parse_action`; a turn the env would refuse (a forged role
marker) comes back without tool calls, as the env's chat view records it.

Decisions:

* **System text.** A system message that already lists the tools (the env's, which states the
  limits and the schemas) is used verbatim. Otherwise the env's system text for the request's
  ``tools`` (:func:`toolgym.envs.toolenv.system_text`) comes first, followed by the client's own
  system message, if any; ``developer`` is read as ``system``.
* **Special strings.** In system, user and tool messages a role marker of any ``<|name|>`` shape
  (``<|pad|>``, ``<|bos|>`` too) is refused (400), and so is an action tag outside the system text
  (the env's description of the action format), since the tokenizer would read them as markup.
  An **assistant** message is what the model emitted, and the env's text holds that action
  exactly as sampled: its content and reasoning may carry the tokenizer's other special strings
  (a barely trained model samples ``<|bos|>``) and action tags the parser kept as text (a second
  ``<think>``), so the server accepts its own replies echoed back and renders them to the env's
  text token for token (a turn that is not canonical is rendered as written: reasoning, content,
  calls, see :func:`~toolgym.envs.chat.render_conversation`'s ``verbatim``). Only the markup's
  role markers (``<|user|>``, ``<|end|>``, …) stay refused there: the parser never leaves them in
  a reply's fields, and rendered they would forge a turn.
* **Request fields.** Honoured: ``model`` (must be the served one, else 404), ``messages``,
  ``tools``, ``tool_choice`` (``"auto"`` only), ``temperature`` (0: greedy), ``top_p``,
  ``max_tokens``/``max_completion_tokens``, ``seed`` (else the server's own seeded generator),
  ``n`` (1 only), ``stream`` (false only). Accepted and ignored, as harmless: ``user``,
  ``metadata``, ``store``, ``parallel_tool_calls``; in messages, the reply fields a client echoes
  back (``refusal``, ``annotations``, ``audio``, ``function_call``, ``name``). Any other field is a 400
  naming it, so a setting the server would silently drop never looks honoured.
* **One generation at a time** (a lock around the model): the server is for evaluation and
  checking, one request per episode turn; ``--policy model`` is the batched path.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from toolgym.envs import chat
from toolgym.envs import limits as lim
from toolgym.envs import markup as mk
from toolgym.envs.toolenv import system_text
from toolgym.errors import ConfigError, one_line
from toolgym.policy.engine import APIError, Engine, Generated, ServeConfig

try:  # a module-level name, so FastAPI can read the endpoint's ``request: Request`` annotation
    from starlette.requests import Request
except ImportError:  # the serve extra is not installed: create_app says so when called
    Request = Any  # type: ignore[misc,assignment]

#: A role marker of any ``<|name|>`` shape (the tokenizer's pad and bos too), and the action tags.
_ROLE_RE = re.compile(r"<\|[a-z_]*\|>")
_ACTION_TAGS = (mk.THINK_OPEN, mk.THINK_CLOSE, mk.CALL_OPEN, mk.CALL_CLOSE)
#: The markup's role markers: the only special strings refused in an assistant message's text.
_MARKERS = (mk.SYSTEM, mk.USER, mk.ASSISTANT, mk.TOOL, mk.END)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FunctionCall(_Strict):
    """``function`` of a tool call: its name and arguments (a JSON object as a string)."""

    name: str
    arguments: str


class ToolCallIn(_Strict):
    """A tool call of an assistant message in a request."""

    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class TextPart(_Strict):
    """A text part of a message's content list."""

    type: Literal["text"]
    text: str


class Message(_Strict):
    """A request message; the reply-only fields a client may echo back are accepted and ignored."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    refusal: Any = None
    annotations: Any = None
    audio: Any = None
    function_call: Any = None

    def text(self) -> str:
        """The content as one string (text parts joined)."""
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class ChatRequest(_Strict):
    """``POST /v1/chat/completions`` (see the module docstring for what is honoured)."""

    model: str
    messages: list[Message] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["auto"] | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, strict=True)  # "8" is refused, as the OpenAI API does
    max_completion_tokens: int | None = Field(None, ge=1, strict=True)
    seed: int | None = Field(None, ge=0, lt=2**63, strict=True)
    n: int | None = Field(None, strict=True)
    stream: bool | None = Field(None, strict=True)
    user: str | None = None
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    parallel_tool_calls: bool | None = None


def _check_specials(text: str, where: str, index: int, action_tags: bool, assistant: bool = False) -> None:
    """Refuse a role marker in ``text``, and an action tag unless ``action_tags`` (the system text).

    With ``assistant`` (an assistant message's content or reasoning: what the model emitted) only
    the markup's role markers are refused; the tokenizer's other special strings and action tags
    may occur (see the module docstring).

    Raises:
        APIError: 400 naming the message and the string.
    """
    if "<" not in text:
        return
    tag: str | None
    if assistant:
        tag = next((t for t in _MARKERS if t in text), None)
    else:
        m = _ROLE_RE.search(text)
        tag = m.group() if m else None
    if tag is None and not action_tags:
        tag = next((t for t in _ACTION_TAGS if t in text), None)
    if tag is not None:
        raise APIError(
            400,
            f"messages[{index}] ({where}) contains {tag!r}, a special string of the policy's markup; "
            "it may not occur in message text (tool arguments and results are JSON, where it is escaped)",
            "invalid_value",
            f"messages[{index}]",
        )


def _tool_schemas(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The request's function tools, each with a name no other tool has.

    Raises:
        APIError: 400 for a tool that is not a named function, or a name given twice (the model
            could not tell the two apart).
    """
    out, seen = [], set()
    for i, t in enumerate(tools or ()):
        fn = t.get("function")
        if t.get("type", "function") != "function" or not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise APIError(400, f"tools[{i}] is not a function tool with a name", "invalid_value", f"tools[{i}]")
        if fn["name"] in seen:
            raise APIError(400, f"tools[{i}]: a second tool named {fn['name']!r}", "invalid_value", f"tools[{i}]")
        seen.add(fn["name"])
        out.append(t)
    return out


def request_messages(req: ChatRequest) -> list[dict[str, Any]]:
    """The request as chat messages for :func:`~toolgym.envs.chat.render_conversation` (system text decided).

    Raises:
        APIError: a special string in message text, a tool call whose arguments are not a JSON
            object, or a malformed tool.
    """
    tools = _tool_schemas(req.tools)
    out: list[dict[str, Any]] = []
    for i, m in enumerate(req.messages):
        role = "system" if m.role == "developer" else m.role
        text = m.text()
        _check_specials(text, role, i, action_tags=role in ("system", "assistant"), assistant=role == "assistant")
        if role != "assistant":
            out.append({"role": role, "content": text})
            continue
        if m.reasoning_content is not None:
            _check_specials(m.reasoning_content, "reasoning", i, action_tags=True, assistant=True)
        calls = []
        for j, c in enumerate(m.tool_calls or ()):
            try:
                args = mk.loads(c.function.arguments) if c.function.arguments.strip() else {}
            except ValueError:
                args = None
            if not isinstance(args, dict) or not c.function.name:
                raise APIError(
                    400,
                    f"messages[{i}].tool_calls[{j}] needs a name and arguments that are a JSON object",
                    "invalid_value",
                    f"messages[{i}].tool_calls[{j}].function",
                )
            calls.append({"function": {"name": c.function.name, "arguments": mk.dumps(args)}})
        out.append(
            {"role": "assistant", "content": text, "reasoning_content": m.reasoning_content, "tool_calls": calls}
        )
    if out[0]["role"] == "system" and lim.TOOLS_HEADER in out[0]["content"]:
        return out
    head = system_text(tools)
    if out[0]["role"] == "system":
        out[0] = {"role": "system", "content": head + "\n\n" + out[0]["content"]}
    else:
        out.insert(0, {"role": "system", "content": head})
    return out


def render_request(req: ChatRequest) -> str:
    """The policy's context for a request: the conversation in the markup, ending in ``<|assistant|>``.

    Raises:
        APIError: for messages that cannot be rendered (see :func:`request_messages`).
    """
    messages = request_messages(req)
    try:
        return chat.render_conversation(messages, add_generation_prompt=True, verbatim=True)
    except ValueError as exc:
        raise APIError(400, f"messages cannot be rendered: {exc}", "invalid_value", "messages") from None


def reply_message(action: str) -> tuple[dict[str, Any], str]:
    """The assistant message of a generated action, and whether its calls make it ``tool_calls``.

    Returns:
        ``(message, finish_reason)``: ``content`` (None when empty), ``reasoning_content``,
        ``tool_calls`` (ids ``call_<hex>``, canonical JSON arguments; none when the env would run
        none); finish ``"length"`` without ``<|end|>``, else ``"tool_calls"`` or ``"stop"``.
    """
    parsed = mk.parse_action(action)
    calls = [] if parsed.fatal else parsed.tool_calls
    message: dict[str, Any] = {
        "role": "assistant",
        "content": parsed.content or None,
        "reasoning_content": parsed.reasoning,
    }
    if calls:
        message["tool_calls"] = [
            {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": c.name, "arguments": mk.dumps(c.arguments)},
            }
            for c in calls
        ]
    finish = "length" if not parsed.ended else ("tool_calls" if calls else "stop")
    return message, finish


def _validation_error(exc: Any, where: tuple[str | int, ...] = ()) -> APIError:
    """A request that does not fit its model (:class:`ChatRequest`, …), as one OpenAI-style 400.

    ``where`` is the location of the validated value in the request body (``("input", 3)`` for
    one input item of ``POST /v1/responses``), put in front of the error's own.
    """
    errors = exc.errors()
    first = errors[0] if errors else {"type": "", "loc": (), "msg": str(exc)}
    loc = [str(x) for x in (*where, *first.get("loc", ())) if x != "body"]
    param = ".".join(loc) or None
    if first.get("type") == "extra_forbidden":
        return APIError(400, f"Unrecognized request argument supplied: {param}", "unknown_parameter", param)
    if first.get("type") == "json_invalid":
        return APIError(400, f"the request body is not valid JSON: {first.get('msg')}", "invalid_json")
    return APIError(400, f"invalid request: {one_line(exc)}", "invalid_value", param)


def _budget(requested: int | None, config: ServeConfig, param: str = "max_tokens") -> int:
    """A request's token budget: ``requested`` (the field named ``param``), or the server's default.

    Raises:
        APIError: 400 when it is over ``config.max_tokens_limit``.
    """
    budget = requested or config.max_tokens
    if budget > config.max_tokens_limit:
        raise APIError(
            400,
            f"{param}={budget} is over this server's limit of {config.max_tokens_limit}",
            "invalid_value",
            param,
        )
    return budget


def _check_model(model: str, config: ServeConfig) -> None:
    """Refuse a request for a model this server does not serve.

    Raises:
        APIError: 404 ``model_not_found``.
    """
    if model != config.name:
        raise APIError(
            404,
            f"The model {model!r} does not exist; this server serves {config.name!r}",
            "model_not_found",
            "model",
        )


def create_app(engine: Engine) -> Any:
    """The FastAPI application serving ``engine`` (see the module docstring)."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    config = engine.config
    app = FastAPI(title="toolgym serve", docs_url=None, redoc_url=None, openapi_url=None)
    created = int(time.time())

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = _validation_error(exc)
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        err = APIError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", code)
        return JSONResponse(err.body(), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        err = APIError(500, f"internal error: {type(exc).__name__}: {exc}", "internal_error")
        return JSONResponse(err.body(), status_code=500)

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": config.name, "object": "model", "created": created, "owned_by": "toolgym"}],
        }

    @app.post("/v1/chat/completions")
    async def completions(req: ChatRequest, request: Request) -> dict[str, Any]:
        _check_model(req.model, config)
        if req.n not in (None, 1):
            raise APIError(
                400, f"n={req.n} is not supported; toolgym serve returns one choice (n=1)", "unsupported_value", "n"
            )
        if req.stream:
            raise APIError(400, "stream=true is not supported by toolgym serve", "unsupported_value", "stream")
        budget = _budget(req.max_completion_tokens or req.max_tokens, config)
        text = render_request(req)
        temperature = 1.0 if req.temperature is None else req.temperature
        action, n_prompt, n_completion, n_thought = await _generate_unless_gone(
            request, engine, text, temperature, req.top_p or 1.0, budget, req.seed
        )
        message, finish = reply_message(action)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": config.name,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": {
                "prompt_tokens": n_prompt,
                "completion_tokens": n_completion,
                "total_tokens": n_prompt + n_completion,
                "completion_tokens_details": {"reasoning_tokens": n_thought},
            },
        }

    from toolgym.policy.serve_responses import add_responses_route

    add_responses_route(app, engine)
    return app


async def _generate_unless_gone(request: Any, engine: Engine, *args: Any) -> Generated:
    """``engine.generate(*args)`` in a worker thread, cancelled when the client disconnects.

    The generation holds the engine's lock; without this a client that timed out or was
    killed kept it (and every other request) busy until its ``max_tokens`` were spent.
    """
    import asyncio

    from starlette.concurrency import run_in_threadpool

    cancel = threading.Event()
    work = asyncio.ensure_future(run_in_threadpool(engine.generate, *args, cancel))
    while not work.done():
        if await request.is_disconnected():
            cancel.set()
            break
        await asyncio.wait({work}, timeout=0.1)
    return await work


def listen(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket (port 0: a free one).

    Raises:
        ConfigError: when the address cannot be bound (in use, not an address of this machine).
    """
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
        sock.listen(128)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


class BackgroundServer:
    """A uvicorn server in a daemon thread (tests, benchmarks): ``with BackgroundServer(app) as url: …``.

    ``url`` is the API base, ``http://<host>:<port>/v1``.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.sock = listen(host, port)
        self.url = f"http://{host}:{self.sock.getsockname()[1]}/v1"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server at {self.url} did not start")
            time.sleep(0.01)
        return self.url

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def serve(checkpoint: str, host: str, port: int, config: ServeConfig, on_ready: Any = None) -> None:
    """Load ``checkpoint`` and serve it until interrupted (the ``toolgym serve`` command).

    Ctrl-C (SIGINT) is the normal way to stop: uvicorn finishes the requests in flight and this
    function returns (a second Ctrl-C stops at once). SIGTERM ends the process as uvicorn does.

    Raises:
        CheckpointError: a missing, corrupt or mismatched checkpoint.
        ConfigError: a missing ``fastapi``/``uvicorn``, or an address that cannot be bound.
    """
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise ConfigError(f"toolgym serve needs fastapi and uvicorn (pip install 'toolgym[serve]'): {exc}") from None
    from toolgym.policy.checkpoint import load_checkpoint

    app = create_app(Engine(load_checkpoint(checkpoint, device=config.device), config))
    sock = listen(host, port)
    if on_ready is not None:
        on_ready(f"http://{host}:{sock.getsockname()[1]}/v1")
    try:
        uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off")).run(sockets=[sock])
    except KeyboardInterrupt:  # Ctrl-C: uvicorn shut down gracefully, then re-raised the signal
        return
