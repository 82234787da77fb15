"""Tools: typed Python functions whose signature is their schema.

A tool is a plain function whose first parameter is the episode context (a world, or the
episode's own copy of a mutable state) and whose other parameters are typed arguments::

    @tool("read")
    def get_weather(world: TripWorld, city: str, date: str) -> dict:
        '''Weather forecast for a city on a date.

Args:
            city: Exact city name.
            date: ISO date, e.g. 2026-05-01.
        '''

From that signature and Google-style docstring, :func:`tool` derives a pydantic model that
validates arguments (``extra="forbid"``, so a misspelt argument is an error, not silently
dropped) and the OpenAI function schema shown to policies; nothing is hand-written, so the
two cannot drift. Dispatch is a dict lookup. A tool signals a bad request by raising
:class:`ToolError` (its message is shown to the policy as is); any other exception is a tool
bug but still becomes an error observation, never a crash of the episode.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import re
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict

from toolgym.envs.limits import echo_name

ToolKind = Literal["read", "write"]
_ARG_LINE = re.compile(r"^\s{0,8}(\w+)(?:\s*\([^)]*\))?:\s*(.*)$")


class ToolError(Exception):
    """Raised by a tool for a request it cannot serve (unknown name, bad date…).

    The message is shown to the policy verbatim, so it should say how to fix the call.
    """


@dataclass(frozen=True)
class Tool:
    """A tool: the function plus everything derived from its signature.

    ``model_source`` is the arguments model, or a function building it: a factory defers the
    model (``pydantic.create_model``, ~1 ms) to the tool's first call, since a synthesized
    toolset's distractor tools are mostly never called (:attr:`args_model` builds it once).
    """

    name: str
    fn: Callable[..., Any]
    kind: ToolKind
    description: str
    model_source: type[BaseModel] | Callable[[], type[BaseModel]] = field(repr=False, compare=False)
    schema: dict[str, Any]  # OpenAI function-tool schema: {"type": "function", "function": {…}}

    @functools.cached_property
    def args_model(self) -> type[BaseModel]:
        """The arguments model (validates calls; ``extra="forbid"``)."""
        src = self.model_source
        return src if isinstance(src, type) else src()

    @property
    def arg_names(self) -> tuple[str, ...]:
        """Argument names in signature order."""
        return tuple(self.args_model.model_fields)


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into (description, {arg: description})."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    desc: list[str] = []
    args: dict[str, str] = {}
    section = "desc"
    current: str | None = None
    for line in lines:
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:"):
            section, current = "args", None
            continue
        if stripped.endswith(":") and stripped[:-1] in ("Returns", "Raises", "Yields", "Example", "Examples", "Note"):
            section, current = "other", None
            continue
        if section == "desc":
            desc.append(stripped)
        elif section == "args":
            m = _ARG_LINE.match(line)
            if m and not line.startswith(" " * 8):
                current = m.group(1)
                args[current] = m.group(2).strip()
            elif current and stripped:
                args[current] += " " + stripped
    text = " ".join(" ".join(desc).split())
    return text, args


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Inline ``$ref``s and drop pydantic's titles: policies read these schemas."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                target = defs[node["$ref"].rsplit("/", 1)[-1]]
                merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
                return walk(merged)
            # a "title" annotation is a string; a property *named* title is a schema (a dict): kept
            return {k: walk(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    out = walk(schema)
    assert isinstance(out, dict)
    return out


def make_tool(fn: Callable[..., Any], kind: ToolKind = "read", name: str | None = None) -> Tool:
    """Derive a :class:`Tool` from a typed function (first parameter: the episode context)."""
    sig = inspect.signature(fn)
    hints = typing.get_type_hints(fn, include_extras=True)  # keep Annotated[..., Field(...)] bounds
    params = list(sig.parameters.values())[1:]  # the first parameter is the context
    description, arg_docs = _parse_docstring(fn.__doc__)
    fields: dict[str, Any] = {}
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"tool {fn.__name__}: *args/**kwargs cannot be described by a schema")
        if p.name not in hints:
            raise TypeError(f"tool {fn.__name__}: argument {p.name!r} has no type annotation")
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (hints[p.name], pydantic.Field(default, description=arg_docs.get(p.name)))
    tool_name = name or fn.__name__
    model = pydantic.create_model(  # type: ignore[call-overload]
        f"{tool_name}_args", __config__=ConfigDict(extra="forbid"), **fields
    )
    return tool_from_model(tool_name, fn, kind, description, model)


def tool_from_model(
    name: str,
    fn: Callable[..., Any],
    kind: ToolKind,
    description: str,
    model: type[BaseModel] | Callable[[], type[BaseModel]],
    parameters: dict[str, Any] | None = None,
) -> Tool:
    """A :class:`Tool` from a function and an arguments model built elsewhere (schemas derived at run time).

    ``fn(context, **arguments)`` is called with the model's fields as keyword arguments; the model
    should forbid extra keys (``ConfigDict(extra="forbid")``), as :func:`make_tool`'s do.
    ``parameters`` is the model's JSON schema when the caller derived it already (cheaper, per
    field type); by default it is ``model.model_json_schema()``. ``model`` may be a function
    building the model on the tool's first call (``parameters`` is then required).

    Raises:
        TypeError: A model factory without ``parameters``.
    """
    if parameters is None and not isinstance(model, type):
        raise TypeError(f"tool {name}: a deferred arguments model needs its parameters schema")
    params_schema = parameters if parameters is not None else _inline_refs(model.model_json_schema())  # type: ignore[union-attr]
    params_schema.setdefault("properties", {})
    params_schema["additionalProperties"] = False
    schema = {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": params_schema},
    }
    return Tool(name, fn, kind, description, model, schema)


def tool(kind: ToolKind = "read", name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a function as a tool; :func:`make_tool` derives its schema when a toolset is built."""

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.__toolgym_tool__ = make_tool(fn, kind, name)  # type: ignore[attr-defined]
        return fn

    return mark


