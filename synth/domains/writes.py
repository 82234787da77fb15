"""The writing task kinds of difficulty 4 and 5: conditional, policy-bound and bulk requests.

See ``tasks.py`` for the table of kinds. Each kind draws requests whose outcome the generator
knows by running them on its own state (:func:`toolgym.synth.domains.requests.simulate`):
a request a rule forbids is not done, whatever the rule's mode, so the expected state is the
one a careful agent leaves; an enforced rule only makes ignoring it visible to the agent.
"""

from __future__ import annotations

from typing import Any

from toolgym.spec import TaskDraft
from toolgym.synth.domains import kinds, query, requests
from toolgym.synth.domains.schema import action_params
from toolgym.synth.domains.tasks import ANSWER_FIELDS, Builder, _actions, _name, render
from toolgym.synth.domains.world import DomainState


def conditional(b: Builder) -> TaskDraft | None:
    """Read a row; if a numeric field passes a threshold, write on it, else answer another field."""
    w, rng = b.world, b.rng
    for a in _actions(b, lambda a: a.target is not None):
        fields = [x.name for x in w.attrs(a.entity) if x.kind in kinds.NUMERIC]
        label = w.entities[a.entity]["label"]
        others = [x.name for x in w.attrs(a.entity) if x.kind in ANSWER_FIELDS or x.name == label]
        rows = list(w.rows[a.entity].values())
        if not fields or not others or len(rows) < 3:
            continue
        for _ in range(6):
            row = rng.choice(rows)
            field, other = rng.choice(fields), rng.choice(others)
            pivot = rng.choice(rows).get(field)
            value = row.get(field)
            if value is None or pivot is None or pivot == value or not _unique(w, a.entity, other, row.get(other)):
                continue
            req = requests.propose(b.state, a.id, rng, row=row)
            if req is None:
                continue
            op = rng.choice(["ge", "le"])
            test = value >= pivot if op == "ge" else value <= pivot
            if test and (requests.blocking(b.state, req) or requests.simulate(b.state, req) is None):
                continue
            alt = None if test else _otherwise(b, a.id, row, req["target"])
            b.write(a.id, req["target"])
            if alt is not None:
                b.write(alt["action"], req["target"])
            values = {
                "what": f"{_name(w, a.entity)} {query.phrase(w, req['target'])}",
                "field": _name(w, a.entity, field),
                "be": _be(w, a.entity, field),
                "test": f"{'at least' if op == 'ge' else 'at most'} {_value(w, a.entity, field, pivot)}",
                "request": requests.describe(b.state, req, obj="it"),
                "other": _name(w, a.entity, other),
            }
            params = {"target": req["target"], "field": field, "op": op, "value": pivot, "then": req, "other": other}
            if alt is not None:
                values["otherwise"] = requests.describe(b.state, alt, obj="it")
                params["else"] = alt
            body = render("conditional_else" if "else" in params else "conditional", rng, **values)
            expected = row["id"] if test or alt is not None else row[other]
            gate = {"values_of": [a.entity, other]} if expected != row["id"] else {"ids_of": a.entity}
            return b.draft("conditional", body, params, "text", expected, gate)
    return None


def _otherwise(b: Builder, act_id: str, row: dict[str, Any], target: dict[str, Any]) -> dict[str, Any] | None:
    """Another write on ``row`` that its rules allow, done on the generator's state (the else branch), or None.

    An else branch that writes makes a guessed answer worthless (the state must change), where
    an answer read off the row is one of the table's N values (a random one passes with 1/N).
    """
    w = b.world
    entity = requests.action_entity(w, act_id)
    for other in _actions(b, lambda x: x.target is not None and x.entity == entity and x.id != act_id):
        alt = requests.propose(b.state, other.id, b.rng, row=row, tries=3)
        if alt is None or requests.blocking(b.state, alt):
            continue
        alt = {**alt, "target": target}  # the row as the task names it
        if requests.simulate(b.state, alt) is not None:
            return alt
    return None


def _unique(w: Any, entity: str, attr: str, v: Any) -> bool:
    return v is not None and len(w.index(entity, attr).get(v, [])) == 1


def _be(w: Any, entity: str, attr: str) -> str:
    return query.copula(_name(w, entity, attr), w.arch.entity(entity).attribute(attr).kind)


def _value(w: Any, entity: str, attr: str, v: Any) -> str:
    spec = w.arch.entity(entity).attribute(attr)
    return query.value_text(v, spec.kind, spec.unit, w.entities[entity]["attributes"][attr])


