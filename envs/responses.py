"""The OpenAI Responses-API view of an episode: ``info["response_items"]``, next to ``info["messages"]``.

The chat view (:mod:`toolgym.envs.chat`) is a list of messages; the Responses API speaks in
*items*. This module maps one onto the other, item shapes exactly as the ``openai`` package types
them (``ResponseInputItemParam``; tested by validating against those types):

=====================================  ==================================================================
chat message                           Responses items, in this order
=====================================  ==================================================================
``system`` / ``user``                  ``{"type": "message", "role": …, "content": text}``
``assistant``                          ``reasoning`` (``content: [{"type": "reasoning_text", …}]``,
                                       ``summary: []``, id ``rs_<turn>``) when it has reasoning; an output
                                       ``message`` (``output_text``, id ``msg_<turn>``) when it has content;
                                       one ``function_call`` per tool call (``call_id`` the chat view's
                                       ``call_<turn>_<i>``, id ``fc_<turn>_<i>``, ``arguments`` JSON text)
``tool`` with a ``tool_call_id``       ``{"type": "function_call_output", "call_id": …, "output": payload}``
``tool`` without one                   ``{"type": "message", "role": "developer", "content": payload}``
=====================================  ==================================================================

Decisions:

* **A turn-level notice is a developer message.** The env's own notices ("no tool call in this
  turn", the turns-left notice, markup errors) answer no call, and a ``function_call_output``
  must name one; ``developer`` is the role the API gives text from the harness rather than the
  user. :func:`messages_from_items` reads a developer (or system) message after the first user
  message back as that notice, so the two views carry the same conversation.
* **Every assistant turn has at least one item**: a turn with no reasoning, no content and no
  call (an empty action) is an output message with empty text, so turns never merge.
* **Ids are the turn's own** (``rs_3``, ``msg_3``, ``fc_3_0``), deterministic like the chat view's
  call ids. The hosted OpenAI API accepts back only reasoning items it issued itself (with their
  ``encrypted_content``); self-hosted servers (vLLM, SGLang) read the reasoning text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Roles of Responses input messages that carry a conversation's opening (system text, prompt).
_OPENING = ("system", "developer", "user")


def response_tools(tools: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat-style tool schemas (``info["tools"]``) as Responses ``FunctionToolParam`` dicts.

    Args:
        tools: ``[{"type": "function", "function": {"name", "description", "parameters"}}, …]``.

    Returns:
        ``[{"type": "function", "name", "description", "parameters", "strict": False}, …]``
        (``strict`` False: the env validates arguments itself and answers errors in the episode).
    """
    out = []
    for t in tools:
        fn = t["function"]
        out.append(
            {
                "type": "function",
                "name": fn["name"],
                "description": fn.get("description") or "",
                "parameters": fn.get("parameters") or {"type": "object", "properties": {}},
                "strict": False,
            }
        )
    return out


def assistant_items(turn: int, message: dict[str, Any]) -> list[dict[str, Any]]:
    """The items of one assistant message of the chat view (see the module table).

    Args:
        turn: 1-based turn number (the item ids' suffix).
        message: An assistant message (``reasoning_content``, ``content``, ``tool_calls``).
    """
    items: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content")
    if reasoning is not None:
        items.append(
            {
                "type": "reasoning",
                "id": f"rs_{turn}",
                "summary": [],
                "content": [{"type": "reasoning_text", "text": reasoning}],
            }
        )
    calls = message.get("tool_calls") or []
    content = message.get("content") or ""
    if content or not (items or calls):
        items.append(
            {
                "type": "message",
                "id": f"msg_{turn}",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": content, "annotations": []}],
            }
        )
    for i, c in enumerate(calls):
        items.append(
            {
                "type": "function_call",
                "id": f"fc_{turn}_{i}",
                "call_id": c.get("id") or f"call_{turn}_{i}",
                "name": c["function"]["name"],
                "arguments": c["function"]["arguments"],
                "status": "completed",
            }
        )
    return items


