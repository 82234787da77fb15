"""Write tools: one per sampled action, and :func:`perform`, the one way a write happens.

:func:`perform` checks, in order: the target (or every ref parameter) exists; every
``requires`` condition holds (else a :class:`ToolError` naming the first that fails, in the
world's names); no *enforced* policy forbids the call (else a ToolError quoting the policy's
text). Only then are the effects computed, on copies, and stored together: a failed write
changes nothing. *Duty* policies are not checked here: the agent must follow them itself.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from toolgym.envs.strict import Text
from toolgym.envs.tools import Tool, ToolError
from toolgym.synth.domains import rules
from toolgym.synth.domains.argmodels import derived_tool
from toolgym.synth.domains.ontology import Action, Archetype, Param
from toolgym.synth.domains.schema import action_params
from toolgym.synth.domains.world import DomainState
from toolgym.synth.text import with_article

#: What every write tool's description says about failing. It must hold in both policy modes: an
#: enforced rule makes the call fail, a rule left to the agent does not (the write goes through and
#: the expected state follows the rule), so "fails when a rule forbids it" would be false there.
CHECKS = (
    "Fails, changing nothing, when its conditions are unmet or a rule it checks forbids it; "
    "it does not check every rule, so follow the rules yourself."
)


def arg_names(act: Action, arch: Archetype, schema: dict[str, Any]) -> dict[str, str]:
    """``{canonical parameter: argument name}`` of an action's tool (the target key is ``<entity>_id``)."""
    ents = {e["id"]: e for e in schema["entities"]}
    chosen = ents[act.entity]["attributes"]
    out = {"": f"{ents[act.entity]['name']}_id"} if act.target else {}
    for canon, p in action_params(act, arch.entity(act.entity)).items():
        out[canon] = canon if isinstance(p, Param) else chosen.get(canon, canon)
    return out


def new_row(state: DomainState, act: Action, params: dict[str, Any]) -> dict[str, Any]:
    """The row a ``creates`` action would add (its key is the next one; nothing is stored)."""
    world = state.world
    ent = act.entity
    row: dict[str, Any] = {"id": state.peek_key(ent)}
    for a in world.attrs(ent):
        row[a.name] = params.get(a.name, act.init.get(a.name))
    return row


def check(state: DomainState, act: Action, target: str | None, params: dict[str, Any]) -> rules.Call:
    """The call of ``act`` if it may run (requires and enforced policies), else a ToolError."""
    world = state.world
    ent = world.entities[act.entity]
    for canon, p in action_params(act, world.arch.entity(act.entity)).items():
        if p.kind == "ref" and params.get(canon) is not None and state.get(p.to, params[canon]) is None:
            other = world.entities[p.to]
            ids = f"{other['name']} ids look like {other['key_prefix']}-00001"
            raise ToolError(f"no {other['name']} with id {params[canon]!r}; {ids}")
    if target is not None:
        row = state.get(act.entity, target)
        if row is None:
            raise ToolError(
                f"no {ent['name']} with id {target!r}; {ent['name']} ids look like {ent['key_prefix']}-00001"
            )
        row = dict(row)
    else:
        row = new_row(state, act, params)
    call = rules.Call(world.arch, act, row, params, world.now_dt)
    verb = world.action_tools[act.id]
    failed = rules.failed_requirement(call, state)
    if failed is not None:
        what = f"{ent['name']} {target}" if target else f"the new {ent['name']}"
        raise ToolError(
            f"{verb} failed for {what}: it requires that {rules.describe(failed, call, world)}; nothing was changed"
        )
    for pol in world.arch.policies:
        if pol.action == act.id and world.policy_modes.get(pol.id) == "enforced" and rules.forbids(pol, call, state):
            raise ToolError(f"{verb} refused by policy: {pol.text} Nothing was changed.")
    return call


def perform(state: DomainState, act: Action, target: str | None, params: dict[str, Any]) -> dict[str, Any]:
    """Run one action on an episode's state; returns the acted-on row (canonical names).

    Raises:
        ToolError: Unknown key, unmet precondition, enforced policy, or an amount below a minimum
            (nothing is stored in any of these cases).
    """
    call = check(state, act, target, params)
    changes = rules.effects(call, state, state.world)
    if target is None:
        state.new_key(act.entity)
    for (entity, _), row in changes.items():
        state.put(entity, row)
    return call.row


def write_tools(arch: Archetype, schema: dict[str, Any], kind_type: Any, what: Any) -> list[Tool]:
    """One tool per sampled action (``kind_type``/``what`` type and describe parameters)."""
    from toolgym.synth.domains.requests import verb_phrase  # requests imports this module

    ents = {e["id"]: e for e in schema["entities"]}
    out: list[Tool] = []
    for spec in schema["actions"]:
        act = next(a for a in arch.actions if a.id == spec["id"])
        names = arg_names(act, arch, schema)
        ent = ents[act.entity]
        fields: dict[str, Any] = {}
        if act.target:
            fields[names[""]] = (
                Text,
                Field(description=f"id of the {ent['name'].replace('_', ' ')} to {spec['verb'].replace('_', ' ')}"),
            )
        for canon, p in action_params(act, arch.entity(act.entity)).items():
            lo, hi = (p.min, p.max) if isinstance(p, Param) else (None, None)
            fields[names[canon]] = (kind_type(p.kind, p.values, lo, hi), Field(description=what(p, ents)))
        render = [("id", "id"), *ent["attributes"].items()]
        plain = {v: k for k, v in names.items() if k}

        def run(
            state: DomainState,
            act: Action = act,
            plain: Any = plain,
            render: Any = render,
            idarg: Any = names.get(""),  # noqa: B008 - bound per tool, as the other defaults
            **kw: Any,
        ) -> Any:
            target = kw.pop(idarg) if idarg else None
            row = perform(state, act, target, {plain[k]: v for k, v in kw.items()})
            return {"ok": True, "row": {chosen: row.get(canon) for canon, chosen in render}}

        verb = spec["verb"].replace("_", " ")
        names, noun = {act.entity, *arch.entity(act.entity).aliases, ent["name"]}, ent["name"].replace("_", " ")
        said = verb_phrase(spec["verb"], with_article(noun) if act.target else f"a new {noun}", names)
        if not act.target and said.endswith(")"):  # "add screening (a new showing)": say it plainly
            said = f"{verb}: create a new {noun}"
        desc = act.description or f"{_capital(said)}."
        # true whatever the world's policy modes: a rule left to the agent is not checked by the tool
        desc += f" {CHECKS}"
        out.append(derived_tool(spec["tool"], run, "write", desc, fields))
    return out


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
