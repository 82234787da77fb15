"""Selectors: how a task names rows by constraints, how the generator evaluates them, how prompts say them.

A selector is public task data (the reference reads it, the prompt says it)::

    {"entity": "appointment", "where": [["patient", "eq", {"label_of": "patient", "label": "Maren Okafor"}],
                                        ["status", "eq", "scheduled"], ["starts_at", "ge", "2026-05-06"]]}

Conditions use canonical attribute names and the ops ``eq``, ``ge``, ``le`` (every one a
``find`` filter can express: an equality, or one end of a range). A ref's value is either a key
or ``{"label_of": entity, "label": text}``, the row of that entity with that (unique) label.
The generator evaluates selectors on the world's rows (:func:`matching`); the reference
evaluates them through tools; :func:`phrase` says them in the world's names.
"""

from __future__ import annotations

import random
import re
from typing import Any

from toolgym.synth.domains import kinds
from toolgym.synth.domains.rules import predicate
from toolgym.synth.domains.world import DomainState, DomainWorld


def ref_value(state: DomainState, entity: str, key: str) -> Any:
    """A ref's selector value: the referenced row by label when its entity has one, else the key."""
    label = state.world.entities[entity]["label"]
    if label is None:
        return key
    row = state.get(entity, key)
    return {"label_of": entity, "label": row[label]} if row is not None else key


def resolve(state: DomainState, v: Any) -> Any:
    """A selector value with ``label_of`` resolved to the key (None when no row has that label)."""
    if isinstance(v, dict):
        label = state.world.entities[v["label_of"]]["label"]
        keys = state.world.index(v["label_of"], label).get(v["label"], [])
        return keys[0] if keys else None
    return v