def response_items(messages: Sequence[dict[str, Any]], first_turn: int = 1) -> list[dict[str, Any]]:
    """Chat-view messages (``info["messages"]``, or a slice of them) as Responses input items.

    Args:
        messages: OpenAI-style chat messages as the env keeps them.
        first_turn: The turn number of the first assistant message in ``messages`` (for a slice).

    Returns:
        The items, in conversation order (see the module table).

    Raises:
        ValueError: For an unknown role.
    """
    items: list[dict[str, Any]] = []
    turn = first_turn
    for m in messages:
        role = m["role"]
        if role in ("system", "user"):
            items.append({"type": "message", "role": role, "content": m["content"]})
        elif role == "assistant":
            items += assistant_items(turn, m)
            turn += 1
        elif role == "tool":
            if m.get("tool_call_id") is None:
                items.append({"type": "message", "role": "developer", "content": m["content"]})
            else:
                items.append({"type": "function_call_output", "call_id": m["tool_call_id"], "output": m["content"]})
        else:
            raise ValueError(f"unknown message role {role!r}")
    return items


def _text(content: Any, kinds: tuple[str, ...]) -> str:
    """A message's content as one string: a plain string, or its text parts of ``kinds`` joined."""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", p.get("refusal", "")) for p in content or () if p.get("type") in kinds)


def reasoning_text(item: dict[str, Any]) -> str:
    """A reasoning item's text: its ``reasoning_text`` content, else its summaries joined by blank lines."""
    parts = [p["text"] for p in item.get("content") or () if p.get("type") == "reasoning_text"]
    if parts:
        return "".join(parts)
    return "\n\n".join(p["text"] for p in item.get("summary") or () if p.get("type") == "summary_text")


def _starts_turn(message: dict[str, Any] | None, kind: str) -> bool:
    """Whether an assistant-side item of ``kind`` opens a new assistant message after ``message`` (the last one)."""
    if message is None or message["role"] != "assistant":
        return True
    if kind == "function_call":
        return False
    if message["tool_calls"]:  # reasoning or text after a call: the next turn
        return True
    return kind == "reasoning" and (message["reasoning_content"] is not None or bool(message["content"]))


def messages_from_items(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Responses input items back to chat-view messages (the inverse of :func:`response_items`).

    Consecutive assistant-side items (reasoning, assistant messages, function calls) form one
    assistant message; a reasoning item or an assistant message after a function call starts a
    new one. A developer or system message after the first user message is a turn-level notice
    (a tool message without ``tool_call_id``); before it, it is the system text.

    Raises:
        ValueError: For an item of a type this view does not use (web search, images, …).
    """
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # call id -> the called tool's name (tool messages carry it)
    seen_user = False
    for item in items:
        kind = item.get("type", "message")
        role = item.get("role")
        if kind == "message" and role in _OPENING and not (seen_user and role != "user"):
            text = _text(item["content"], ("input_text", "output_text"))
            out.append({"role": "system" if role == "developer" else role, "content": text})
            seen_user = seen_user or role == "user"
            continue
        if kind == "message" and role in ("system", "developer"):
            text = _text(item["content"], ("input_text",))
            out.append({"role": "tool", "tool_call_id": None, "name": None, "content": text})
            continue
        if kind == "function_call_output":
            output = item["output"]
            text = output if isinstance(output, str) else _text(output, ("input_text",))
            cid = item["call_id"]
            out.append({"role": "tool", "tool_call_id": cid, "name": names.get(cid), "content": text})
            continue
        if kind not in ("reasoning", "message", "function_call"):
            raise ValueError(f"a Responses item of type {kind!r} has no place in a toolgym conversation")
        if _starts_turn(out[-1] if out else None, kind):
            out.append({"role": "assistant", "content": "", "reasoning_content": None, "tool_calls": []})
        m = out[-1]
        if kind == "function_call":
            call = {"name": item["name"], "arguments": item["arguments"]}
            m["tool_calls"].append({"id": item["call_id"], "type": "function", "function": call})
            names[item["call_id"]] = item["name"]
        elif kind == "reasoning":
            m["reasoning_content"] = reasoning_text(item)
        else:
            m["content"] += _text(item["content"], ("output_text", "input_text", "refusal"))
    return out


__all__ = ["assistant_items", "messages_from_items", "reasoning_text", "response_items", "response_tools"]
