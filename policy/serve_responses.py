"""``POST /v1/responses`` of ``toolgym serve``: the OpenAI Responses API on the served model.

The subset that ``toolgym eval --policy openai --api responses`` sends, in the shapes the official
``openai`` client types. A request is read back into the chat route's own request
(:func:`chat_request`: its ``input`` items through
:func:`~toolgym.envs.responses.messages_from_items`, the inverse of the env's Responses view), then
rendered, generated from and parsed by the chat route's functions
(:func:`~toolgym.policy.serve.render_request`, the engine, :func:`~toolgym.policy.serve.reply_message`),
so a ToolEnv's conversation sent as Responses items renders to exactly the env's text, as it does
as chat messages (tested registry-wide), and the reply is the same action. The reply's ``output``
is that action as items (:func:`~toolgym.envs.responses.assistant_items`): a ``reasoning`` item
(its text as ``reasoning_text`` content), a ``message`` with one ``output_text`` part, one
``function_call`` per tool call (``call_id`` ``call_<hex>``, JSON-text ``arguments``).

Decisions:

* **Input.** ``input`` is a string (one user message) or a non-empty list of ``message`` (roles
  ``system``, ``developer``, ``user``, ``assistant``; content a string or ``input_text`` /
  ``output_text`` / ``refusal`` parts), ``reasoning`` (``reasoning_text`` content or ``summary``),
  ``function_call`` and ``function_call_output`` items; an item without ``type`` is a message, as
  in the API. Items are validated field by field (unknown fields are a 400 naming them; the
  fields the server's own reply items carry are accepted, so ``input += reply.output`` works).
  Any other item type (images, files, hosted tools' calls) is a 400 naming it. A developer or
  system message after the first user message is a turn-level notice, as in the env's view.
* **instructions** is the system text: it comes first, joined with a blank line to a system or
  developer message the input opens with. Then the chat route's system-text rule applies (the
  env's system text for ``tools`` first unless the text already lists the tools).
* **Errors about the conversation** (a special string in a message, a call whose arguments are not
  a JSON object, a context too long) are the chat route's, read on the input as chat messages
  (instructions first): their ``param`` is ``input`` and the message names the chat message.
* **Request fields.** Honoured: ``model`` (else 404), ``input``, ``instructions``, ``tools``
  (function tools only: ``name``, ``description``, ``parameters``, ``strict``, which is accepted
  and not enforced, as the chat route's), ``tool_choice`` (``"auto"`` only), ``temperature`` (0:
  greedy), ``top_p``, ``max_output_tokens``, ``store`` (false only: the server keeps no
  responses, so ``store=true`` and ``previous_response_id`` are 400s saying to send the whole
  conversation; absent means false), ``stream`` (false only). Accepted and ignored, as in the chat
  route: ``user``, ``metadata`` (echoed), ``parallel_tool_calls``. Any other field is a 400
  naming it. The Responses API has no ``seed``: the server's own seeded generator samples.
* **The reply** is ``status: "completed"``, or ``"incomplete"`` with ``incomplete_details.reason``
  ``"max_output_tokens"`` when the budget ran out before ``<|end|>`` (what the ``openai`` policy
  reads as a cut action). ``usage`` counts input and output tokens, and the output's reasoning
  tokens (:func:`~toolgym.policy.engine.reasoning_token_count`); cached tokens are not counted
  and read 0.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from toolgym.envs.responses import assistant_items, messages_from_items
from toolgym.policy.engine import APIError, Engine
from toolgym.policy.serve import (
    ChatRequest,
    Request,
    _budget,
    _check_model,
    _generate_unless_gone,
    _Strict,
    _validation_error,
    render_request,
    reply_message,
)


class TextPart(_Strict):
    """A text part of a message's content (``annotations``/``logprobs``: echoed reply fields, ignored)."""

    type: Literal["input_text", "output_text"]
    text: str
    annotations: Any = None
    logprobs: Any = None


class RefusalPart(_Strict):
    """A refusal part of an assistant message's content (read as its text)."""

    type: Literal["refusal"]
    refusal: str


class MessageItem(_Strict):
    """An input ``message`` item (``type`` may be left out, as in the API)."""

    type: Literal["message"] = "message"
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[Annotated[TextPart | RefusalPart, Field(discriminator="type")]]
    id: str | None = None
    status: str | None = None


class ReasoningText(_Strict):
    """A ``reasoning_text`` content part of a reasoning item."""

    type: Literal["reasoning_text"]
    text: str


