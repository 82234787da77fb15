"""The semantics of conditions, effects and policies (the operand grammar of ``ontology.py``).

One evaluator serves the write tools (preconditions, enforced policies, effects), the task
generator (which requests pass, which a policy forbids) and the reference program (which
evaluates duty policies on rows it *read through tools*): every caller passes a ``reader``
with ``get(entity, key) -> row | None`` and ``rows(entity) -> iterable of rows``
(:class:`~toolgym.synth.domains.world.DomainState`, or the reference's mirror of what it read).

Comparisons: numbers with numbers, strings with strings (ISO dates and datetimes compare in
time order as strings); anything against null is false except ``eq``/``ne``/``is_null``/
``not_null``, so a missing value never satisfies an ordering.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from toolgym.envs.tools import ToolError
from toolgym.synth.domains import kinds
from toolgym.synth.domains.ontology import Action, Archetype, Count, Entity, Param, Policy
from toolgym.synth.domains.schema import action_params

_TIME = re.compile(r"^(now|today)([+-]\d+[mhdy])?$")
OP_WORDS = {
    "eq": "is",
    "ne": "is not",
    "lt": "is less than",
    "le": "is at most",
    "gt": "is greater than",
    "ge": "is at least",
    "in": "is one of",
    "not_in": "is not one of",
    "is_null": "is empty",
    "not_null": "is set",
    "hour_ge": "has an hour of at least",
    "hour_lt": "has an hour before",
    "weekday_in": "falls on weekday (0 = Monday)",
    "contains": "contains",
}


class Reader(Protocol):
    """Row access: an episode's state, or a mirror of rows read through tools."""

    def get(self, entity: str, key: str) -> dict[str, Any] | None: ...  # noqa: D102 - see class

    def rows(self, entity: str) -> Any: ...  # noqa: D102 - see class


@dataclass
class Call:
    """One action request being evaluated: the action, its row (target or new) and its params."""

    arch: Archetype
    action: Action
    row: dict[str, Any]
    params: dict[str, Any]
    now: dt.datetime

    @property
    def entity(self) -> Entity:
        """The entity the action acts on or creates."""
        return self.arch.entity(self.action.entity)


def _time(x: str, now: dt.datetime) -> str:
    return kinds.time_value(x, now, date_only=x.startswith("today"))


def _path(path: str, call: Call, reader: Reader) -> Any:
    head, _, tail = path.partition(".")
    value = call.row.get(head)
    if not tail:
        return value
    attr = call.entity.attribute(head)
    ref = reader.get(attr.to, value) if (attr is not None and attr.to and value is not None) else None  # type: ignore[arg-type]
    return None if ref is None else ref.get(tail)


def value(x: Any, call: Call, reader: Reader, left: bool = False) -> Any:
    """An operand's value (``left``: a bare string is a field path, not a literal)."""
    if isinstance(x, list):
        return [value(v, call, reader) for v in x]
    if not isinstance(x, str):
        return x
    if x.startswith("$"):
        head, _, tail = x[1:].partition(".")
        v = call.params.get(head)
        if not tail:
            return v
        p = action_params(call.action, call.entity).get(head)
        ref = reader.get(p.to, v) if (p is not None and p.to and v is not None) else None
        return None if ref is None else ref.get(tail)
    if x.startswith("@"):
        return _path(x[1:], call, reader)
    if left:
        return _path(x, call, reader)
    if _TIME.match(x):
        return _time(x, call.now)
    return x


def _order(a: Any, b: Any) -> bool:
    """Whether two values can be ordered (same family, neither null nor a bool)."""
    if a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
        return False
    return isinstance(a, int | float) == isinstance(b, int | float)


def compare(left: Any, op: str, right: Any) -> bool:
    """``left op right`` (the ops of :data:`toolgym.synth.domains.ontology.OPS`)."""
    if op == "eq":
        return bool(left == right)
    if op == "ne":
        return bool(left != right)
    if op == "is_null":
        return left is None
    if op == "not_null":
        return left is not None
    if op in ("in", "not_in"):
        inside = left in (right or [])
        return inside if op == "in" else (left is not None and not inside)
    if left is None:
        return False
    if op in ("hour_ge", "hour_lt"):
        if not isinstance(left, str) or len(left) < 13 or not isinstance(right, int | float):
            return False
        hour = int(left[11:13])
        return hour >= right if op == "hour_ge" else hour < right
    if op == "weekday_in":
        return isinstance(left, str) and dt.date.fromisoformat(left[:10]).weekday() in (right or [])
    if op == "contains":
        return isinstance(left, str) and isinstance(right, str) and right in left
    if not _order(left, right):
        return False
    if op == "lt":
        return bool(left < right)
    if op == "le":
        return bool(left <= right)
    if op == "gt":
        return bool(left > right)
    return bool(left >= right)  # ge


def predicate(attr: str, op: str, v: Any) -> Callable[[dict[str, Any]], bool]:
    """``row -> row[attr] op v`` (:func:`compare`), with fast paths for orderings of plain values."""
    if op in ("ge", "le", "gt", "lt") and isinstance(v, int | float | str) and not isinstance(v, bool):
        number = not isinstance(v, str)

        def ordered(r: dict[str, Any]) -> bool:
            x = r.get(attr)
            if x is None or isinstance(x, bool) or isinstance(x, str) == number:
                return False
            return x >= v if op == "ge" else x <= v if op == "le" else x > v if op == "gt" else x < v

        return ordered
    if op == "eq":  # compare's eq, without its dispatch (the commonest filter)
        return lambda r: bool(r.get(attr) == v)
    return lambda r: compare(r.get(attr), op, v)


