"""The ``openai`` policy: any OpenAI-compatible endpoint, Chat Completions or Responses (vLLM, SGLang, …).

``api="responses"`` (``toolgym eval --api responses``) speaks the Responses API instead: the
conversation goes out as the env's Responses view (:mod:`toolgym.envs.responses`, ``store=False``),
the reply's reasoning, message and function-call items come back as the same action text
(:func:`response_action`); retries, errors and the probe are the chat path's.

Each action is one request: the episode's ``info["messages"]`` (the env's chat view,
:mod:`toolgym.envs.chat`) and ``info["tools"]`` go out; the reply's ``reasoning_content``,
``content`` and ``tool_calls`` come back as the action text in the markup
(:func:`action_text`), so the env scores it exactly as it scores any other policy.

Decisions:

* **The official ``openai`` client does the HTTP**, with its bounded retries: exponential backoff
  with jitter (0.5 s doubling, at most 8 s, or the server's ``Retry-After``) on connection
  errors, timeouts, 408/409/429 and 5xx, ``max_retries`` times. After that, and for any other
  refusal, the episode fails with :class:`~toolgym.errors.EndpointError`, one line naming the
  endpoint, the model and the cause: the server's own message (one line). Only a 400 about tool
  support itself (its ``param`` is ``tools``/``tool_choice``, or its message is about tool choice,
  a tool-call parser, function calling or tools being unsupported: :func:`is_tool_support_error`)
  reads "does not support tool calls"; any other 400 that merely mentions tools is passed on as
  the server said it.
* **The endpoint is probed once** when the factory is built (``GET /models``, one retry), so a
  wrong URL fails in a second with one line, before any episode runs; ``model`` may be left out
  when the endpoint serves exactly one model (vLLM, ``toolgym serve``).
* **Nothing the model writes crashes the policy.** A call whose ``arguments`` are not a JSON
  object is rendered with its arguments as the raw JSON string, which the env's parser reads and
  answers with its own error observation (``arguments string is not JSON``); reasoning or content
  holding markup is passed through as written and the env reports it. On valid replies the text
  is exactly :func:`~toolgym.envs.markup.render_action` (canonical), so a conversation re-renders
  byte for byte. A reply cut at the token budget (``finish_reason == "length"``) gets no ``<|end|>``,
  as the in-process policy's action would not.
* **Messages go out in the chat API's shape:** empty ``tool_calls`` lists, absent reasoning and
  tool messages' ``name`` are left out; a turn-level error (a tool message with no call id: "no
  tool call in this turn", the turns-left notice) goes out without ``tool_call_id``, which vLLM,
  SGLang and ``toolgym serve`` accept (OpenAI's own API insists on an id).
* **Sampling:** temperature, top-p and the token budget are sent only when given (reasoning models
  refuse a temperature); each request carries a seed derived from (seed, task, sample, turn), so a
  seeded endpoint repeats an eval.
* ``concurrency`` is accepted for the eval runner, which runs this policy's episodes in threads;
  all of them share one client (thread-safe, pooled connections).

Importing this module imports neither ``openai`` nor torch; the factory imports ``openai``.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from toolgym.envs import markup as mk
from toolgym.envs.rollout import Policy
from toolgym.errors import ConfigError, EndpointError, one_line
from toolgym.spec import TaskSpec

#: What to install for this policy and for ``toolgym serve``.
INSTALL_HINT = "pip install 'toolgym[serve]'"


class OpenAIPolicyConfig(BaseModel):
    """Options of the ``openai`` policy (the CLI's ``--base-url``, ``--model``, …)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(min_length=1, description="the endpoint's base URL, e.g. http://127.0.0.1:8000/v1")
    model: str | None = Field(None, description="model name; default: the endpoint's only model")
    api_key_env: str | None = Field(
        None, description="environment variable holding the API key (default OPENAI_API_KEY, or none)"
    )
    temperature: float | None = Field(None, ge=0, description="sent only when given")
    top_p: float | None = Field(None, gt=0, le=1, description="sent only when given")
    max_new_tokens: int | None = Field(None, ge=1, description="token budget per action (max_tokens), when given")
    timeout: float = Field(120.0, gt=0, description="seconds to wait for each response")
    max_retries: int = Field(4, ge=0, le=20, description="retries (with backoff) on 429, 5xx and connection errors")
    seed: int = Field(0, ge=0, description="seed of the per-request seeds")
    concurrency: int | None = Field(None, ge=1, description="episodes at once (used by the eval runner)")
    api: Literal["chat", "responses"] = Field(
        "chat", description="chat: POST /chat/completions; responses: POST /responses (the Responses API)"
    )


#: What a server says when it cannot serve tool calls (vLLM, SGLang, Ollama, llama.cpp, OpenAI).
_TOOL_SUPPORT = re.compile(
    r"tool[ _-]?choice|tool[ _-]?call[ _-]?parser|function[ _-]?calling"
    r"|(?:not|n't) support\w*\W+(?:\w+\W+){0,3}?tools?\b|\btools?\b(?:\W+\w+){0,3}?\W+(?:are|is) not supported",
    re.IGNORECASE,
)


def is_tool_support_error(message: str, param: str | None = None) -> bool:
    """Whether a 400's message (and ``param``) says the endpoint cannot serve tool calls.

    A message that merely mentions tools (``messages[3].tool_calls[0] needs …``, a refusal that
    says tool arguments are JSON) is not one.
    """
    return param in ("tools", "tool_choice") or _TOOL_SUPPORT.search(message) is not None


def _request_seed(*parts: Any) -> int:
    """A stable 31-bit seed (every OpenAI-compatible server accepts it) from any parts."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def call_text(name: str, arguments: str) -> str:
    """One tool call of a reply in the markup; never raises.

    Args:
        name: The function name (may be empty: the env then says the call has no name).
        arguments: The ``function.arguments`` string of the reply.

    Returns:
        The canonical call (:func:`~toolgym.envs.markup.render_call`) when ``arguments`` is a JSON
        object (or blank, meaning no arguments); otherwise the call with ``arguments`` kept as
        the raw JSON string, which the env's parser answers with its error observation.
    """
    args: Any
    try:
        args = mk.loads(arguments) if arguments.strip() else {}
    except ValueError:  # orjson.JSONDecodeError is a ValueError
        args = None
    if name and isinstance(args, dict):
        return mk.render_call(name, args)
    return mk.CALL_OPEN + mk.dumps({"name": name, "arguments": arguments}) + mk.CALL_CLOSE


def action_text(content: str | None, reasoning: str | None, calls: list[tuple[str, str]], ended: bool = True) -> str:
    """A chat reply as the action text the env reads.

    Args:
        content: The reply's ``content`` (None: empty).
        reasoning: Its ``reasoning_content`` (None: no ``<think>`` block).
        calls: ``(name, arguments JSON string)`` per tool call, in order.
        ended: False when the reply was cut at the token budget (no ``<|end|>``).

    Returns:
        ``<think>reasoning</think>`` + content + calls (+ ``<|end|>``): equal to
        :func:`~toolgym.envs.markup.render_action` whenever that accepts the parts and every
        call's arguments are a JSON object; otherwise the parts as written, for the env to judge.
    """
    head = "" if reasoning is None else mk.THINK_OPEN + reasoning + mk.THINK_CLOSE
    return head + (content or "") + "".join(call_text(n, a) for n, a in calls) + (mk.END if ended else "")


def wire_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``info["messages"]`` in the chat API's request shape (see the module docstring)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m["role"]
        if role == "assistant":
            w: dict[str, Any] = {"role": role, "content": m.get("content") or ""}
            if m.get("reasoning_content") is not None:
                w["reasoning_content"] = m["reasoning_content"]
            if m.get("tool_calls"):
                w["tool_calls"] = m["tool_calls"]
        elif role == "tool":
            w = {"role": role, "content": m["content"]}
            if m.get("tool_call_id") is not None:
                w["tool_call_id"] = m["tool_call_id"]
        else:
            w = {"role": role, "content": m["content"]}
        out.append(w)
    return out


def response_action(output: list[dict[str, Any]], cut: bool = False) -> str:
    """A Responses-API reply's ``output`` items as the action text the env reads.

    Args:
        output: The reply's output items as dicts: ``reasoning`` (its ``reasoning_text`` content,
            else its summaries: :func:`~toolgym.envs.responses.reasoning_text`), assistant
            ``message`` items (``output_text`` and ``refusal`` parts) and ``function_call`` items,
            in order; other item types (a hosted tool's) are left out.
        cut: True when the reply is ``incomplete`` for ``max_output_tokens`` (no ``<|end|>``).

    Returns:
        :func:`action_text` of the reasoning (several items joined by blank lines), the text and
        the calls.
    """
    from toolgym.envs.responses import reasoning_text

    thoughts: list[str] = []
    text: list[str] = []
    calls: list[tuple[str, str]] = []
    for item in output:
        kind = item.get("type")
        if kind == "reasoning":
            thoughts.append(reasoning_text(item))
        elif kind == "message":
            text += [p.get("text") or p.get("refusal") or "" for p in item.get("content") or ()]
        elif kind == "function_call":
            calls.append((item.get("name") or "", item.get("arguments") or ""))
    reasoning = "\n\n".join(thoughts) if thoughts else None
    return action_text("".join(text), reasoning, calls, ended=not cut)


def _reply_reasoning(message: Any) -> str | None:
    """``reasoning_content`` (DeepSeek, vLLM, SGLang) or ``reasoning`` (newer vLLM, OpenRouter) of a reply."""
    extra = getattr(message, "model_extra", None) or {}
    for key in ("reasoning_content", "reasoning"):
        value = getattr(message, key, None) if key in type(message).model_fields else extra.get(key)
        if isinstance(value, str):
            return value
    return None


class _Endpoint:
    """One client for all episodes of an eval (thread-safe), and the request settings."""

    def __init__(self, config: OpenAIPolicyConfig) -> None:
        try:
            import openai
        except ImportError as exc:
            raise ConfigError(f"the openai policy needs the 'openai' package ({INSTALL_HINT})") from exc
        self.openai: Any = openai  # imported here: the package is an extra
        self.config = config
        env = config.api_key_env or "OPENAI_API_KEY"
        key = os.environ.get(env)
        if key is None and config.api_key_env is not None:
            raise ConfigError(f"--api-key-env names {env}, which is not set in the environment")
        self.client: Any = openai.OpenAI(
            api_key=key or "EMPTY", base_url=config.base_url, timeout=config.timeout, max_retries=config.max_retries
        )
        self.model = config.model or self._only_model()

    def _where(self) -> str:
        return f"the endpoint {self.config.base_url}" + (f" (model {self.config.model})" if self.config.model else "")

    def _only_model(self) -> str:
        """The endpoint's one model, when ``model`` was not given."""
        try:
            ids = [m.id for m in self.client.with_options(max_retries=1).models.list()]
        except self.openai.OpenAIError as exc:
            raise self.failure(exc) from None
        if len(ids) != 1:
            raise ConfigError(f"{self._where()} serves {len(ids)} models {ids[:5]}; pick one with --model")
        return ids[0]

    def probe(self) -> None:
        """Fail now, with one line, when the endpoint cannot be reached (a 404 of ``/models`` is fine)."""
        try:
            self.client.with_options(max_retries=1).models.list()
        except self.openai.NotFoundError:
            pass
        except self.openai.OpenAIError as exc:
            raise self.failure(exc) from None

    def failure(self, exc: Exception) -> EndpointError:
        """The one-line error for a request that failed after the client's retries."""
        o, c = self.openai, self.config
        where = self._where()
        if isinstance(exc, o.APITimeoutError):
            return EndpointError(f"{where} did not answer within {c.timeout:g} s ({c.max_retries} retries)")
        if isinstance(exc, o.APIConnectionError):
            cause = exc.__cause__ or exc
            return EndpointError(f"cannot reach {where}: {type(cause).__name__}: {cause} ({c.max_retries} retries)")
        if isinstance(exc, o.APIStatusError):
            body = getattr(exc, "body", None)  # the reply's "error" object, when it has one
            raw = body.get("message") if isinstance(body, dict) else None
            if not isinstance(raw, str):  # the client's text, without its "Error code: 400 - " prefix
                raw = re.sub(r"^Error code: \d+ - ", "", str(getattr(exc, "message", exc)))
            said = " ".join(raw.split())[:300]
            if exc.status_code == 400 and is_tool_support_error(said, getattr(exc, "param", None)):
                return EndpointError(
                    f"{where} does not support tool calls (the server said: {said}); serve a model with tool "
                    "calling enabled (vLLM: --enable-auto-tool-choice --tool-call-parser …)"
                )
            return EndpointError(f"{where} answered HTTP {exc.status_code}: {said}")
        return EndpointError(f"{where} failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")

    def respond(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
        """One Responses-API request (``store=False``: the whole conversation goes out each time), as action text.

        The Responses API has no ``seed``: none is sent (a server that repeats evals needs one of its own).

        Raises:
            EndpointError: after the retries.
        """
        from toolgym.envs.responses import response_items, response_tools

        sampling = self.sampling("max_output_tokens")  # the Responses API has no seed
        try:
            reply = self.client.responses.create(
                model=self.model,
                input=response_items(messages),
                tools=response_tools(tools) or self.openai.omit,
                store=False,
                **sampling,
            )
        except self.openai.OpenAIError as exc:
            raise self.failure(exc) from None
        details = getattr(reply, "incomplete_details", None)
        cut = reply.status == "incomplete" and getattr(details, "reason", None) == "max_output_tokens"
        return response_action([item.model_dump() for item in reply.output], cut)

    def sampling(self, max_key: str) -> dict[str, Any]:
        """The configured sampling settings as request fields, unset ones left out.

        ``max_key`` names the length limit: ``max_tokens`` in Chat Completions, ``max_output_tokens``
        in Responses.
        """
        c = self.config
        fields = {"temperature": c.temperature, "top_p": c.top_p, max_key: c.max_new_tokens}
        return {k: v for k, v in fields.items() if v is not None}

    def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], seed: int) -> str:
        """One chat completion, as action text.

        Raises:
            EndpointError: after the retries, or when the reply has no choice.
        """
        sampling = {"seed": seed, **self.sampling("max_tokens")}
        try:
            reply = self.client.chat.completions.create(
                model=self.model, messages=wire_messages(messages), tools=tools or self.openai.omit, **sampling
            )
        except self.openai.OpenAIError as exc:
            raise self.failure(exc) from None
        if not getattr(reply, "choices", None):
            raise EndpointError(f"{self._where()} returned no choices")
        choice = reply.choices[0]
        message = choice.message
        calls = [
            (tc.function.name or "", tc.function.arguments or "")
            for tc in message.tool_calls or ()
            if getattr(tc, "function", None) is not None
        ]
        return action_text(message.content, _reply_reasoning(message), calls, ended=choice.finish_reason != "length")


