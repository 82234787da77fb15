"""The toolset of a domain world, derived from its sampled schema (never hand-written).

A task's tool config is ``{"archetype": id, "schema": <the world's sampled schema>, "expose":
[tool names] | null, "answer": "text" | "texts" | "ranking" | "counts" | "number" | "integer"}``; :func:`toolset` builds
every tool the schema implies (cached per schema) and returns the exposed ones plus ``submit``.
Tools speak the world's chosen names (entities, attributes, verbs); argument models are built
with ``pydantic.create_model`` from the attribute kinds:

* ``get_<entity>(id)``: one row by key;
* ``find_<plural>(filters…, page)``: rows matching every filter given. Per attribute: enums
  ``Literal[...]`` (an unknown value is a validation error naming the allowed ones), flags
  booleans, refs a key, strings an exact match, numbers ``min_<a>``/``max_<a>``, dates and
  datetimes ``<a>_from``/``<a>_to`` (inclusive, ISO). Paged: a page past the end is an error;
* ``count_<plural>(filters…)``: how many rows match, with the totals of numeric attributes;
* ``list_<plural B>_of_<A>(<A>_id)``: the rows a many-to-many link pairs with a row;
* one write tool per sampled action (:mod:`toolgym.synth.domains.rules` has the semantics):
  unknown keys, unmet preconditions and enforced policies are :class:`ToolError` s that say
  what failed and that nothing was changed; effects are computed on copies, then stored together;
* ``submit(answer)``, typed by the task.

Every tool takes the episode's :class:`~toolgym.synth.domains.world.DomainState`.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AllowInfNan, BeforeValidator, Field, Strict, StrictBool
from pydantic_core import PydanticCustomError

from toolgym.envs import naming, strict
from toolgym.envs.strict import Integer, Number, Page, Text
from toolgym.envs.tools import Tool, ToolError
from toolgym.synth.domains import kinds
from toolgym.synth.domains.actions import write_tools
from toolgym.synth.domains.argmodels import derived_tool
from toolgym.synth.domains.ontology import Archetype, Attribute, Param
from toolgym.synth.domains.schema import action_params
from toolgym.synth.domains.world import DomainState, archetype
from toolgym.synth.text import with_article

DATE = r"^\d{4}-\d\d-\d\d$"
DATETIME = r"^\d{4}-\d\d-\d\dT\d\d:\d\d$"
TIME = r"^\d\d:\d\d$"
_FORMATS = {"date": (DATE, "2026-05-01"), "datetime": (DATETIME, "2026-05-01T14:30"), "time": (TIME, "14:30")}
_PARSE: dict[str, Callable[[str], Any]] = {
    "date": dt.date.fromisoformat,
    "datetime": dt.datetime.fromisoformat,
    "time": dt.time.fromisoformat,
}
ANSWERS: dict[str, Any] = {
    "text": Text,
    "texts": list[Text],
    "ranking": list[Text],
    "counts": dict[Text, Integer],
    "number": Number,
    "integer": Integer,
}
Pred = Callable[[dict[str, Any]], bool]


@functools.cache
def _real_temporal(kind: str) -> Callable[[str], str]:
    """A validator that takes only a real date, datetime or time of ``kind``.

    The pattern alone lets ``2026-02-30`` and ``25:99`` through: a filter would compare them as
    text and a write would store them.
    """

    def check(value: str) -> str:
        try:  # the pattern fixed the shape; fromisoformat checks the values (50x cheaper than strptime)
            _PARSE[kind](value)
        except ValueError:
            raise PydanticCustomError(
                "not_a_real_temporal",
                "{value} is not a real {kind}; write one like {example}",
                {"value": value, "kind": kind, "example": _FORMATS[kind][1]},
            ) from None
        return value

    return check


def _kind_type(kind: str, values: list[Any] | None, lo: Any = None, hi: Any = None) -> Any:
    """The argument type of a value of one kind (enums as Literal, dates with a pattern)."""
    if kind == "enum" and values:
        return Literal[tuple(values)]  # type: ignore[valid-type]
    if kind == "flag":
        return StrictBool
    bounds: dict[str, Any] = {"ge": lo} if isinstance(lo, int | float) else {}
    if isinstance(hi, int | float):
        bounds["le"] = hi
    if kind in ("int", "percent", "duration"):  # bounds before the strict validator, or the schema loses them
        return Annotated[int, Field(**bounds), Strict(), BeforeValidator(strict._integer_check)]
    if kind in ("money", "rating"):
        return Annotated[float, Field(**bounds), Strict(), AllowInfNan(False), BeforeValidator(strict._number_check)]
    if kind in _FORMATS:
        return Annotated[Text, Field(pattern=_FORMATS[kind][0]), AfterValidator(_real_temporal(kind))]
    return Text


def _what(a: Attribute | Param, names: dict[str, dict[str, Any]]) -> str:
    """A short description of an attribute or parameter for tool docs."""
    if a.description:
        return a.description
    if a.kind == "ref":
        ent = names[a.to]  # type: ignore[index]
        return f"id of the {ent['name'].replace('_', ' ')} (e.g. {ent['key_prefix']}-00001)"
    if a.kind in _FORMATS:
        return f"{a.kind}, e.g. {_FORMATS[a.kind][1]}"
    if a.kind == "money":
        return "amount of money"
    if a.kind == "enum":
        return "one of the listed values"
    unit = getattr(a, "unit", None)
    return {"duration": "minutes", "flag": "true or false"}.get(a.kind, unit or a.kind.replace("_", " "))


def _filters(arch: Archetype, ent_schema: dict[str, Any], names: dict[str, Any]) -> tuple[dict[str, Any], Callable]:
    """The filter fields of ``find``/``count`` and a compiler from arguments to (equalities, predicates)."""
    fields: dict[str, Any] = {}
    plan: list[tuple[str, str, str, str]] = []  # (argument, canonical attribute, op, kind)
    ent = arch.entity(ent_schema["id"])
    for canon, chosen in ent_schema["attributes"].items():
        a = ent.attribute(canon)
        assert a is not None
        # filters are left out to match anything (not nullable: null is not a filter), and carry
        # descriptions only where the name and type do not say it all: schemas are prompt tokens
        if {chosen, f"min_{chosen}", f"{chosen}_from"} & set(fields):  # a name another filter took
            continue
        if a.kind in kinds.NUMERIC:
            t = Integer if a.kind in ("int", "percent", "duration") else Number
            fields[f"min_{chosen}"] = (t, Field(None))
            fields[f"max_{chosen}"] = (t, Field(None))
            plan += [(f"min_{chosen}", canon, "ge", a.kind), (f"max_{chosen}", canon, "le", a.kind)]
        elif a.kind in kinds.TEMPORAL:
            t = _kind_type(a.kind, None)
            fields[f"{chosen}_from"] = (t, Field(None, description="inclusive"))
            fields[f"{chosen}_to"] = (t, Field(None, description="inclusive"))
            plan += [(f"{chosen}_from", canon, "ge", a.kind), (f"{chosen}_to", canon, "le", a.kind)]
        else:
            desc = _what(a, names) if a.kind == "ref" else None
            fields[chosen] = (_kind_type(a.kind, a.values), Field(None, description=desc))
            plan.append((chosen, canon, "eq", a.kind))

    def compile_args(kw: dict[str, Any]) -> tuple[list[tuple[str, Any]], list[Pred], list[tuple[str, str, Any]]]:
        eqs: list[tuple[str, Any]] = []
        ranges: list[tuple[str, str, Any]] = []
        for arg, canon, op, kind in plan:
            v = kw.get(arg)
            if v is None:
                continue
            if op == "eq":  # names follow the one name rule the system text states (NFC, trimmed)
                eqs.append((canon, naming.canon(v) if kind in kinds.STRINGS else v))
            else:  # a datetime bound is a full datetime (the schema's pattern): compared as ISO text
                ranges.append((canon, op, v))
        return eqs, [], ranges

    return fields, compile_args


def select(
    state: DomainState,
    entity: str,
    eqs: list[tuple[str, Any]],
    preds: list[Pred],
    ranges: list[tuple[str, str, Any]] = (),  # type: ignore[assignment]
) -> list[dict[str, Any]]:
    """Rows of ``entity`` with every equality, predicate and range (:meth:`DomainState.where`)."""
    return state.where(entity, eqs, preds, ranges)


def page_error(page: int, pages: int) -> ToolError:
    """The error for a page past the end."""
    return ToolError(f"page {page} does not exist; there {'is 1 page' if pages == 1 else f'are {pages} pages'}")


def _renderer(ent_schema: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    pairs = [("id", "id"), *ent_schema["attributes"].items()]
    return lambda r: {chosen: r.get(canon) for canon, chosen in pairs}


def _get_tool(es: dict[str, Any]) -> Tool:
    """``get_<entity>(id)``."""
    e_id, name, plural_name = es["id"], es["name"], es["plural"]
    render = _renderer(es)
    label = es["attributes"].get(es["label"]) if es["label"] else None

    def get(state: DomainState, id: str, e_id: str = e_id, name: str = name, render: Any = render) -> Any:
        row = state.get(e_id, id)
        if row is None:
            prefix = state.world.entities[e_id]["key_prefix"]
            raise ToolError(f"no {name} with id {id!r}; {name} ids look like {prefix}-00001")
        return render(row)

    desc = f"Look up one {name} by its id." + (f" To find one by {label}, use find_{plural_name}." if label else "")
    return derived_tool(
        f"get_{name}", get, "read", desc, {"id": (Text, Field(description=f"the {name.replace('_', ' ')}'s id"))}
    )


def miss_hint(state: DomainState, entity: str, eqs: list[tuple[str, Any]]) -> str:
    """For a find that matched nothing: the first name filter no row holds, and the closest name it has.

    The system text promises that a name matching nothing gets the closest one suggested
    (:data:`toolgym.envs.naming.RULE`); ``""`` when every name filter's value exists (the
    combination is what matched nothing) or there is none.
    """
    world = state.world
    ent, chosen = world.arch.entity(entity), world.entities[entity]["attributes"]
    for canon, v in eqs:
        attr = ent.attribute(canon)
        if attr is None or attr.kind not in kinds.STRINGS or not isinstance(v, str):
            continue
        if v not in world.index(entity, canon):
            said = naming.hint(world.name_pool(entity, canon).closest(v))
            return f"no {world.entities[entity]['name']} has {chosen[canon]} '{v}'{said}"
    return ""


def _find_tool(arch: Archetype, es: dict[str, Any], names: dict[str, Any]) -> Tool:
    """``find_<plural>(filters…, page)``."""
    e_id, plural_name = es["id"], es["plural"]
    render = _renderer(es)
    fields, compile_args = _filters(arch, es, names)

    def find(
        state: DomainState,
        e_id: str = e_id,
        plural_name: str = plural_name,
        render: Any = render,
        compile_args: Any = compile_args,
        **kw: Any,
    ) -> Any:
        page = kw.pop("page")
        eqs, preds, ranges = compile_args(kw)
        rows = select(state, e_id, eqs, preds, ranges)
        size = state.world.page_size
        pages = max(1, -(-len(rows) // size))
        if page > pages:
            raise page_error(page, pages)
        shown = rows[(page - 1) * size : page * size]
        out = {plural_name: [render(r) for r in shown], "total": len(rows), "page": page, "pages": pages}
        if not rows:
            hint = miss_hint(state, e_id, eqs)
            if hint:
                out["hint"] = hint
        return out

    desc = (
        f"Find {plural_name} matching every filter given (filters left out match anything); "
        "results are paged, in id order."
    )
    page: tuple[Any, Any] = (Page, Field(1, description="page number, 1-based"))
    return derived_tool(f"find_{plural_name}", find, "read", desc, {**fields, "page": page})


def _count_tool(arch: Archetype, es: dict[str, Any], names: dict[str, Any]) -> Tool:
    """``count_<plural>(filters…)``: the count and the totals of numeric fields."""
    e_id, plural_name = es["id"], es["plural"]
    fields, compile_args = _filters(arch, es, names)
    numeric = [(c, ch) for c, ch in es["attributes"].items() if arch.entity(e_id).attribute(c).kind in kinds.NUMERIC]  # type: ignore[union-attr]

    def count(
        state: DomainState, e_id: str = e_id, compile_args: Any = compile_args, numeric: Any = numeric, **kw: Any
    ) -> Any:
        rows = select(state, e_id, *compile_args(kw))
        totals = {ch: round(sum(r.get(c) or 0 for r in rows), 2) for c, ch in numeric}
        return {"count": len(rows), "totals": totals} if totals else {"count": len(rows)}

    desc = f"Count the {plural_name} matching every filter given" + (
        ", with the totals of their numeric fields." if numeric else "."
    )
    return derived_tool(f"count_{plural_name}", count, "read", desc, fields)


def _link_tool(link: dict[str, Any], a: str, b: str, names: dict[str, Any]) -> Tool:
    """``list_<B plural>_of_<A>(<A>_id)``: one direction of a link."""
    na, nb = names[a], names[b]
    render = _renderer(nb)

    def related(
        state: DomainState,
        link_id: str = link["id"],
        a: str = a,
        b: str = b,
        render: Any = render,
        na: Any = na,
        nb: Any = nb,
        **kw: Any,
    ) -> Any:
        key = kw[f"{na['name']}_id"]
        if state.get(a, key) is None:
            raise ToolError(f"no {na['name']} with id {key!r}; {na['name']} ids look like {na['key_prefix']}-00001")
        keys = state.world.linked[(link_id, a)].get(key, [])
        return {nb["plural"]: [render(state.get(b, k)) for k in keys]}

    tname = f"list_{nb['plural']}_of_{na['name']}"
    words = {k: str(v).replace("_", " ") for k, v in (("b", nb["plural"]), ("a", na["name"]), ("l", link["name"]))}
    d = f"List the {words['b']} linked to {with_article(words['a'])} ({words['l']})."
    return derived_tool(
        tname, related, "read", d, {f"{na['name']}_id": (Text, Field(description=f"the {words['a']}'s id"))}
    )


def _submit(state: DomainState, answer: Any) -> str:
    return "submitted"


@functools.cache
def submit_tool(answer: str) -> Tool:
    """``submit(answer)`` typed for a task's answer kind (:data:`ANSWERS`)."""
    doc = {
        "text": "the answer, exactly as the tools spell it",
        "texts": "the answers, a list of strings exactly as the tools spell them (order free)",
        "ranking": "the ids, a list in the order the task asks for",
        "counts": "an object mapping each value the task names (spelled as given) to its count",
        "number": "the answer, a number",
        "integer": "the answer, an integer",
    }[answer]
    desc = "Submit the final answer; this ends the episode."
    return derived_tool("submit", _submit, "read", desc, {"answer": (ANSWERS[answer], Field(description=doc))})


