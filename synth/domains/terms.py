"""The words a world's rules use, mapped to the names its tools and prompts use.

Rules are written once per archetype, in its canonical words ("Bookings on sailings departing
within the next 24 hours cannot be cancelled"), while each world names its entities, verbs and
attributes its own way (a ``reservation`` on a ``crossing``, the verb ``refund``). Left alone, an
agent applying a rule itself would have to guess that "cancel" is "refund". So the system text
says, before the rules, which of their words this world names otherwise: every renamed entity,
verb and attribute a shown rule concerns (its action and the one it suggests instead, the
action's entity, and each entity and attribute its conditions read), and nothing the world names
canonically.

Decision: a glossary line rather than rewritten rule texts. Rules are free English (plurals,
participles: "Bookings", "cancelled"), and rewriting them by string replacement would produce
wrong words where the glossary states a fact the agent can apply.
"""

from __future__ import annotations

from typing import Any

from toolgym.synth.domains.ontology import Action, Count, Entity, Policy
from toolgym.synth.domains.schema import action_params
from toolgym.synth.text import with_article


def _spoken(name: str) -> str:
    return name.replace("_", " ")


def glossary(world: Any, rules: list[Policy]) -> str:
    """``'In the rules, "a booking" means a reservation, "to cancel" means to refund.'``, or ``""``.

    Args:
        world: The :class:`~toolgym.synth.domains.world.DomainWorld` the rules are shown in.
        rules: The policies shown (archetype policies of the world's sampled set).

    Returns:
        One sentence, or an empty string when every word the rules concern is the world's own.
    """
    pairs: dict[str, str] = {}
    verbs = {a["id"]: a["verb"] for a in world.schema["actions"]}
    for pol in rules:
        act = next(a for a in world.arch.actions if a.id == pol.action)
        _entity(world, act.entity, pairs)
        _add(pairs, act.verb, verbs.get(act.id, act.verb), "verb")
        alt = next((a for a in world.arch.actions if a.id == pol.instead and a.id in verbs), None)
        if alt is not None:  # "… reschedule them instead"
            _add(pairs, alt.verb, verbs[alt.id], "verb")
        conds = [*act.requires, *pol.forbid_if, *pol.when, *pol.require]
        for cond in conds:
            _condition(world, act, cond, pairs)
    if not pairs:
        return ""
    said = ", ".join(f'"{canon}" means {chosen}' for canon, chosen in pairs.items())
    return f"In the rules, {said}."


def _add(pairs: dict[str, str], canon: str, chosen: str, kind: str = "field") -> None:
    """Record a renaming, said by kind: ``"a booking"`` (an entity), ``"to cancel"`` (a verb), ``"balance"``.

    The kind words keep a noun and a verb spelt alike apart (a bank's verb "transfer" is kept
    while its entity "transfer" is a "transaction").
    """
    if _spoken(canon) == _spoken(chosen):
        return
    if kind == "entity":
        pairs.setdefault(with_article(_spoken(canon)), with_article(_spoken(chosen)))
    elif kind == "verb":
        pairs.setdefault(f"to {_spoken(canon)}", f"to {_spoken(chosen)}")
    else:
        pairs.setdefault(_spoken(canon), _spoken(chosen))


def _entity(world: Any, e_id: str, pairs: dict[str, str]) -> Entity | None:
    if e_id not in world.entities:
        return None
    _add(pairs, e_id, world.entities[e_id]["name"], "entity")
    return world.arch.entity(e_id)  # type: ignore[no-any-return]


def _attribute(world: Any, ent: Entity | None, name: str, pairs: dict[str, str]) -> Entity | None:
    """Add an attribute's renaming; returns the entity it refers to (for ``ref.field`` paths)."""
    if ent is None or name not in world.entities[ent.id]["attributes"]:
        return None
    _add(pairs, name, world.entities[ent.id]["attributes"][name])
    attr = ent.attribute(name)
    return _entity(world, attr.to, pairs) if attr is not None and attr.to else None


def _path(world: Any, act: Action, path: str, pairs: dict[str, str]) -> None:
    """``field``, ``ref.field``, ``@field`` (the row) or ``$param.field`` (a parameter's row)."""
    head, _, tail = path.lstrip("@").partition(".")
    ent = world.arch.entity(act.entity)
    if path.startswith("$"):
        p = action_params(act, ent).get(head[1:])
        ref = _entity(world, p.to, pairs) if p is not None and p.to else None
    else:
        ref = _attribute(world, ent, head, pairs)
    if tail:
        _attribute(world, ref, tail, pairs)


def _condition(world: Any, act: Action, cond: Any, pairs: dict[str, str]) -> None:
    if isinstance(cond, Count):
        counted = _entity(world, cond.count, pairs)
        for sub in cond.where:
            _attribute(world, counted, str(sub[0]), pairs)
        return
    left = str(cond[0])  # a field path of the row (rules.value with left=True)
    _path(world, act, left, pairs)
    for right in cond[2:]:  # literals, times, or paths marked with $ / @
        if isinstance(right, str) and right[:1] in ("$", "@"):
            _path(world, act, right, pairs)
