"""Write requests: what a task asks the agent to do, drawn so the generator knows its outcome.

A request is public task data: ``{"action": id, "target": selector | null, "params": {canonical:
value}}`` (a ref parameter's value is a key or ``{"label_of", "label"}`` as in selectors). The
generator draws requests whose preconditions hold (:func:`propose`), asks which policies would
forbid them (:func:`blocking`, duty and enforced alike: the expected state follows every rule)
and runs them on its own copy of the state (:func:`simulate`), which gives the expected state
and the ids a task's answer lists.
"""

from __future__ import annotations

import random
from typing import Any

from toolgym.envs.tools import ToolError
from toolgym.synth import names as nm
from toolgym.synth.domains import actions, kinds, query, rules
from toolgym.synth.domains.ontology import Action, Attribute, Param
from toolgym.synth.domains.schema import action_params
from toolgym.synth.domains.world import DomainState

PARTICLES = frozenset({"off", "out", "up", "down", "in", "back", "over", "away", "on"})


def verb_phrase(verb: str, obj: str, entity: str = "") -> str:
    """A verb (a snake_case name) applied to an object, as English puts it.

    ``cancel`` → "cancel the booking …"; ``call_off`` → "call off the booking …" but "call it
    off"; ``mark_sold`` → "mark the listing … as sold"; ``record_payment`` → "record payment
    for the client …"; ``cancel_showtime`` (the verb names its entity) → "cancel it".
    """
    words = verb.split("_")
    if entity and len(words) > 1 and "_".join(words[1:]) == entity:
        words = words[:1]
    if len(words) == 1:
        return f"{words[0]} {obj}"
    head, rest = words[0], " ".join(words[1:])
    if words[-1] in PARTICLES:
        return f"{' '.join(words[:-1])} {obj} {words[-1]}" if obj == "it" else f"{' '.join(words)} {obj}"
    if head in ("mark", "flag", "set", "make"):
        return f"{head} {obj} as {rest}"
    return f"{head} {rest} for {obj}"


def action_entity(world: Any, act_id: str) -> str:
    """The entity an action of a world acts on or creates."""
    return next(a for a in world.arch.actions if a.id == act_id).entity


def action(state: DomainState, act_id: str) -> Action:
    """The archetype's action ``act_id``."""
    return next(a for a in state.world.arch.actions if a.id == act_id)


def _param_value(state: DomainState, p: Attribute | Param, rng: random.Random) -> Any:
    if p.kind == "ref":
        return rng.choice(list(state.world.rows[p.to]))  # type: ignore[index]
    if p.kind in ("enum", "text") and not p.values:  # a parameter without its values: any word
        return nm.word(rng).lower()
    if isinstance(p, Attribute):
        attr = p
    else:  # a parameter, generated as the attribute it would be (bounds of other kinds dropped)
        bounded = p.kind in kinds.NUMERIC or p.kind in ("date", "datetime")
        attr = Attribute.model_validate(
            {
                "name": p.name,
                "kind": p.kind,
                "values": p.values if p.kind in ("enum", "text") else None,
                "min": p.min if bounded else None,
                "max": p.max if bounded else None,
            }
        )
    if attr.kind in ("datetime", "date") and attr.min is None:  # new times are in the future, near now
        attr = attr.model_copy(update={"min": "today+1d", "max": "today+30d"})
    return kinds.generator(attr, state.world.now_dt, rng)(rng, {})


def raw_call(state: DomainState, req: dict[str, Any]) -> tuple[Action, str | None, dict[str, Any]]:
    """(action, target key, params with refs resolved to keys) of a request."""
    act = action(state, req["action"])
    target = None
    if req.get("target") is not None and "key" in req["target"]:
        target = req["target"]["key"]
    elif req.get("target") is not None:
        hits = query.matching(state, req["target"])
        target = hits[0]["id"] if len(hits) == 1 else "?"
    return act, target, {k: query.resolve(state, v) for k, v in req["params"].items()}


def blocking(state: DomainState, req: dict[str, Any]) -> list[str]:
    """Ids of the world's policies (any mode) that forbid a request whose preconditions hold."""
    act, target, params = raw_call(state, req)
    row = dict(state.get(act.entity, target) or {}) if target else actions.new_row(state, act, params)
    call = rules.Call(state.world.arch, act, row, params, state.world.now_dt)
    modes = state.world.policy_modes
    return [
        p.id
        for p in state.world.arch.policies
        if p.action == act.id and p.id in modes and rules.forbids(p, call, state)
    ]