@functools.lru_cache(maxsize=2048)  # ~50 KB a tool (its pydantic model): ~100 MB at most
def _unit(arch_id: str, kind: str, key: str) -> Tool:
    """One tool of a schema, cached by the part of the schema it depends on alone.

    Worlds that sample an entity (or an action, or a link) the same way share its tools: a
    pydantic model and its JSON schema cost about a millisecond each.
    """
    arch = archetype(arch_id)
    part = json.loads(key)
    for e in [*part.get("names", {}).values(), *part.get("entities", []), *filter(None, [part.get("entity")])]:
        if "attributes" in e:  # json sorted them: archetype order again
            e["attributes"] = {
                a.name: e["attributes"][a.name] for a in arch.entity(e["id"]).attributes if a.name in e["attributes"]
            }
    if kind == "get":
        return _get_tool(part["entity"])
    if kind == "find":
        return _find_tool(arch, part["entity"], part["names"])
    if kind == "count":
        return _count_tool(arch, part["entity"], part["names"])
    if kind == "link":
        return _link_tool(part["link"], part["from"], part["to"], part["names"])
    (tool,) = write_tools(arch, part, _kind_type, _what)
    return tool


def _parts(arch_id: str, schema: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(tool name, kind, key) of every tool of a schema; the key holds what the tool depends on."""
    arch = archetype(arch_id)

    def full(e: dict[str, Any]) -> dict[str, Any]:
        return {**e, "attributes": dict(e["attributes"])}

    def slim(e: dict[str, Any]) -> dict[str, Any]:  # what a ref's description names
        return {k: e[k] for k in ("id", "name", "plural", "key_prefix", "label")}

    def dump(x: Any) -> str:
        return json.dumps(x, sort_keys=True)

    names = {e["id"]: e for e in schema["entities"]}
    out = []
    for e in schema["entities"]:
        refs = {a.to: slim(names[a.to]) for a in arch.entity(e["id"]).attributes if a.name in e["attributes"] and a.to}
        out.append((f"get_{e['name']}", "get", dump({"entity": full(e)})))
        key = dump({"entity": full(e), "names": refs})
        out += [(f"find_{e['plural']}", "find", key), (f"count_{e['plural']}", "count", key)]
    for link in schema["links"]:
        ends = {x: full(names[x]) for x in link["between"]}
        for a, b in (link["between"], link["between"][::-1]):
            key = dump({"link": link, "from": a, "to": b, "names": ends})
            out.append((f"list_{names[b]['plural']}_of_{names[a]['name']}", "link", key))
    for act in schema["actions"]:
        spec = next(a for a in arch.actions if a.id == act["id"])
        others = [p.to for p in action_params(spec, arch.entity(spec.entity)).values() if p.to and p.to != spec.entity]
        ents = [full(names[spec.entity]), *(slim(names[x]) for x in sorted(set(others)))]
        out.append((act["tool"], "action", dump({"entities": ents, "links": [], "actions": [act]})))
    return out


def tool_names(arch_id: str, schema: dict[str, Any]) -> list[str]:
    """The names of every tool a world's schema implies, in toolset order (nothing is built).

    Raises:
        ValueError: Two tools would share a name (an archetype whose verbs and aliases clash).
    """
    names = [name for name, _, _ in _parts(arch_id, schema)]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"archetype {arch_id}: two tools named {dup!r} (rename a verb or an alias)")
    return names


def all_tools(arch_id: str, schema: dict[str, Any], only: set[str] | None = None) -> dict[str, Tool]:
    """The tools a world's schema implies (those in ``only``, when given), by name, ``submit`` aside.

    Raises:
        ValueError: Two tools would share a name.
    """
    tool_names(arch_id, schema)
    return {
        name: _unit(arch_id, kind, key) for name, kind, key in _parts(arch_id, schema) if only is None or name in only
    }


def toolset(tool_config: dict[str, Any]) -> list[Tool]:
    """The tools of a task: those its config exposes (all when ``expose`` is null), then ``submit``.

    Raises:
        KeyError: The config exposes a tool the schema does not imply.
    """
    expose = tool_config.get("expose")
    key = json.dumps([tool_config["archetype"], tool_config["schema"], expose], sort_keys=True)
    tools = _cached_toolset(key)
    chosen = list(tools.values()) if expose is None else [tools[n] for n in expose]
    return [*chosen, submit_tool(tool_config.get("answer", "text"))]


@functools.lru_cache(maxsize=256)  # a world's tasks share toolsets; worlds rarely do
def _cached_toolset(key: str) -> dict[str, Tool]:
    arch_id, schema, expose = json.loads(key)
    return all_tools(arch_id, schema, None if expose is None else set(expose))
