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


def _fmt(v: Any, kind: str) -> str:
    if isinstance(v, dict):
        return str(v["label"])
    if kind == "money":
        return f"{v:.2f}"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def phrase(world: DomainWorld, sel: dict[str, Any]) -> str:
    """A selector's conditions in words, in the world's names.

    ``"of doctor Lena Haddad whose client is the patient Maren Okafor and whose status is
    scheduled"``: refs named like the entity they point to read as owners (``of …``), the
    rest as ``whose …`` clauses.
    """
    if "key" in sel:
        return str(sel["key"])
    ent = world.arch.entity(sel["entity"])
    names = world.entities[sel["entity"]]["attributes"]
    owners: list[str] = []  # "of doctor Lena Haddad": a ref named like the entity it points to
    parts: list[str] = []  # "whose status is scheduled"
    for a, op, v in sel["where"]:
        attr = ent.attribute(a)
        kind = attr.kind if attr is not None else "text"
        name = names.get(a, a).replace("_", " ")
        if kind == "ref" and isinstance(v, dict):
            other = world.entities[v["label_of"]]["name"].replace("_", " ")
            if name == other:
                owners.append(f"{other} {v['label']}")
            else:
                parts.append(f"whose {name} is the {other} {v['label']}")
        elif op == "eq":
            parts.append(f"whose {name} is {_fmt(v, kind)}")
        elif kind in kinds.TEMPORAL:
            parts.append(f"whose {name} is {'on or after' if op == 'ge' else 'on or before'} {_fmt(v, kind)}")
        else:
            parts.append(f"whose {name} is {'at least' if op == 'ge' else 'at most'} {_fmt(v, kind)}")
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
