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
from collections.abc import Collection
from typing import Any

from toolgym.envs.tools import ToolError
from toolgym.synth import names as nm
from toolgym.synth.domains import actions, kinds, query, rules
from toolgym.synth.domains.ontology import Action, Attribute, Param
from toolgym.synth.domains.schema import action_params
from toolgym.synth.domains.world import DomainState

PARTICLES = frozenset({"off", "out", "up", "down", "in", "back", "over", "away", "on"})
#: Words that, second in a verb, start a phrase said after the object: "send it to workshop".
_AFTER_OBJECT = frozenset({"to", "from", "for", "into", "with", "in", "as", "at"})
_PLACING = frozenset({"put", "take", "place", "send", "bring", "move", "return"})  # "take it out of service"
_PARTICIPLES = frozenset({"lost", "sold", "stolen", "paid", "taught", "done", "seen", "no_show"})


def verb_phrase(verb: str, obj: str, entity: str | Collection[str] = "") -> str:
    """A verb (a snake_case name) applied to an object, as English puts it.

    ``cancel`` → "cancel the booking …"; ``call_off`` → "call off the booking …" but "call it
    off"; ``mark_sold``, ``report_lost`` → "mark the listing … as sold", "report it as lost";
    ``send_to_workshop``, ``take_out_of_service`` → "send the car … to workshop", "take it out of
    service"; ``withdraw_from`` → "withdraw from the
    enrolment …"; ``record_payment`` → "record payment for the client …"; a verb naming its entity
    by any of ``entity``'s names (``cancel_sailing`` on a sailing called voyage) → "cancel it".
    An object starting with "a new" (a created row) follows a longer verb in parentheses:
    "book room (a new booking)".
    """
    names = {entity} if isinstance(entity, str) else set(entity)
    words = verb.split("_")
    for n in sorted(names, key=len, reverse=True):  # the longest name the verb ends with
        tail = n.split("_")
        if n and len(words) > len(tail) and words[-len(tail) :] == tail:
            words = words[: -len(tail)]
            break
    head, rest = words[0], " ".join(words[1:])
    if len(words) == 1:
        return f"{head} {obj}"
    if len(words) == 2 and words[1] in PARTICLES:  # a phrasal verb: "call off", "check in"
        return f"{head} {obj} {words[1]}" if obj == "it" else f"{head} {words[1]} {obj}"
    if obj.startswith("a new "):  # "book room (a new booking)"
        return f"{head} {rest} ({obj})"
    if words[-1] in _AFTER_OBJECT:  # "withdraw from the enrolment"
        return f"{head} {rest} {obj}"
    if words[1] in _AFTER_OBJECT or (head in _PLACING and words[1] in PARTICLES):  # "send the car to workshop"
        return f"{head} {obj} {rest}"
    if head in ("mark", "flag") or "_".join(words[1:]) in _PARTICIPLES or (len(words) == 2 and rest.endswith("ed")):
        return f"{head} {obj} as {rest}"
    return f"{head} {rest} for {obj}"


def entity_names(world: Any, entity: str) -> set[str]:
    """Every name an entity of a world goes by: canonical, aliases, the chosen one."""
    spec = world.arch.entity(entity)
    return {entity, *spec.aliases, world.entities[entity]["name"]}


def act_phrase(world: Any, act_id: str, obj: str) -> str:
    """An action of a world applied to an object in words (its chosen verb: :func:`verb_phrase`)."""
    verb = next(a["verb"] for a in world.schema["actions"] if a["id"] == act_id)
    return verb_phrase(verb, obj, entity_names(world, action_entity(world, act_id)))


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


def _draw_params(state: DomainState, params_spec: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """One value per parameter (a ref by its label where its entity has one, as selectors say it)."""
    params = {}
    for canon, p in params_spec.items():
        v = _param_value(state, p, rng)
        params[canon] = query.ref_value(state, p.to, v) if p.kind == "ref" else v  # type: ignore[arg-type]
    return params


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
    rows = state.rows(act.entity) if act.target and row is None else []
    for _ in range(tries):
        target_row = row if row is not None else (rng.choice(rows) if rows else None)
        sel = None
        if act.target:
            if target_row is None:
                return None
            sel = query.unique_selector(state, act.entity, target_row, rng)
            if sel is None:
                continue
        params = _draw_params(state, params_spec, rng)
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
        params = _draw_params(state, params_spec, rng)
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


def params_text(state: DomainState, req: dict[str, Any]) -> str:
    """A request's parameters in words: ``"new start 2026-05-01 14:30 and reason travel"`` ("" if none)."""
    world = state.world
    act = action(state, req["action"])
    names = actions.arg_names(act, world.arch, world.schema)
    spec = action_params(act, world.arch.entity(act.entity))
    bits = []
    for canon, v in req["params"].items():
        p = spec.get(canon)
        shown = query.value_text(v, p.kind if p is not None else "text", getattr(p, "unit", None), names[canon])
        joint = " set to " if isinstance(v, bool) else " "  # "cash set to false", not "cash false"
        bits.append(f"{names[canon].replace('_', ' ')}{joint}{shown}")
    return ", ".join(bits[:-1]) + (" and " if len(bits) > 1 else "") + bits[-1] if bits else ""


def describe(state: DomainState, req: dict[str, Any], obj: str | None = None) -> str:
    """A request in words, in the world's names (``"reschedule the booking whose … with new start …"``).

    ``obj``: how to name the target instead of by its selector (``"it"``, where a prompt named it).
    """
    world = state.world
    act = action(state, req["action"])
    ent = world.entities[act.entity]["name"].replace("_", " ")
    if obj is None:
        obj = f"the {ent} {query.phrase(world, req['target'])}" if act.target else f"a new {ent}"
    text = act_phrase(world, act.id, obj)
    extra = params_text(state, req)
    text += f" with {extra}" if extra else ""
    if req.get("instead"):
        text += f" (if the rules do not allow that, {describe(state, req['instead'])} instead)"
    return text
