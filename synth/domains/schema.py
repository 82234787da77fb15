"""Sampling a world's schema from an archetype: its entities, attributes, links, actions, policies, names.

The sample (:func:`sample_schema`) is plain JSON (it is stored in the world's data and in every
task's tool config, from which the toolset is derived):

``{"entities": [{"id", "name", "plural", "label", "key_prefix", "attributes": {canonical: chosen}}],
"links": [{"id", "name", "between"}], "actions": [{"id", "tool", "verb"}], "policies": [{"id", "mode"}]}``

Rules (decisions of the engine, the archetype format is silent on them):

* entities: every ``core`` one, each other with probability 0.6, then closed under refs (a
  sampled entity's ref attributes are always kept, so the entities they point to join);
* actions: those whose entities (target or created, ref params, counted entities) all exist,
  each with probability 0.8 (at least one when any can exist);
* attributes: label, ``core`` and ref attributes, every attribute a sampled action or policy
  names (conditions, effects, params, ``init``), an email's source, then each other with
  probability 0.6;
* policies: those of sampled actions, each with probability 0.85; the mode is drawn per
  ``enforce`` (``maybe``: enforced or duty with equal odds);
* links: those between sampled entities, each with probability 0.7;
* names: each entity, attribute and verb takes its canonical name or one of its aliases, drawn
  uniformly, unless that would clash within its scope (then the canonical name). The world's
  data keeps canonical names; tools speak the chosen ones.
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import BaseModel

from toolgym.synth.domains.ontology import Action, Archetype, Count, Entity, Param, Policy

#: Names a tool argument may not take: the key, the tools' own arguments, and what would shadow
#: an attribute of pydantic's BaseModel (the argument models are pydantic models).
RESERVED = frozenset({"id", "page", "answer"} | {n for n in dir(BaseModel) if not n.startswith("_")})


def plural(word: str) -> str:
    """English plural of a snake_case name (the last word is inflected)."""
    if word.endswith(("s", "x", "ch", "sh", "z")):
        return word + "es"
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _operand_fields(x: Any, ent: Entity, arch: Archetype, params: dict[str, Any], out: set[tuple[str, str]]) -> None:
    """Record the (entity, attribute) pairs an operand reads."""
    if not isinstance(x, str):
        return
    if x.startswith("$"):
        head, _, tail = x[1:].partition(".")
        p = params.get(head)
        if p is not None and tail and p.to is not None:
            out.add((p.to, tail))
        if p is not None and not isinstance(p, Param):
            out.add((ent.id, head))
        return
    path = x.removeprefix("@")
    if x.startswith("@") or x == path:
        head, _, tail = path.partition(".")
        attr = ent.attribute(head)
        if attr is None:
            return
        out.add((ent.id, head))
        if tail and attr.to is not None:
            out.add((attr.to, tail))


def action_params(act: Action, ent: Entity) -> dict[str, Any]:
    """The parameters of an action by canonical name: attributes of the entity, or :class:`Param`."""
    out: dict[str, Any] = {}
    for p in act.params:
        if isinstance(p, str):
            attr = ent.attribute(p)
            if attr is not None:
                out[p] = attr
        else:
            out[p.name] = p
    return out


def conditions_fields(conds: list[Any], ent: Entity, arch: Archetype, params: dict[str, Any]) -> set[tuple[str, str]]:
    """Every (entity, attribute) a list of conditions reads."""
    out: set[tuple[str, str]] = set()
    for c in conds:
        if isinstance(c, Count):
            for sub in c.where:
                out.add((c.count, str(sub[0])))
                if len(sub) == 3:
                    _operand_fields(sub[2], ent, arch, params, out)
            continue
        _operand_fields(str(c[0]), ent, arch, params, out)
        if len(c) == 3:
            _operand_fields(c[2], ent, arch, params, out)
    return out


def action_fields(act: Action, policies: list[Policy], arch: Archetype) -> set[tuple[str, str]]:
    """Every (entity, attribute) an action and its policies read or write."""
    ent = arch.entity(act.entity)
    params = action_params(act, ent)
    out = conditions_fields(act.requires, ent, arch, params)
    for pol in policies:
        out |= conditions_fields([*pol.forbid_if, *pol.when, *pol.require], ent, arch, params)
    for eff in act.effects:
        _operand_fields(eff.path, ent, arch, params, out)
        _operand_fields(eff.to if eff.set else eff.by, ent, arch, params, out)
    out |= {(ent.id, k) for k in act.init}
    out |= {(ent.id, p) for p in act.params if isinstance(p, str)}
    return out


def action_entities(act: Action, arch: Archetype) -> set[str]:
    """The entities an action needs: its own, its ref params' targets, counted ones."""
    ent = arch.entity(act.entity)
    out = {ent.id}
    for p in action_params(act, ent).values():
        if p.kind == "ref" and p.to:
            out.add(p.to)
    for c in act.requires:
        if isinstance(c, Count):
            out.add(c.count)
    return out