def count(c: Count, call: Call, reader: Reader) -> int:
    """How many rows of ``c.count`` satisfy its ``where`` conditions (indexed when the reader can)."""
    subs = [(str(s[0]), s[1], value(s[2], call, reader) if len(s) == 3 else None) for s in c.where]
    where = getattr(reader, "where", None)
    if where is not None:
        eqs = [(f, r) for f, op, r in subs if op == "eq" and r is not None and not isinstance(r, list | dict)]
        return len(where(c.count, eqs, [predicate(f, op, r) for f, op, r in subs if op != "eq" or (f, r) not in eqs]))
    return sum(1 for row in reader.rows(c.count) if all(compare(row.get(f), op, r) for f, op, r in subs))


def holds(cond: Any, call: Call, reader: Reader) -> bool:
    """Whether one condition holds for a call."""
    if isinstance(cond, Count):
        counter = getattr(reader, "count_rows", None)  # a reader that counts through tools
        n = counter(cond, call) if counter is not None else count(cond, call, reader)
        return compare(n, cond.op, cond.value)
    left = value(str(cond[0]), call, reader, left=True)
    right = value(cond[2], call, reader) if len(cond) == 3 else None
    return compare(left, cond[1], right)


def failed_requirement(call: Call, reader: Reader) -> Any | None:
    """The first of the action's ``requires`` that does not hold, or None."""
    return next((c for c in call.action.requires if not holds(c, call, reader)), None)


def forbids(pol: Policy, call: Call, reader: Reader) -> bool:
    """Whether a policy forbids a call (``forbid_if`` all hold, or ``when`` holds and ``require`` fails)."""
    if pol.forbid_if:
        return all(holds(c, call, reader) for c in pol.forbid_if)
    return all(holds(c, call, reader) for c in pol.when) and not all(holds(c, call, reader) for c in pol.require)


class Naming(Protocol):
    """Chosen names of a world (a :class:`~toolgym.synth.domains.world.DomainWorld`)."""

    entities: dict[str, dict[str, Any]]


def field_name(path: str, entity: str, arch: Archetype, world: Naming) -> str:
    """A condition path in the world's chosen names (``patient.balance`` → ``client.amount_due``)."""
    head, _, tail = path.partition(".")
    names = world.entities[entity]["attributes"]
    out = names.get(head, head)
    if tail:
        attr = arch.entity(entity).attribute(head)
        if attr is not None and attr.to in world.entities:
            out += "." + world.entities[attr.to]["attributes"].get(tail, tail)  # type: ignore[index]
    return out


def describe(cond: Any, call: Call, world: Naming) -> str:
    """A condition in words, with the world's names (for error messages)."""
    ent = call.entity.id

    def side(x: Any, left: bool) -> str:
        if isinstance(x, str) and x.startswith("$"):
            head, _, tail = x[1:].partition(".")
            p = action_params(call.action, call.entity).get(head)
            name = head if isinstance(p, Param) else world.entities[ent]["attributes"].get(head, head)
            if tail and p is not None and p.to in world.entities:
                tail = world.entities[p.to]["attributes"].get(tail, tail)  # type: ignore[index]
            return f"the {name} argument" + (f"'s {tail}" if tail else "")
        if isinstance(x, str) and (x.startswith("@") or left):
            return field_name(x.removeprefix("@"), ent, call.arch, world)
        return "null" if x is None else str(x).lower() if isinstance(x, bool) else str(x)

    if isinstance(cond, Count):
        what = world.entities[cond.count]["plural"]
        subs = ", ".join(
            f"{world.entities[cond.count]['attributes'].get(str(s[0]), s[0])} {OP_WORDS[s[1]]}"
            + (f" {side(s[2], False)}" if len(s) == 3 else "")
            for s in cond.where
        )
        return f"the number of {what} with {subs} {OP_WORDS[cond.op]} {cond.value}"
    right = f" {side(cond[2], False)}" if len(cond) == 3 else ""
    return f"{side(cond[0], True)} {OP_WORDS[cond[1]]}{right}"


def effects(call: Call, reader: Reader, world: Naming) -> dict[tuple[str, str], dict[str, Any]]:
    """The rows a call changes: ``{(entity, key): new row}`` (copies; nothing is stored).

    Raises:
        ToolError: An ``add``/``sub`` would take a field below its attribute's ``min``.
    """
    ent = call.entity
    out: dict[tuple[str, str], dict[str, Any]] = {(ent.id, call.row["id"]): call.row}
    for eff in call.action.effects:
        head, _, tail = eff.path.partition(".")
        entity, key, name = ent.id, call.row["id"], head
        if tail:
            attr = ent.attribute(head)
            entity, key, name = attr.to, out[(ent.id, call.row["id"])].get(head), tail  # type: ignore[union-attr,assignment]
            if key is None:
                continue
        row = out.get((entity, key))
        if row is None:
            base = reader.get(entity, key)
            if base is None:
                continue
            row = out[(entity, key)] = dict(base)
        if name not in world.entities[entity]["attributes"]:
            continue
        if eff.set is not None:
            row[name] = value(eff.to, call, reader)
            continue
        delta = value(eff.by, call, reader)
        if not isinstance(delta, int | float) or isinstance(delta, bool):
            continue
        new = round((row.get(name) or 0) + (delta if eff.add else -delta), 2)
        lo = call.arch.entity(entity).attribute(name).min  # type: ignore[union-attr]
        if isinstance(lo, int | float) and new < lo:
            shown = field_name(eff.path, ent.id, call.arch, world)
            raise ToolError(f"{shown} cannot go below {lo:g} (it would be {new:g}); nothing was changed")
        row[name] = new
    return out
