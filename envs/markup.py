r"""The chat markup of DESIGN.md: its special strings, parser and renderer.

A conversation is plain text in a small fixed markup::

    <|system|>…<|end|><|user|>…<|end|><|assistant|><think>…</think>…
    <tool_call>{"name":…,"arguments":{…}}</tool_call><|end|><|tool|>{"name":…,"content":…}<|end|>
    <|assistant|>…

Special strings are single tokens of the policy tokenizer (``toolgym.policy.tokenizer`` adds
them as special tokens), so every observation starts and ends on a token boundary and a
policy's context ``obs0 + act1 + obs1 + ...`` is token-exact without re-tokenizing history.

Design choices:

* The parser never raises. Whatever a policy writes (half a ``<tool_call>``, bad JSON, two
  calls, text after a call, a megabyte of garbage) becomes a :class:`ParsedAction` whose
  ``errors`` say what was wrong and how to fix it; the env turns those into tool-role error
  observations. It is one linear scan over the tags, so its cost is linear in the action.
* Role markers (``<|system|>``, ``<|user|>``, ``<|assistant|>``, ``<|tool|>``) and a second
  ``<|end|>`` are not allowed inside an action: accepting them would let a policy forge a tool
  result or a user turn in its own context. Such an action executes no call.
* Tags inside ``<think>`` are reasoning text, not calls: only calls after the thought run.
* In a call body, an action tag inside a JSON string is string content; a role marker there
  rejects that call (not the turn) with the hint to write ``\u003c`` (:func:`parse_action`).
* **No special string occurs inside a payload.** :func:`dumps`, the env's one JSON writer (tool
  results and errors, echoed names and arguments, sandbox output, tool schemas, rendered calls),
  writes ``<`` as ``\u003c`` only where it starts a special string (``<|`` of any role-marker
  shape, and the action tags), so ``a < b`` in SQL or Python output stays readable and cheap;
  characters outside :data:`~toolgym.envs.textspace.CHARSET` become ``\uXXXX`` and lone
  surrogates U+FFFD. Synthesized text is checked instead (:func:`check_task_text`, where tasks are built and loaded):
  no special string in a prompt, no role marker in the system text, whose action tags are the
  env's deliberate description of the action format (the one exception).
* JSON is compact and canonical (orjson): the same data gives the same bytes (fewer tokens).
  Tool results are one JSON object per call, ``{"name": …, "content": …}`` or ``{"name": …,
  "error": "…"}``; the ``tool`` message carries exactly that text (rendering back is exact).
* Arguments nest at most :data:`MAX_ARG_DEPTH` levels: no tool needs more, and every JSON
  writer (orjson stops at 254, the standard library at the recursion limit) would fail deeper.
* The OpenAI-style chat view (``info["messages"]``, DeepSeek-V3.2 reasoning retention) lives in
  :mod:`toolgym.envs.chat`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from toolgym.envs.textspace import OUTSIDE_CHARSET, in_charset

SYSTEM = "<|system|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
TOOL = "<|tool|>"
END = "<|end|>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"

#: Every special string, in a fixed order (tokenizers assign ids in this order).
SPECIAL_TOKENS: tuple[str, ...] = (
    SYSTEM,
    USER,
    ASSISTANT,
    TOOL,
    END,
    THINK_OPEN,
    THINK_CLOSE,
    CALL_OPEN,
    CALL_CLOSE,
)

_ACTION_TAGS = (THINK_OPEN, THINK_CLOSE, CALL_OPEN, CALL_CLOSE)
_ROLE_MARKERS = (SYSTEM, USER, ASSISTANT, TOOL, END)
_TAG_RE = re.compile("|".join(re.escape(t) for t in (*_ACTION_TAGS, *_ROLE_MARKERS)))
_CALL_HINT = 'write <tool_call>{"name": "<tool>", "arguments": {…}}</tool_call>'
_MAX_ECHO = 80  # characters of a bad fragment quoted back in an error
MAX_ARG_DEPTH = 64  # levels of nesting in a call's arguments (the arguments object is level 1)
#: A ``<`` that starts a special string (``<|`` of any role-marker shape, or an action tag).
_SPECIAL_START = re.compile("<(?=\\||" + "|".join(re.escape(t[1:]) for t in _ACTION_TAGS) + ")")
#: A special string: a role marker of any ``<|name|>`` shape (the tokenizer's pad and bos too), or an action tag.
_SPECIAL_RE = re.compile("<\\|[a-z_]*\\|>|" + "|".join(re.escape(t) for t in _ACTION_TAGS))


def _escape(m: re.Match[str]) -> str:
    cp = ord(m.group())  # astral characters become a surrogate pair, as JSON spells them
    hi, lo = 0xD800 + ((cp - 0x10000) >> 10), 0xDC00 + ((cp - 0x10000) & 0x3FF)
    return f"\\u{cp:04x}" if cp < 0x10000 else f"\\u{hi:04x}\\u{lo:04x}"


def escape_json(text: str) -> str:
    r"""Make compact JSON text safe for an observation (the decoded data is unchanged).

    Args:
        text: JSON text (raw ``<`` and non-ASCII characters occur only inside its strings).

    Returns:
        The same JSON with ``<`` written ``\u003c`` where it starts a special string of the
        markup and every character outside :data:`~toolgym.envs.textspace.CHARSET` written ``\uXXXX``.
    """
    if not text.isascii():
        if not in_charset(text):
            text = OUTSIDE_CHARSET.sub(_escape, text)
    elif "\x7f" in text:  # the one ASCII character orjson leaves raw that is outside the charset
        text = text.replace("\x7f", "\\u007f")
    if "<" in text and ("<|" in text or "<t" in text or "</t" in text):  # substring tests are C-fast
        text = _SPECIAL_START.sub("\\\\u003c", text)
    return text


def _fallback(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=str)
    return str(obj)


def scalar_text(text: str) -> str:
    r"""``text`` with every lone surrogate replaced by U+FFFD and valid surrogate pairs joined.

    A Python ``str`` may hold surrogate code points (``"\ud800"``, or a pair left split by a
    decoder); they are not Unicode scalar values, so UTF-8 (orjson, the tokenizer) cannot encode
    them. U+FFFD is the standard replacement character (Unicode §3.9, U+FFFD substitution).
    """
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _scrub(obj: Any) -> Any:
    """``obj`` with every string passed through :func:`scalar_text`."""
    if isinstance(obj, str):
        return scalar_text(obj)
    if isinstance(obj, dict):
        return {_scrub(k): _scrub(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_scrub(v) for v in obj]
    if obj is None or isinstance(obj, bool | int | float):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _scrub(dataclasses.asdict(obj))
    return _scrub(_fallback(obj))


def dumps(obj: Any) -> str:
    r"""The env's one JSON writer: compact, canonical, and safe inside an observation.

    orjson (~6x faster than ``json`` on this hot path; strict, UTF-8, NaN written as null),
    then :func:`escape_json`. Strings with lone surrogates (which orjson rejects) are written
    with U+FFFD instead; that costs a second pass only on that failure path. Integers beyond
    64 bits and nesting deeper than orjson's 254 levels fall back to the standard library.

    Raises:
        TypeError, ValueError, RecursionError: only for data no JSON writer can write (cycles).
    """
    try:
        text = orjson.dumps(obj, default=_fallback).decode()
    except orjson.JSONEncodeError:
        clean = _scrub(obj)
        try:
            text = orjson.dumps(clean).decode()
        except orjson.JSONEncodeError:
            text = json.dumps(clean, ensure_ascii=False, separators=(",", ":"))
    return escape_json(text)


def check_text(text: str, what: str, allow_action_tags: bool = False) -> None:
    """Check synthesized text that reaches an observation unescaped (prompts, system text).

    Args:
        text: The text.
        what: What it is, for the error (e.g. ``"task 'trip-1' prompt"``).
        allow_action_tags: Accept ``<think>``, ``<tool_call>`` and their closers (the system
            text describes the action format with them); role markers are never accepted.

    Raises:
        ValueError: naming the special string or the character and its position.
    """
    if "<" in text:
        for m in _SPECIAL_RE.finditer(text):
            if allow_action_tags and m.group()[1] != "|":
                continue
            raise ValueError(
                f"{what} contains the special string {m.group()!r} at character {m.start()}; "
                "special strings of the markup may not occur in synthesized text"
            )
    bad = OUTSIDE_CHARSET.search(text)
    if bad is not None:
        raise ValueError(
            f"{what} contains {bad.group()!r} (U+{ord(bad.group()):04X}) at character {bad.start()}, outside the "
            "observation charset (toolgym.envs.textspace.CHARSET_RANGES); use another character or extend the charset"
        )


def check_task_text(task_id: str, prompt: str, system: str) -> None:
    """Check the text of a task where it is built or loaded (a ``TaskSpec``'s ``prompt`` and ``system``).

    The prompt may hold no special string; the system text may name the action tags (it
    describes the action format on purpose) but holds no role marker. Both reach observations
    unescaped (DESIGN.md protocol).

    Raises:
        ValueError: naming the task, the text, and the special string or character (:func:`check_text`).
    """
    check_text(prompt, f"task {task_id!r}: the prompt")
    check_text(system, f"task {task_id!r}: the system text", allow_action_tags=True)


loads = orjson.loads  #: Strict JSON parsing (rejects NaN/Infinity, lone surrogates, nesting deeper than 1024).


@dataclass(frozen=True)
class ToolCall:
    """One parsed tool call."""

    name: str
    arguments: dict[str, Any]


@dataclass
class ParsedAction:
    """What one assistant turn said, and everything that was wrong with it.

    Attributes:
        reasoning: Text inside the ``<think>`` block, or None when there was none.
        content: Visible text outside the think block and the calls, concatenated.
        tool_calls: Calls that parsed; they run only if ``errors`` is empty or every error
            concerns a single malformed call (see :attr:`fatal`).
        errors: One sentence per problem, each saying how to fix it.
        fatal: True when the whole turn must be rejected (forged role markers, unclosed
            think block); no call of such a turn runs.
        ended: True when the action ended with ``<|end|>``.
    """

    reasoning: str | None = None
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    fatal: bool = False
    ended: bool = False


def _echo(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _MAX_ECHO else text[:_MAX_ECHO] + "…"


def parse_call(body: str, index: int) -> ToolCall | str:
    """Parse the JSON body of the ``index``-th (1-based) ``<tool_call>``; an error sentence on failure."""
    try:
        obj = loads(body)
    except orjson.JSONDecodeError as exc:
        return f"tool call {index}: invalid JSON ({exc}) in {_echo(body)!r}; {_CALL_HINT}"
    if not isinstance(obj, dict):
        return f"tool call {index}: expected a JSON object, got {type(obj).__name__}; {_CALL_HINT}"
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        return f'tool call {index}: missing "name" (a string); {_CALL_HINT}'
    if len(obj) > 2 or (len(obj) == 2 and "arguments" not in obj):  # cheap test first: this path is hot
        extra = sorted(set(obj) - {"name", "arguments"})
        return f"tool call {index} ({name}): unexpected keys {extra}; {_CALL_HINT}"
    args = obj.get("arguments", {})
    if isinstance(args, str):  # OpenAI encodes arguments as a JSON string; accept that too
        try:
            args = loads(args) if args.strip() else {}
        except orjson.JSONDecodeError as exc:
            return f"tool call {index} ({name}): arguments string is not JSON ({exc})"
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return f'tool call {index} ({name}): "arguments" must be an object, got {type(args).__name__}'
    if body.count("[") + body.count("{") > MAX_ARG_DEPTH and _too_deep(args):  # counts are C-fast; walk rarely
        return f"tool call {index} ({name}): arguments nest deeper than {MAX_ARG_DEPTH} levels; no tool takes that"
    return ToolCall(name=name, arguments=args)


def _too_deep(obj: Any) -> bool:
    """Whether ``obj`` nests deeper than :data:`MAX_ARG_DEPTH` (iterative: no recursion limit)."""
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_ARG_DEPTH:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return False


#: The rest of a JSON string from inside it: characters and escapes up to (not including) the closing quote.
_STRING_REST = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*', re.S)


def _in_json_string(text: str, pos: int, limit: int, inside: bool) -> tuple[int, bool]:
    """Advance a JSON-string tracker over ``text[pos:limit]`` (each character is read once).

    Returns:
        ``(limit, inside)``: whether ``limit`` lies inside a JSON string, given whether ``pos`` did.
    """
    while pos < limit:
        if not inside:
            q = text.find('"', pos, limit)
            if q < 0:
                return limit, False
            pos, inside = q + 1, True
        else:
            end = _STRING_REST.match(text, pos, limit).end()  # type: ignore[union-attr]
            if end < limit and text[end] == '"':
                pos, inside = end + 1, False
            else:
                return limit, True
    return pos, inside


def _escaped(tag: str) -> str:
    return "\\u003c" + tag[1:]


def _marker_in_string(tag: str, index: int) -> str:
    return (
        f"tool call {index}: {tag} inside a JSON string is a control marker, so this call did not run; "
        f"write it as {_escaped(tag)} inside JSON strings (it decodes to the same text)"
    )


def _forged(out: ParsedAction, tag: str) -> None:
    """Reject the whole turn for a role marker (or a second ``<|end|>``) outside any JSON string."""
    out.errors.append(f"{tag} is not allowed inside an action; end the turn with {END} only")
    out.fatal = True


def _stray_tag(out: ParsedAction, content: list[str], tag: str) -> None:
    """Record the error for a tag read outside think and calls that opens nothing.

    A second ``<think>`` also stays in the content, as text.
    """
    if tag == THINK_OPEN:
        out.errors.append("only one <think> block is allowed per turn; put all reasoning in the first one")
        content.append(tag)
    elif tag == THINK_CLOSE:
        out.errors.append("</think> without a matching <think>")
    elif tag == CALL_CLOSE:
        out.errors.append(f"{CALL_CLOSE} without a matching {CALL_OPEN}")
    else:
        _forged(out, tag)


def _read_think(text: str, tags: Iterator[re.Match[str]], out: ParsedAction, start: int) -> tuple[int, str]:
    """Read the ``<think>`` block whose text starts at ``start``, taking its tags from ``tags``.

    Tags inside a thought are text, except role markers (they reject the turn). A block still
    open at the end of the turn is an error that rejects the turn.

    Returns:
        ``(position after </think>, or len(text) when the block is unclosed; the reasoning)``.
    """
    reasoning: list[str] = []
    pos = start
    for m in tags:
        tag = m.group()
        chunk = text[pos : m.start()]
        pos = m.end()
        if tag == THINK_CLOSE:
            reasoning.append(chunk)
            return pos, "".join(reasoning)
        if tag in _ROLE_MARKERS:
            _forged(out, tag)
        else:  # tags inside a thought are just text
            reasoning.append(chunk + tag)
    reasoning.append(text[pos:])
    out.errors.append(f"unclosed <think> block; close it with </think> before any {CALL_OPEN}")
    out.fatal = True
    return len(text), "".join(reasoning)


def _read_call(
    text: str, tags: Iterator[re.Match[str]], out: ParsedAction, start: int, n_calls: int
) -> tuple[int, int]:
    """Read the call whose body starts at ``start`` up to its ``</tool_call>``, taking tags from ``tags``.

    A body that parses at its first ``</tool_call>`` needs nothing more (the common case, and the
    fast one: valid JSON ends outside any string). Otherwise a JSON-string tracker follows the
    body from then on (:func:`_in_json_string`, each character read once) and decides:

    * an action tag inside a JSON string (``print('</tool_call>')``) is string content, so a
      call whose code mentions the tags parses as written;
    * a role marker inside a JSON string rejects this call (the rest of the turn runs), with
      the hint to write it ``\u003c|end|>``; outside strings it still rejects the whole turn;
    * a JSON string left open makes the call unclosed; if a ``</tool_call>`` was read as text
      inside it, the error says so and shows the escaped form.

    A ``<tool_call>`` outside the body's strings is an error for this call and opens the next.
    The call (or its error) goes to ``out``.

    Args:
        text: The action, without its final ``<|end|>``.
        tags: The scan's iterator over the special strings, just past the ``<tool_call>``.
        out: The parse result, appended to.
        start: Where the body starts in ``text``.
        n_calls: Calls read before this one.

    Returns:
        ``(position after </tool_call>, or len(text) when the call is unclosed; calls read so far)``.
    """
    pos = scan = start
    in_str = False  # JSON-string tracker of the open call body
    tracking = False  # the tracker runs from the first tag of a call whose body does not parse as it is
    call_error: str | None = None  # a role marker inside one of its strings
    close_in_str = False  # a </tool_call> was read as string content of the open call
    for m in tags:
        tag = m.group()
        first: ToolCall | str | None = None
        if tag == CALL_CLOSE and not tracking:  # fast path: a body that parses ends outside any string
            first = parse_call(text[start : m.start()], n_calls + 1)
            in_str = False
        if first is None or isinstance(first, str):
            tracking = True
            scan, in_str = _in_json_string(text, scan, m.start(), in_str)
            scan = m.end()
        if in_str:
            if tag in _ROLE_MARKERS:
                call_error = call_error or _marker_in_string(tag, n_calls + 1)
            elif tag == CALL_CLOSE:
                close_in_str = True
            continue
        pos = m.end()
        if tag == CALL_CLOSE:
            parsed = call_error or first or parse_call(text[start : m.start()], n_calls + 1)
            (out.errors if isinstance(parsed, str) else out.tool_calls).append(parsed)  # type: ignore[arg-type]
            return pos, n_calls + 1
        if tag == CALL_OPEN:
            n_calls += 1
            out.errors.append(
                f"tool call {n_calls}: {CALL_OPEN} opened before the previous one was closed with {CALL_CLOSE}"
            )
            start = scan = pos
            in_str, call_error, close_in_str, tracking = False, None, False, False
        elif tag in _ROLE_MARKERS:
            _forged(out, tag)
    _, in_str = _in_json_string(text, scan, len(text), in_str)
    out.errors.append(_unclosed_call(text, n_calls + 1, start, text[pos:], close_in_str, in_str, out.ended))
    return len(text), n_calls + 1


def _unclosed_call(text: str, index: int, start: int, rest: str, close_in_str: bool, in_str: bool, ended: bool) -> str:
    """The error for the ``index``-th call, whose body starts at ``start``, still open when the turn ends.

    Args:
        text: The action, without its final ``<|end|>``.
        index: The call's 1-based number.
        start: Where the call's body starts in ``text``.
        rest: The text after the last tag read as markup.
        close_in_str: Whether a ``</tool_call>`` was read as content of a JSON string of the call.
        in_str: Whether the turn ends inside a JSON string of the call.
        ended: Whether the action ended with ``<|end|>``.
    """
    if close_in_str:
        return (
            f"tool call {index}: a JSON string is not closed, so the {CALL_CLOSE} after it was read as text "
            f'inside the string, in {_echo(text[start:])!r}; close the string with " (a tag meant as '
            f"text may stay, or be written {_escaped(CALL_CLOSE)})"
        )
    if in_str and ended:
        return (
            f"tool call {index}: the turn ended with {END} inside a JSON string; "
            f"write it as {_escaped(END)} inside JSON strings"
        )
    return f"tool call {index}: unclosed {CALL_OPEN} (missing {CALL_CLOSE}) in {_echo(rest)!r}"


def parse_action(text: str) -> ParsedAction:
    """Parse one assistant turn; never raises (see the module docstring for the rules).

    One linear pass over the special strings, with one iterator: this loop reads the text
    outside think and calls, and hands the iterator to :func:`_read_think` and
    :func:`_read_call` (which says how tags inside a call body are read) for the inside of
    each block, which give it back after the block's closing tag.
    """
    out = ParsedAction()
    if text.endswith(END):
        text = text[: -len(END)]
        out.ended = True
    content: list[str] = []
    reasoning: str | None = None  # not None once the (one allowed) <think> block was read
    pos = n_calls = 0
    tags = _TAG_RE.finditer(text)
    for m in tags:
        tag = m.group()
        content.append(text[pos : m.start()])
        pos = m.end()
        if tag == CALL_OPEN:
            pos, n_calls = _read_call(text, tags, out, pos, n_calls)
        elif tag == THINK_OPEN and reasoning is None:
            pos, reasoning = _read_think(text, tags, out, pos)
        else:
            _stray_tag(out, content, tag)
    content.append(text[pos:])  # empty after a block left open
    out.reasoning = reasoning
    out.content = "".join(content)
    return out


# ----------------------------------------------------------------------------- rendering


def render_call(name: str, arguments: dict[str, Any]) -> str:
    """Render one tool call in its canonical form.

    Raises:
        ValueError: for an empty name (the parser rejects a call without one).
    """
    if not name:
        raise ValueError("a tool call needs a non-empty name")
    return CALL_OPEN + dumps({"name": name, "arguments": arguments}) + CALL_CLOSE


def _refuse(text: str, what: str, allowed: tuple[str, ...]) -> None:
    if "<" in text:
        for m in _TAG_RE.finditer(text):
            if m.group() not in allowed:
                raise ValueError(
                    f"{what} contains {m.group()!r} at character {m.start()}, which the parser would read as markup; "
                    "an action's reasoning and content cannot carry it (put such text in a call's arguments)"
                )


def render_action(
    calls: Sequence[tuple[str, dict[str, Any]]] = (),
    reasoning: str | None = None,
    content: str = "",
    end: bool = True,
) -> str:
    """Render an assistant turn's body (what follows ``<|assistant|>``) canonically.

    ``parse_action`` of the result gives back ``calls``, ``reasoning`` and ``content`` exactly
    (arguments are JSON; their strings may hold any text, special strings included, since
    :func:`dumps` escapes them).

    Raises:
        ValueError: naming the string, when reasoning holds ``</think>`` or a role marker, or
            content holds any special string (the result would not parse back to them).
    """
    if reasoning is not None:
        _refuse(reasoning, "reasoning", (THINK_OPEN, CALL_OPEN, CALL_CLOSE))
    _refuse(content, "content", ())
    head = "" if reasoning is None else THINK_OPEN + reasoning + THINK_CLOSE
    return head + content + "".join(render_call(n, a) for n, a in calls) + (END if end else "")


def tool_payload(name: str | None, content: Any = None, error: str | None = None) -> str:
    """The JSON text of one tool result (the inside of ``<|tool|>…<|end|>``)."""
    obj: dict[str, Any] = {"name": name}
    if error is not None:
        obj["error"] = error
    else:
        obj["content"] = content
    return dumps(obj)


def render_tool(payload: str) -> str:
    """Wrap one tool-result payload in its markers."""
    return TOOL + payload + END


def render_prompt(system: str, user: str) -> str:
    """The text ``reset`` returns: system turn, user turn, and the assistant marker."""
    return SYSTEM + system + END + USER + user + END + ASSISTANT


def parse_tool_results(observation: str) -> list[dict[str, Any]]:
    """Split an observation into its tool-result payloads (for scripted agents)."""
    out = []
    for body in split_payloads(observation):
        try:
            out.append(loads(body))
        except orjson.JSONDecodeError:
            out.append({"name": None, "error": body})
    return out


def split_payloads(observation: str) -> list[str]:
    """The raw payload texts of an observation, in order."""
    return [piece.split(END, 1)[0] for piece in observation.split(TOOL)[1:]]
