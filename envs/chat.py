"""The OpenAI-style chat view of an episode: ``info["messages"]``, rebuilt from text and rendered back.

The env's text (:mod:`toolgym.envs.markup`) is the ground truth; this view carries the same
conversation as ``system``/``user``/``assistant``/``tool`` messages (``reasoning_content``,
``tool_calls`` with ``function.arguments`` a JSON string, tool messages holding the payload JSON
text), so chat-API consumers need no parser of ours. :func:`render_conversation` turns messages
back into the markup byte for byte for canonical actions, and :func:`messages_from_text`
rebuilds the messages from a stored episode (datasets store only the text).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from toolgym.envs.markup import (
    ASSISTANT,
    END,
    SYSTEM,
    THINK_CLOSE,
    THINK_OPEN,
    TOOL,
    USER,
    ParsedAction,
    dumps,
    loads,
    parse_action,
    render_action,
    render_call,
    split_payloads,
)


def turn_messages(
    turn: int, action: str, parsed: ParsedAction | None, payloads: list[str], n_errors: int, calls_ran: bool
) -> list[dict[str, Any]]:
    """The OpenAI-style messages of one env turn: the assistant message, then one tool message per payload.

    Args:
        turn: 1-based turn number (call ids are ``call_<turn>_<i>``).
        action: The raw action text (the content when it could not be parsed).
        parsed: The parsed action, or None when it was not parsed (over the length limit).
        payloads: The tool-result payloads of the observation, in order.
        n_errors: How many leading payloads are turn-level errors (no call id).
        calls_ran: Whether the parsed calls were dispatched (each has a payload after the errors).
    """
    calls = parsed.tool_calls if parsed is not None and calls_ran else []
    ids = [f"call_{turn}_{i}" for i in range(len(calls))]
    out: list[dict[str, Any]] = [
        {
            "role": "assistant",
            "content": parsed.content if parsed is not None else action,
            "reasoning_content": parsed.reasoning if parsed is not None else None,
            "tool_calls": [
                {"id": i, "type": "function", "function": {"name": c.name, "arguments": dumps(c.arguments)}}
                for i, c in zip(ids, calls, strict=True)
            ],
        }
    ]
    names: list[str | None] = [None] * n_errors + [c.name for c in calls]
    call_ids: list[str | None] = [None] * n_errors + list(ids)
    for p, name, cid in zip(payloads, names, call_ids, strict=True):
        out.append({"role": "tool", "tool_call_id": cid, "name": name, "content": p})
    return out


def messages_from_text(system: str, prompt: str, actions: list[str], observations: list[str]) -> list[dict[str, Any]]:
    """Rebuild an episode's ``info["messages"]`` from its text (datasets store only the text).

    Exact for episodes whose actions stayed within the env's length limit (always true of
    reference trajectories); tested against the env's own messages.
    """
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
    for turn, (action, obs) in enumerate(zip(actions, observations[1:], strict=True), 1):
        parsed = parse_action(action)
        payloads = split_payloads(obs)
        n_errors = 0
        while n_errors < len(payloads) and loads(payloads[n_errors]).get("name") is None:
            n_errors += 1
        ran = not parsed.fatal and len(payloads) - n_errors == len(parsed.tool_calls)
        messages += turn_messages(turn, action, parsed, payloads, n_errors, ran)
    return messages


def render_conversation(
    messages: Sequence[dict[str, Any]],
    add_generation_prompt: bool = False,
    drop_old_reasoning: bool = True,
    verbatim: bool = False,
) -> str:
    """Render OpenAI-style chat messages in the markup.

    Args:
        messages: ``system``/``user``/``assistant``/``tool`` messages as in ``info["messages"]``.
            Assistant messages use ``reasoning_content``, ``content`` and ``tool_calls`` (with
            ``function.arguments`` a JSON string); tool messages carry the payload JSON text.
        add_generation_prompt: Append ``<|assistant|>`` when the last message is not an
            assistant turn (the state in which a policy acts).
        drop_old_reasoning: Apply the DeepSeek-V3.2 rule: drop the reasoning of assistant turns
            before the last user message.
        verbatim: Render an assistant message that :func:`render_action` refuses (content
            holding an action tag the parser kept as text, e.g. a second ``<think>``) as its
            parts written out: ``<think>reasoning</think>``, content, the calls, ``<|end|>``; the
            env's text of such a turn is exactly that when it came from the env's own chat view.
            Used by ``toolgym serve``, which must accept whatever the model emitted.

    Returns:
        The conversation text. For an episode whose actions were canonical (as produced by
        :func:`render_action`) this equals ``obs0 + act1 + obs1 + …`` exactly.

    Raises:
        ValueError: for an unknown role, or an assistant message :func:`render_action` refuses
            (content holding markup, e.g. an over-long action kept verbatim).
    """
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    parts: list[str] = []
    for i, m in enumerate(messages):
        role = m["role"]
        if role == "system":
            parts.append(SYSTEM + m["content"] + END)
        elif role == "user":
            parts.append(USER + m["content"] + END)
        elif role == "tool":
            parts.append(TOOL + m["content"] + END)
        elif role == "assistant":
            reasoning = m.get("reasoning_content")
            if drop_old_reasoning and i < last_user:
                reasoning = None
            calls = [(c["function"]["name"], loads(c["function"]["arguments"])) for c in m.get("tool_calls") or ()]
            content = m.get("content") or ""
            try:
                parts.append(ASSISTANT + render_action(calls, reasoning, content))
            except ValueError:
                if not verbatim:
                    raise
                head = "" if reasoning is None else THINK_OPEN + reasoning + THINK_CLOSE
                parts.append(ASSISTANT + head + content + "".join(render_call(n, a) for n, a in calls) + END)
        else:
            raise ValueError(f"unknown message role {role!r}")
    if add_generation_prompt and (not messages or messages[-1]["role"] != "assistant"):
        parts.append(ASSISTANT)
    return "".join(parts)