class SummaryText(_Strict):
    """A ``summary_text`` summary of a reasoning item (its text when it has no content)."""

    type: Literal["summary_text"]
    text: str


class ReasoningItem(_Strict):
    """A ``reasoning`` item: its text (``content``, else ``summary``); encrypted reasoning is not this server's."""

    type: Literal["reasoning"]
    summary: list[SummaryText] = []
    content: list[ReasoningText] | None = None
    encrypted_content: None = None
    id: str | None = None
    status: str | None = None


class FunctionCallItem(_Strict):
    """A ``function_call`` item the model made (``arguments``: a JSON object as text)."""

    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(_Strict):
    """A ``function_call_output`` item: a tool's result for ``call_id``."""

    type: Literal["function_call_output"]
    call_id: str
    output: str | list[TextPart]
    id: str | None = None
    status: str | None = None


_ITEMS: dict[str, type[_Strict]] = {
    "message": MessageItem,
    "reasoning": ReasoningItem,
    "function_call": FunctionCallItem,
    "function_call_output": FunctionCallOutputItem,
}
#: The id prefix of each kind of output item (as the OpenAI API's).
_ID_PREFIX = {"reasoning": "rs", "message": "msg", "function_call": "fc"}
_TOOL_KEYS = ("type", "name", "description", "parameters", "strict")


class ResponsesRequest(_Strict):
    """``POST /v1/responses`` (see the module docstring for what is honoured)."""

    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["auto"] | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_output_tokens: int | None = Field(None, ge=1, strict=True)
    store: bool | None = Field(None, strict=True)
    stream: bool | None = Field(None, strict=True)
    previous_response_id: str | None = None
    parallel_tool_calls: bool | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = None


def input_items(req: ResponsesRequest) -> list[dict[str, Any]]:
    """The request's ``input`` as validated Responses items (a string: one user message).

    Raises:
        APIError: 400 for an empty list, an item of a type this server does not take, or an item
            whose fields do not fit its type (``param`` names the item and the field).
    """
    if isinstance(req.input, str):
        return [{"type": "message", "role": "user", "content": req.input}]
    if not req.input:
        raise APIError(400, "input is an empty list; send at least one item", "invalid_value", "input")
    out = []
    for i, item in enumerate(req.input):
        kind = item.get("type", "message")
        model = _ITEMS.get(kind) if isinstance(kind, str) else None
        if model is None:
            raise APIError(
                400,
                f"input[{i}] is an item of type {kind!r}; toolgym serve takes message, reasoning, "
                "function_call and function_call_output items",
                "invalid_value",
                f"input.{i}.type",
            )
        try:
            out.append(model.model_validate(item).model_dump(exclude_none=True))
        except ValidationError as exc:
            raise _validation_error(exc, ("input", i)) from None
    return out