class OpenAIPolicy:
    """One episode's policy: each ``act`` is one request with the whole conversation so far."""

    def __init__(self, endpoint: _Endpoint, seed: int, sample: int) -> None:
        self.endpoint, self.seed, self.sample = endpoint, seed, sample

    def act(self, observation: str, info: dict[str, Any]) -> str:
        """The endpoint's next action for the conversation in ``info["messages"]``.

        Raises:
            ConfigError: when the env keeps no chat view (``messages=False``).
            EndpointError: when the endpoint fails after its retries.
        """
        messages = info.get("messages")
        if messages is None:
            raise ConfigError("the openai policy needs info['messages']; make the env with messages=True")
        if self.endpoint.config.api == "responses":
            return self.endpoint.respond(messages, info.get("tools") or [])
        seed = _request_seed(self.seed, info.get("task_id"), self.sample, info.get("turn", 0))
        return self.endpoint.complete(messages, info.get("tools") or [], seed)


def openai_policy(seed: int = 0, **options: Any) -> Any:
    """The ``openai`` entry of ``toolgym.POLICIES``: a factory ``(task, world, sample) -> Policy``.

    Args:
        seed: Seed of the per-request seeds (positional too, as the scripted entries take it).
        **options: The other :class:`OpenAIPolicyConfig` fields (``base_url`` required).

    Raises:
        ConfigError: for an unknown or invalid option, a missing API-key variable, or a missing
            ``openai`` package.
        EndpointError: when the endpoint cannot be reached (probed here, once).
    """
    try:
        config = OpenAIPolicyConfig(seed=seed, **options)
    except ValidationError as exc:
        raise ConfigError(f"openai policy: {one_line(exc)}") from None
    endpoint = _Endpoint(config)
    if config.model is not None:
        endpoint.probe()

    def make(task: TaskSpec, world: Any, sample: int) -> Policy:
        return OpenAIPolicy(endpoint, config.seed, sample)

    return make
