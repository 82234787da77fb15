"""Tools from argument fields: a pydantic model (validation) and its JSON schema, built fast.

Every domain tool is ``derived_tool(name, fn, kind, description, fields)`` with ``fields`` as
``pydantic.create_model`` takes them (``{name: (type, FieldInfo)}``). The model validates calls;
the parameters schema shown to policies is composed from each field type's own pydantic JSON
schema (cached per type: worlds reuse a handful of types), its default and its description, in
the key order pydantic uses. That is the schema ``model.model_json_schema()`` gives (a test holds
the two equal over every tool of every archetype), at a fraction of the cost: schema generation
was half of a world's toolset build. The model itself is built on the tool's first call (most
distractor tools of a toolset are never called; ``create_model`` costs ~1 ms a tool).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pydantic
from pydantic import ConfigDict
from pydantic.fields import FieldInfo

from toolgym.envs.tools import Tool, ToolKind, tool_from_model

_TYPE_SCHEMAS: dict[str, dict[str, Any]] = {}


def model(name: str, fields: dict[str, tuple[Any, FieldInfo]]) -> type[pydantic.BaseModel]:
    """The arguments model (``extra="forbid"``: a misspelt argument is an error)."""
    return pydantic.create_model(f"{name}_args", __config__=ConfigDict(extra="forbid"), **fields)  # type: ignore[call-overload, no-any-return]


def _strip_titles(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_titles(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))}
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node


def type_schema(tp: Any) -> dict[str, Any]:
    """The JSON schema pydantic gives a field of type ``tp`` (titles dropped), cached by ``repr``."""
    key = repr(tp)
    out = _TYPE_SCHEMAS.get(key)
    if out is None:
        out = _TYPE_SCHEMAS[key] = _strip_titles(pydantic.TypeAdapter(tp).json_schema())
    return out


def parameters(fields: dict[str, tuple[Any, FieldInfo]]) -> dict[str, Any]:
    """The parameters schema of a model with ``fields`` (object, properties, required, no extras)."""
    props: dict[str, Any] = {}
    required = []
    for name, (tp, info) in fields.items():
        prop = dict(type_schema(tp))
        if info.is_required():
            required.append(name)
        else:
            prop["default"] = info.default
        if info.description is not None:
            prop["description"] = info.description
        props[name] = dict(sorted(prop.items()))
    out: dict[str, Any] = {"additionalProperties": False, "properties": props}
    if required:
        out["required"] = required
    out["type"] = "object"
    return out


def derived_tool(
    name: str, fn: Callable[..., Any], kind: ToolKind, description: str, fields: dict[str, tuple[Any, FieldInfo]]
) -> Tool:
    """A :class:`Tool` whose model and schema both come from ``fields`` (the model on its first call)."""
    return tool_from_model(name, fn, kind, description, functools.partial(model, name, fields), parameters(fields))