def as_tool(obj: Tool | Callable[..., Any]) -> Tool:
    """The :class:`Tool` of a decorated function (or the tool itself)."""
    if isinstance(obj, Tool):
        return obj
    t = getattr(obj, "__toolgym_tool__", None)
    if t is None:
        raise TypeError(f"{obj!r} is not a tool; decorate it with @tool(...)")
    return t


def _object_keys(schema: dict[str, Any], path: tuple[Any, ...]) -> list[str] | None:
    """The keys the object at ``path`` (a pydantic error location) takes, from the JSON schema.

    Walks ``properties`` for names and ``items`` for indices; a ``anyOf``/``oneOf`` branches, and
    a location part that matches no branch (pydantic's tag of a union member) is skipped.
    """
    nodes = [schema]
    for part in path:
        flat: list[dict[str, Any]] = []
        for n in nodes:
            flat.extend(n.get("anyOf") or n.get("oneOf") or [n])
        nxt: list[dict[str, Any]] = []
        for n in flat:
            if isinstance(part, int) and isinstance(n.get("items"), dict):
                nxt.append(n["items"])
            elif isinstance(part, str) and part in n.get("properties", {}):
                nxt.append(n["properties"][part])
        nodes = nxt or flat  # nothing matched: a union tag, not a key
    for n in nodes:
        for option in n.get("anyOf") or n.get("oneOf") or [n]:
            if "properties" in option:
                return list(option["properties"])
    return None


def _loc(parts: tuple[Any, ...]) -> str:
    """``answer.days[0].bogus`` from a pydantic location."""
    out = ""
    for x in parts:
        out += f"[{x}]" if isinstance(x, int) else (f".{x}" if out else str(x))
    return out or "arguments"


def _format_validation(err: pydantic.ValidationError, t: Tool) -> str:
    """One sentence per error (at most 4); an unknown key names the object's path and the keys it takes."""
    parts = []
    for e in err.errors()[:4]:
        loc, msg = _loc(e["loc"]), e["msg"]
        if e["type"] == "extra_forbidden":
            if len(e["loc"]) == 1:
                msg = f"unknown argument; {t.name} takes {list(t.arg_names)}"
            else:
                keys = _object_keys(t.schema["function"]["parameters"], e["loc"][:-1])
                where = _loc(e["loc"][:-1])
                msg = f"unknown key in {where}" + (f", which takes {keys}" if keys is not None else "")
        parts.append(f"{loc}: {msg}")
    more = len(err.errors()) - len(parts)
    tail = f" (and {more} more)" if more > 0 else ""
    return f"invalid arguments for {t.name}: " + "; ".join(parts) + tail


class Toolset:
    """The tools of one task, bound to dispatch by name."""

    def __init__(self, tools: Iterable[Tool | Callable[..., Any]]):
        self.tools: dict[str, Tool] = {}
        for obj in tools:
            t = as_tool(obj)
            if t.name in self.tools:
                raise ValueError(f"duplicate tool name {t.name!r} in one toolset")
            self.tools[t.name] = t
        self.schemas: list[dict[str, Any]] = [t.schema for t in self.tools.values()]
        self.has_write_tools = any(t.kind == "write" for t in self.tools.values())

    def __contains__(self, name: str) -> bool:
        return name in self.tools

    def validate(self, name: str, arguments: dict[str, Any]) -> tuple[Tool, BaseModel] | str:
        """Look up and validate a call; an error sentence on failure."""
        t = self.tools.get(name)
        if t is None:
            shown = echo_name(name)
            close = difflib.get_close_matches(shown, list(self.tools), n=3, cutoff=0.5)
            hint = f"did you mean {close[0]!r}? " if close else ""
            return f"unknown tool {shown!r}; {hint}available tools: {', '.join(self.tools)}"
        try:
            return t, t.args_model.model_validate(arguments)
        except pydantic.ValidationError as err:
            return _format_validation(err, t)

    def call(self, context: Any, name: str, arguments: dict[str, Any]) -> tuple[bool, Any]:
        """Run a call; returns (ok, result) or (False, error sentence). Never raises."""
        checked = self.validate(name, arguments)
        if isinstance(checked, str):
            return False, checked
        t, args = checked
        try:
            return True, t.fn(context, **{k: getattr(args, k) for k in t.arg_names})
        except ToolError as exc:
            return False, str(exc)
        except Exception as exc:  # a tool bug must not crash the episode
            return False, f"{name} failed: {type(exc).__name__}: {exc}"