def feasible(state: DomainState, req: dict[str, Any]) -> bool:
    """Whether a request's target is unique and its preconditions hold (policies aside)."""
    act, target, params = raw_call(state, req)
    if target == "?":
        return False
    row = dict(state.get(act.entity, target) or {}) if target else actions.new_row(state, act, params)
    if target and not row:
        return False
    call = rules.Call(state.world.arch, act, row, params, state.world.now_dt)
    return rules.failed_requirement(call, state) is None


def propose(
    state: DomainState, act_id: str, rng: random.Random, row: dict[str, Any] | None = None, tries: int = 25
) -> dict[str, Any] | None:
    """A request of ``act_id`` whose preconditions hold (on ``row`` or a random target), or None."""
    act = action(state, act_id)
    params_spec = action_params(act, state.world.arch.entity(act.entity))
    rows = list(state.rows(act.entity)) if act.target and row is None else []
    for _ in range(tries):
        target_row = row if row is not None else (rng.choice(rows) if rows else None)
        sel = None
        if act.target:
            if target_row is None:
                return None
            sel = query.unique_selector(state, act.entity, target_row, rng)
            if sel is None:
                continue
        params = {}
        for canon, p in params_spec.items():
            v = _param_value(state, p, rng)
            params[canon] = query.ref_value(state, p.to, v) if p.kind == "ref" else v  # type: ignore[arg-type]
        req = {"action": act_id, "target": sel, "params": params}
        if feasible(state, req):
            return req
    return None


def draw_params(
    state: DomainState, act_id: str, rng: random.Random, rows: list[dict[str, Any]], tries: int = 8
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Parameters of ``act_id`` and a row of ``rows`` on which its preconditions hold, or None.

    For requests that apply one set of parameters to many rows (bulk): the target is the row's
    key, so no naming selector is built for it (:func:`propose` builds one per try).
    """
    act = action(state, act_id)
    params_spec = action_params(act, state.world.arch.entity(act.entity))
    for _ in range(tries):
        row = rng.choice(rows)
        params = {}
        for canon, p in params_spec.items():
            v = _param_value(state, p, rng)
            params[canon] = query.ref_value(state, p.to, v) if p.kind == "ref" else v  # type: ignore[arg-type]
        if feasible(state, {"action": act_id, "target": {"entity": act.entity, "key": row["id"]}, "params": params}):
            return params, row
    return None


def simulate(state: DomainState, req: dict[str, Any]) -> str | None:
    """Do a request the way the rules say: nothing when a precondition or any policy forbids it.

    Returns:
        The id of the row acted on or created, or None when it was not done.
    """
    if not feasible(state, req) or blocking(state, req):
        return simulate(state, req["instead"]) if req.get("instead") else None
    act, target, params = raw_call(state, req)
    try:
        row = actions.perform(state, act, target, params)
    except ToolError:  # an amount below a minimum: the tool refuses it too
        return None
    return str(row["id"])


def describe(state: DomainState, req: dict[str, Any]) -> str:
    """A request in words, in the world's names (``"move the booking whose … to new_start 2026-…"``)."""
    world = state.world
    act = action(state, req["action"])
    verb = next(a["verb"] for a in world.schema["actions"] if a["id"] == act.id)
    ent = world.entities[act.entity]
    names = actions.arg_names(act, world.arch, world.schema)
    bits = []
    for canon, v in req["params"].items():
        shown = v["label"] if isinstance(v, dict) else (f"{v:.2f}" if isinstance(v, float) else v)
        bits.append(f"{names[canon].replace('_', ' ')} {shown}")
    extra = (" with " + ", ".join(bits[:-1]) + (" and " if len(bits) > 1 else "") + bits[-1]) if bits else ""
    if act.target:
        obj = f"the {ent['name'].replace('_', ' ')} {query.phrase(world, req['target'])}"
        text = verb_phrase(verb, obj, ent["name"]) + extra
    else:
        text = verb_phrase(verb, f"a new {ent['name'].replace('_', ' ')}", ent["name"]) + extra
    if req.get("instead"):
        text += f" (if the rules do not allow that, {describe(state, req['instead'])} instead)"
    return text