def matching(state: DomainState, sel: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows a selector names (the generator's own evaluation, on the episode's state)."""
    if "key" in sel:
        row = state.get(sel["entity"], sel["key"])
        return [row] if row is not None else []
    conds = [(a, op, resolve(state, v)) for a, op, v in sel["where"]]
    eqs = [(a, v) for a, op, v in conds if op == "eq" and v is not None and not isinstance(v, list)]
    ranges = [(a, op, v) for a, op, v in conds if op in ("ge", "le") and _plain(v)]  # sorted indices answer these
    preds = [
        predicate(a, op, v) for a, op, v in conds if (op != "eq" or (a, v) not in eqs) and (a, op, v) not in ranges
    ]
    return state.where(sel["entity"], eqs, preds, ranges)


def _plain(v: Any) -> bool:
    """A value a sorted index can bound by: a number or a string, not a bool."""
    return isinstance(v, int | float | str) and not isinstance(v, bool)


#: Last words that make an attribute's name a verb or a participle ("departs_from", "opened_on"):
#: such a name reads as a noun only with a head noun after it ("the opened on date").
PREPOSITIONS = frozenset(
    {"at", "on", "in", "for", "from", "to", "since", "by", "of", "off", "out", "up", "with", "until", "before"}
)
_NUMBERED = re.compile(r"\S \d+$")
_HEADS = {"date": "date", "datetime": "time", "time": "time", "money": "amount", "flag": "flag"}


def value_text(v: Any, kind: str, unit: str | None = None, name: str = "") -> str:
    """A value as a prompt says it (what a tool takes, in the reading a person would write).

    Labels (``{"label_of", "label"}``) by their label, and names, quoted when they end in a number
    (``"Screen 12"``: numbered labels read as one name, not a name and a count); money with thousands separators and two
    decimals (``12,345.60``); datetimes with a space (``2026-05-01 14:30``: tools take the ``T``
    form, which their descriptions show); enum values with spaces for underscores
    (``oil change``: the tools list the exact values); flags ``true``/``false``; percents ``5%``; durations in
    minutes and numbers with their unit when the archetype gives one (``12 docks``), unless
    ``name`` (the attribute's or parameter's, snake_case) already says it (``extra_minutes 30``).
    """
    unit = "minutes" if kind == "duration" else unit
    if unit and unit in name.split("_"):
        unit = None
    if unit and v == 1:  # "1 night", "1 person"
        unit = {"people": "person"}.get(unit, unit[:-1] if unit.endswith("s") else unit)
    if isinstance(v, dict):
        return _named(str(v["label"]))
    if isinstance(v, bool):
        return "true" if v else "false"
    if kind == "money" and isinstance(v, int | float):
        return f"{v:,.2f}"
    if kind == "percent" and isinstance(v, int | float):
        return f"{v}%"
    if kind == "datetime" and isinstance(v, str):
        return v.replace("T", " ")
    if kind == "enum" and isinstance(v, str):
        return v.replace("_", " ")
    if unit and isinstance(v, int | float):
        return f"{v} {unit}"
    return _named(v) if isinstance(v, str) and kind not in kinds.TEMPORAL else str(v)


def _named(text: str) -> str:
    """A name ending in a number, quoted: ``"Ziggy 7"``, ``"Sertraline 100 mg 3"`` (the number is part of it)."""
    return f'"{text}"' if _NUMBERED.search(text) else text


def attr_noun(world: DomainWorld, entity: str, attr: str) -> str:
    """An attribute's chosen name as a noun phrase: ``"base fare"``, ``"opened on date"``.

    A name ending in a preposition (a verb or participle: ``departs_from``, ``registered_at``), or
    a date or time named by a participle (``last_serviced``), takes a head noun by its kind: the
    entity a ref points to, ``date``, ``time``, ``amount``, else ``value``; a flag's name takes
    ``flag`` (``"contactless flag"``; ``has_receipt``: ``"receipt flag"``).
    """
    name = world.entities[entity]["attributes"].get(attr, attr)
    spec = world.arch.entity(entity).attribute(attr)
    kind = spec.kind if spec is not None else "text"
    words = name.split("_")
    if kind == "flag" and words[0] in ("has", "is", "with") and len(words) > 1:  # "has_receipt": "receipt flag"
        words = words[1:]
    if kind == "flag" and words[-1] != "flag":
        words.append("flag")
    elif words[-1] in PREPOSITIONS or (kind in kinds.TEMPORAL and words[-1].endswith("ed")):  # "last serviced"
        head = world.entities[spec.to]["name"] if kind == "ref" and spec is not None and spec.to else None
        words += (head or _HEADS.get(kind, "value")).split("_")
    return " ".join(words)


def _condition(world: DomainWorld, entity: str, a: str, op: str, v: Any) -> tuple[str, str]:
    """One condition in words: ``("owner", "doctor Lena Haddad")`` or ``("clause", "whose …")``."""
    attr = world.arch.entity(entity).attribute(a)
    kind = attr.kind if attr is not None else "text"
    noun = attr_noun(world, entity, a)
    if kind == "ref" and isinstance(v, dict):
        other, label = world.entities[v["label_of"]]["name"].replace("_", " "), value_text(v, kind)
        # not "screen Screen 5": a label starting with its entity's name says it alone
        named = label if label.strip('"').lower().startswith(other.lower() + " ") else f"{other} {label}"
        if noun == other:
            return "owner", named
        if noun.endswith(" " + other):  # "whose departs from airport is Stonehill City"
            return "clause", f"whose {noun} is {label}"
        return "clause", f"whose {noun} is the {named}"
    if kind == "flag":
        return "clause", f"whose {noun} is {'on' if v else 'off'}"
    shown = value_text(v, kind, attr.unit if attr is not None else None, noun.replace(" ", "_"))
    be = copula(noun, kind)
    if op == "eq":
        return "clause", f"whose {noun} {be} {shown}"
    if kind in kinds.TEMPORAL:
        return "clause", f"whose {noun} {be} {'on or after' if op == 'ge' else 'on or before'} {shown}"
    return "clause", f"whose {noun} {be} {'at least' if op == 'ge' else 'at most'} {shown}"


def copula(noun: str, kind: str) -> str:
    """``are`` after a plural count (``"whose reward points are at least 40"``), else ``is``.

    Only numeric attributes are judged (counts are plural nouns; an enum called ``species`` is not).
    """
    plural = kind in kinds.NUMERIC and noun.endswith("s") and not noun.endswith(("ss", "us", "is"))
    return "are" if plural else "is"


def phrase(world: DomainWorld, sel: dict[str, Any]) -> str:
    """A selector's conditions in words, in the world's names.

    ``"of doctor Lena Haddad whose client is the patient Maren Okafor and whose status is
    scheduled"``: refs named like the entity they point to read as owners (``of …``), the
    rest as ``whose …`` clauses (flags ``whose paid flag is on``/``off``; values as
    :func:`value_text` says them). A selector by key says the key.
    """
    if "key" in sel:
        return str(sel["key"])
    owners: list[str] = []  # "of doctor Lena Haddad": a ref named like the entity it points to
    parts: list[str] = []  # "whose status is scheduled"
    for a, op, v in sel["where"]:
        role, text = _condition(world, sel["entity"], a, op, v)
        (owners if role == "owner" else parts).append(text)
    text = f"of {_and(owners)}" if owners else ""
    if parts:
        text += (" " if text else "") + _and(parts)
    return text


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _candidate_conds(state: DomainState, entity: str, row: dict[str, Any]) -> list[list[Any]]:
    """Equalities a row satisfies, usable to name it (refs by label, enums, flags, strings, dates)."""
    world = state.world
    out = []
    for a in world.attrs(entity):
        v = row.get(a.name)
        if v is None or a.kind in ("text", "email", "phone", "address", "int", "money", "rating", "percent"):
            continue
        if a.kind == "ref":
            out.append([a.name, "eq", ref_value(state, a.to, v)])  # type: ignore[arg-type]
        elif a.kind in ("enum", "flag", "date", "datetime", "time", "city", "code", "phrase", "duration"):
            out.append([a.name, "eq", v])
    return out


def unique_selector(
    state: DomainState,
    entity: str,
    row: dict[str, Any],
    rng: random.Random,
    avoid: set[str] = frozenset(),  # type: ignore[assignment]
) -> dict[str, Any] | None:
    """Constraints that name exactly ``row`` (its label when the entity has one), or None.

    ``avoid``: attributes the constraints may not use (the one a lookup asks for).
    """
    label = state.world.entities[entity]["label"]
    if label is not None and rng.random() < 0.7:
        return {"entity": entity, "where": [[label, "eq", row[label]]]}
    conds = [c for c in _candidate_conds(state, entity, row) if c[0] not in avoid]
    rng.shuffle(conds)
    conds.sort(key=lambda c: not isinstance(c[2], dict))  # refs first: they read naturally
    chosen: list[list[Any]] = []
    for c in conds:
        chosen.append(c)
        sel = {"entity": entity, "where": list(chosen)}
        hits = matching(state, sel)
        if len(hits) == 1:
            return sel
    if label is not None:
        return {"entity": entity, "where": [[label, "eq", row[label]]]}
    return None


def group_selector(
    state: DomainState, entity: str, lo: int, hi: int, rng: random.Random, tries: int = 12
) -> dict[str, Any] | None:
    """Constraints naming between ``lo`` and ``hi`` rows of ``entity`` (:func:`group`), or None."""
    found = group(state, entity, lo, hi, rng, tries)
    return None if found is None else found[0]


def group(
    state: DomainState,
    entity: str,
    lo: int,
    hi: int,
    rng: random.Random,
    tries: int = 12,
    anchor: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """A selector naming between ``lo`` and ``hi`` rows of ``entity``, and those rows (key order), or None.

    The rows are the ones :func:`matching` gives for the selector (they are found on the way).
    ``anchor``: the row each try takes its constraints from (else a random row per try); a
    range bound set at a quantile may leave it out of the group.

    Each try takes an anchor row and adds constraints it meets (equalities first: they go through
    the indices) until the group is small enough, narrowing the candidate list as it goes; a
    range after an equality takes its bound at the quantile that leaves a group of about the
    wanted size, so few tries fail.
    """
    world = state.world
    eq_attrs = [a for a in world.attrs(entity) if a.kind in ("ref", "enum", "flag")]
    range_attrs = [a for a in world.attrs(entity) if a.kind in kinds.NUMERIC or a.kind in ("date", "datetime")]
    keys = list(world.rows[entity])
    if len(keys) < lo or not (eq_attrs or range_attrs):
        return None
    for _ in range(tries):
        row = anchor if anchor is not None else state.get(entity, rng.choice(keys))
        n_eq = rng.randint(1 if eq_attrs and (len(keys) > 200 or not range_attrs) else 0, min(2, len(eq_attrs)))
        order = rng.sample(eq_attrs, n_eq)  # large tables start from an index, not a scan
        order += rng.sample(range_attrs, rng.randint(0 if order else 1, min(2, len(range_attrs))))
        where: list[list[Any]] = []
        cands: list[dict[str, Any]] | None = None
        for a in order:
            v = row.get(a.name)  # type: ignore[union-attr]
            if v is None:
                continue
            op = "eq" if a in eq_attrs else rng.choice(["ge", "le"])
            if op != "eq" and cands is not None and len(cands) > hi:
                # a bound at the quantile that leaves a group of the wanted size (ties may shift it)
                values = sorted(x for r in cands if (x := r.get(a.name)) is not None and not isinstance(x, bool))
                if len(values) >= lo and type(values[0]) is type(values[-1]):
                    want = rng.randint(lo, min(hi, len(values)))
                    v = values[want - 1] if op == "le" else values[-want]
            if cands is None and op == "eq":
                cands = state.where(entity, [(a.name, v)], [])
            elif cands is None and not isinstance(v, bool):
                cands = state.where(entity, [], [], [(a.name, op, v)])  # a sorted index answers it
            else:
                test = predicate(a.name, op, v)
                cands = [r for r in (state.rows(entity) if cands is None else cands) if test(r)]
            shown = ref_value(state, a.to, v) if a.kind == "ref" else v  # type: ignore[arg-type]
            where.append([a.name, op, shown])
            if len(cands) < lo:
                break
            if len(cands) <= hi:
                return {"entity": entity, "where": where}, cands
    return None