def chat_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Responses function tools (flat: ``name``, ``parameters`` …) in the chat route's nested shape.

    Raises:
        APIError: 400 for a tool that is not a named function tool, or a field a function tool
            does not have (names given twice are the chat route's 400).
    """
    if tools is None:
        return None
    out = []
    for i, t in enumerate(tools):
        if t.get("type") != "function" or not isinstance(t.get("name"), str):
            raise APIError(
                400,
                f"tools[{i}] is not a function tool with a name (toolgym serve runs function tools only)",
                "invalid_value",
                f"tools[{i}]",
            )
        extra = sorted(set(t) - set(_TOOL_KEYS))
        if extra:
            raise APIError(
                400,
                f"Unrecognized request argument supplied: tools[{i}].{extra[0]}",
                "unknown_parameter",
                f"tools[{i}]",
            )
        out.append({"type": "function", "function": {k: t[k] for k in _TOOL_KEYS[1:4] if t.get(k) is not None}})
    return out


def _on_input(exc: APIError) -> APIError:
    """A chat-route error about ``messages`` as one about ``input`` (other errors as they are)."""
    if not (exc.param or "").startswith("messages"):
        return exc
    return APIError(exc.status, f"input, read as chat messages: {exc.message}", exc.code, "input")


def chat_request(req: ResponsesRequest) -> ChatRequest:
    """The request as the chat route's :class:`~toolgym.policy.serve.ChatRequest` (the same conversation).

    Raises:
        APIError: 400 for input items or tools this server does not take (see :func:`input_items`,
            :func:`chat_tools`).
    """
    messages = messages_from_items(input_items(req))
    if req.instructions is not None:
        if messages[0]["role"] == "system":
            messages[0] = {"role": "system", "content": req.instructions + "\n\n" + messages[0]["content"]}
        else:
            messages.insert(0, {"role": "system", "content": req.instructions})
    try:
        return ChatRequest.model_validate(
            {
                "model": req.model,
                "messages": messages,
                "tools": chat_tools(req.tools),
                "temperature": req.temperature,
                "top_p": req.top_p,
                "max_completion_tokens": req.max_output_tokens,
            }
        )
    except ValidationError as exc:  # the items validated, so this is not expected; still a 400, not a 500
        raise APIError(400, f"input cannot be read as a conversation: {exc}", "invalid_value", "input") from None


def output_items(action: str) -> tuple[list[dict[str, Any]], bool]:
    """A generated action as Responses output items, and whether it was cut at the token budget.

    The items are the env's view of the chat route's reply (:func:`reply_message`), with ids of
    their own (``rs_<hex>``, ``msg_<hex>``, ``fc_<hex>``); a cut action's message is ``incomplete``.
    """
    message, finish = reply_message(action)
    cut = finish == "length"
    items = assistant_items(0, message)
    for item in items:
        item["id"] = f"{_ID_PREFIX[item['type']]}_{uuid.uuid4().hex[:24]}"
        if cut and item["type"] == "message":
            item["status"] = "incomplete"
    return items, cut


def response_body(
    req: ResponsesRequest, model: str, action: str, usage: tuple[int, int, int], sampling: tuple[float, float, int]
) -> dict[str, Any]:
    """The Response object of a generated ``action``.

    Args:
        req: The request (its instructions, tools and metadata are echoed).
        model: The served model's name.
        action: The generated action text.
        usage: ``(input tokens, output tokens, reasoning tokens among the output)``.
        sampling: ``(temperature, top_p, max_output_tokens)`` as applied.
    """
    output, cut = output_items(action)
    n_in, n_out, n_thought = usage
    temperature, top_p, budget = sampling
    tools = [{"description": None, "parameters": None, "strict": None, **t} for t in req.tools or ()]
    return {
        "id": f"resp_{uuid.uuid4().hex}",
        "object": "response",
        "created_at": int(time.time()),
        "model": model,
        "status": "incomplete" if cut else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "error": None,
        "instructions": req.instructions,
        "metadata": req.metadata or {},
        "output": output,
        "parallel_tool_calls": True,  # a reply may hold several calls, whatever the request said
        "tool_choice": "auto",
        "tools": tools,
        "temperature": temperature,
        "top_p": top_p,
        "max_output_tokens": budget,
        "previous_response_id": None,
        "store": False,
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
        "usage": {
            "input_tokens": n_in,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": n_out,
            "output_tokens_details": {"reasoning_tokens": n_thought},
            "total_tokens": n_in + n_out,
        },
    }


def _refuse_unsupported(req: ResponsesRequest) -> None:
    """Refuse the settings this server cannot honour (streaming, stored responses).

    Raises:
        APIError: 400 ``unsupported_value`` naming the field.
    """
    if req.stream:
        raise APIError(400, "stream=true is not supported by toolgym serve", "unsupported_value", "stream")
    stateless = "toolgym serve keeps no responses: send store=false and the whole conversation as input"
    if req.store:
        raise APIError(400, f"store=true is not supported; {stateless}", "unsupported_value", "store")
    if req.previous_response_id is not None:
        raise APIError(
            400, f"previous_response_id is not supported; {stateless}", "unsupported_value", "previous_response_id"
        )


def add_responses_route(app: Any, engine: Engine) -> None:
    """Add ``POST /v1/responses`` for ``engine`` to the FastAPI ``app`` (errors: the app's handlers)."""
    config = engine.config

    @app.post("/v1/responses")
    async def responses(req: ResponsesRequest, request: Request) -> dict[str, Any]:
        _check_model(req.model, config)
        _refuse_unsupported(req)
        budget = _budget(req.max_output_tokens, config, "max_output_tokens")
        chat = chat_request(req)
        temperature = 1.0 if req.temperature is None else req.temperature
        top_p = req.top_p or 1.0
        try:
            text = render_request(chat)
            action, n_in, n_out, n_thought = await _generate_unless_gone(
                request, engine, text, temperature, top_p, budget, None
            )
        except APIError as exc:
            raise _on_input(exc) from None
        return response_body(req, config.name, action, (n_in, n_out, n_thought), (temperature, top_p, budget))