def policy(b: Builder) -> TaskDraft | None:
    """Three requests (else two), one of which a rule forbids: do the allowed ones, skip the other."""
    w, rng = b.world, b.rng
    pols = [p for p in w.arch.policies if p.id in w.policy_modes]
    rng.shuffle(pols)
    for pol in pols:
        bad = None
        for _ in range(40):
            req = requests.propose(b.state, pol.action, rng, tries=3)
            if req is not None and pol.id in requests.blocking(b.state, req):
                bad = req
                break
        if bad is None:
            continue
        goods = _allowed_requests(b, pol.action, [bad["target"]], 2)
        if not goods:
            continue
        alt = _alternative(b, bad, pol.instead) if pol.instead in w.action_tools else None
        if alt is not None:
            bad = {**bad, "instead": alt}
        reqs = [bad, *goods]
        rng.shuffle(reqs)
        done = []
        for r in reqs:
            if r is bad and pol.id not in requests.blocking(b.state, r):
                return None  # another request, done first, lifted the rule
            done.append(requests.simulate(b.state, r))
        if any(done[i] is None for i, r in enumerate(reqs) if r is not bad) or (
            alt is not None and done[reqs.index(bad)] is None
        ):
            return None  # an earlier request made a later allowed one impossible
        for r in [*reqs, *([alt] if alt else [])]:
            b.write(r["action"], r["target"])
        ents = {_entity(b, r) for r in [*reqs, *([alt] if alt else [])]}
        plural = w.entities[ents.pop()]["plural"] if len(ents) == 1 else "records"
        body = render(
            "policy", rng, reqs=[requests.describe(b.state, r) for r in reqs], plural=plural.replace("_", " ")
        )
        ids = sorted(d for d in done if d)
        gate = {"ids_of": _entity(b, goods[0]), "n": len(ids)}
        return b.draft("policy", body, {"requests": reqs}, "texts", ids, gate)
    return None


def _allowed_requests(b: Builder, first: str, avoid: list[Any], n: int) -> list[dict[str, Any]]:
    """Up to ``n`` requests no rule forbids, on distinct targets not in ``avoid`` (``first``'s action tried first)."""
    out: list[dict[str, Any]] = []
    taken = list(avoid)
    for act_id in [first, *(a.id for a in _actions(b) if a.id != first)]:
        for _ in range(10):
            req = requests.propose(b.state, act_id, b.rng, tries=3)
            if (
                req is not None
                and not requests.blocking(b.state, req)
                and (req["target"] is None or req["target"] not in taken)
            ):
                out.append(req)
                taken.append(req["target"])
                if len(out) == n:
                    return out
    return out


def _alternative(b: Builder, bad: dict[str, Any], act_id: str) -> dict[str, Any] | None:
    """The request a rule's ``instead`` suggests for a forbidden one, on the row it concerns.

    The same row when the alternative acts on the forbidden request's entity (reschedule what
    cannot be cancelled); else the row of a ref parameter of that entity (take a payment from the
    patient who may not book); else any row. None when no such request is allowed.
    """
    state = b.state
    inst, orig = requests.action(state, act_id), requests.action(state, bad["action"])
    _, target, params = requests.raw_call(state, bad)
    row = None
    if inst.target and inst.target == orig.entity and target not in (None, "?"):
        row = state.get(inst.target, target)  # type: ignore[arg-type]
    elif inst.target:
        spec = action_params(orig, state.world.arch.entity(orig.entity))
        keys = [params[k] for k, p in spec.items() if p.kind == "ref" and p.to == inst.target and params.get(k)]
        row = state.get(inst.target, keys[0]) if keys else None
    for _ in range(5):
        alt = requests.propose(state, act_id, b.rng, row=row, tries=4)
        if alt is not None and not requests.blocking(state, alt):
            return alt
    return None


def _entity(b: Builder, req: dict[str, Any]) -> str:
    return requests.action(b.state, req["action"]).entity


def bulk(b: Builder) -> TaskDraft | None:
    """One write on every row of a paged group, in id order, skipping those the rules forbid."""
    w, rng = b.world, b.rng
    for a in _actions(b, lambda a: a.target is not None):
        every = b.state.rows(a.entity)
        for _ in range(8):
            drawn = requests.draw_params(b.state, a.id, rng, every)
            if drawn is None:
                break
            params, anchor = drawn  # the group holds a row the write is allowed on
            found = query.group(b.state, a.entity, 20, 60, rng, anchor=anchor)
            if found is None:
                continue
            sel, rows = found
            scratch = DomainState(w)
            done = []
            for r in rows:
                req = {"action": a.id, "target": {"key": r["id"]}, "params": params}
                d = requests.simulate(scratch, req)
                if d is not None:
                    done.append(d)
            labels = sum(isinstance(v, dict) for _, _, v in sel["where"])
            calls = labels + -(-len(rows) // w.page_size) + len(done)  # the reference's least: gets add to it
            if len(done) < 5 or len(rows) - len(done) < 2 or calls < 20:
                continue
            b.state = scratch
            b.write(a.id, sel)
            extra = requests.params_text(b.state, {"action": a.id, "target": None, "params": params})
            body = render(
                "bulk",
                rng,
                act_every=requests.act_phrase(w, a.id, f"every {_name(w, a.entity)} {query.phrase(w, sel)}"),
                act_each=requests.act_phrase(w, a.id, "each one"),
                plural=w.entities[a.entity]["plural"].replace("_", " "),
                cond=query.phrase(w, sel),
                extra=f" (with {extra})" if extra else "",
                done="changed",
            )
            spec = {"target": sel, "action": a.id, "params": params}
            return b.draft("bulk", body, spec, "texts", sorted(done), {"ids_of": a.entity, "n": len(done)})
    return None