def _counted(pol: Policy) -> set[str]:
    return {c.count for c in [*pol.forbid_if, *pol.when, *pol.require] if isinstance(c, Count)}


def _choose_name(rng: random.Random, canonical: str, aliases: list[str], taken: set[str], scope: str = "") -> str:
    """The canonical name or an alias drawn at random, avoiding clashes and reserved names.

    Falls back to another option, then to ``<scope>_<canonical>`` (an attribute called ``copy``
    becomes ``book_copy`` in the tools).
    """
    options = [canonical, *aliases]
    pick = rng.choice(options)
    for name in [pick, *options, f"{scope}_{canonical}", f"{scope}_{canonical}_2"]:
        if name not in taken and name not in RESERVED:
            taken.add(name)
            return name
    raise ValueError(f"no free name for {canonical!r}")


def _entities(arch: Archetype, rng: random.Random) -> list[str]:
    chosen = {e.id for e in arch.entities if e.core or rng.random() < 0.6}
    todo = list(chosen)
    while todo:
        for a in arch.entity(todo.pop()).attributes:
            if a.kind == "ref" and a.to not in chosen:
                chosen.add(a.to)  # type: ignore[arg-type]
                todo.append(a.to)  # type: ignore[arg-type]
    return [e.id for e in arch.entities if e.id in chosen]


def sample_schema(arch: Archetype, rng: random.Random) -> dict[str, Any]:
    """Draw a world's schema from an archetype (see the module docstring for the rules)."""
    ents = set(_entities(arch, rng))
    possible = [a for a in arch.actions if action_entities(a, arch) <= ents]
    actions = [a for a in possible if rng.random() < 0.8] or possible[:1]
    action_ids = {a.id for a in actions}
    policies = [p for p in arch.policies if p.action in action_ids and _counted(p) <= ents and rng.random() < 0.85]
    needed: set[tuple[str, str]] = set()
    for act in actions:
        needed |= action_fields(act, [p for p in policies if p.action == act.id], arch)
    entities: list[dict[str, Any]] = []
    ent_taken: set[str] = set()
    for e in arch.entities:
        if e.id not in ents:
            continue
        name = _choose_name(rng, e.id, e.aliases, ent_taken, "the")
        attrs: dict[str, str] = {}
        taken: set[str] = {"id"}
        for a in e.attributes:
            keep = a.core or a.name == e.label or a.kind == "ref" or (e.id, a.name) in needed or rng.random() < 0.6
            keep = keep or any(b.source == a.name for b in e.attributes if b.kind == "email")
            if keep:
                attrs[a.name] = _choose_name(rng, a.name, a.aliases, taken, e.id)
        for a in e.attributes:  # an email's source, even if the email was drawn after it
            if a.kind == "email" and a.name in attrs and a.source and a.source not in attrs:
                attrs[a.source] = _choose_name(rng, a.source, [], taken, e.id)
        attrs = {a.name: attrs[a.name] for a in e.attributes if a.name in attrs}
        entities.append(
            {
                "id": e.id,
                "name": name,
                "plural": e.plural_name if name == e.id else plural(name),
                "label": e.label,
                "key_prefix": e.key_prefix,
                "attributes": attrs,
            }
        )
    links = []
    for link in arch.links:
        if set(link.between) <= ents and link.between[0] != link.between[1] and rng.random() < 0.7:
            links.append({"id": link.id, "name": rng.choice([link.id, *link.aliases]), "between": list(link.between)})
    names = {e["id"]: e["name"] for e in entities}
    tools: set[str] = set()
    out_actions = []
    for act in actions:
        verb = rng.choice([act.verb, *act.verb_aliases])
        tool = verb if "_" in verb else f"{verb}_{names[act.entity]}"
        if tool in tools:
            tool = f"{verb}_{names[act.entity]}"
        if tool in tools:
            tool = act.id
        tools.add(tool)
        out_actions.append({"id": act.id, "tool": tool, "verb": verb})
    out_policies = []
    for pol in policies:
        mode = {"always": "enforced", "never": "duty"}.get(pol.enforce) or rng.choice(["enforced", "duty"])
        out_policies.append({"id": pol.id, "mode": mode})
    return {"entities": entities, "links": links, "actions": out_actions, "policies": out_policies}
