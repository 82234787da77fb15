"""The domains reference: a program that solves every task kind **only through tool calls**.

It is given the task's public parameters (selectors, requests, the rules the prompt lists, the
present time) and the tool config (the world's schema: which tools exist and what they are
called), never the world. It resolves labels with ``find`` calls, reads groups page by page,
and, before every write, checks the action's preconditions and the listed rules itself on a
:class:`Mirror` of the rows it has read (the same evaluator the tools use, on what the tools
returned): rows a condition reads that it has not seen are fetched with ``get`` calls, counts
with ``count`` (or paged ``find`` calls when a count's filter is beyond the tools' filters).
Duty rules are therefore followed, and an enforced rule never makes a call fail.

Writes are batched while the mirror can predict their effects (it applies them itself); a
condition that needs a row or count it has not seen sends the pending writes first, so every
read sees the state those writes left.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from toolgym.envs.limits import reference_batch
from toolgym.envs.rollout import Final, Program, Step
from toolgym.errors import ReferenceSolutionError
from toolgym.synth.domains import kinds, rules
from toolgym.synth.domains.actions import arg_names
from toolgym.synth.domains.ontology import Action, Count
from toolgym.synth.domains.world import archetype

BATCH = reference_batch()


class Names:
    """The world's names, from a tool config's schema (canonical ↔ chosen)."""

    def __init__(self, tool_config: dict[str, Any]):
        self.schema = tool_config["schema"]
        self.arch = archetype(tool_config["archetype"])
        self.entities: dict[str, dict[str, Any]] = {e["id"]: e for e in self.schema["entities"]}
        self.canon = {
            e: {v: k for k, v in ent["attributes"].items()} | {"id": "id"} for e, ent in self.entities.items()
        }
        self.action_tools = {a["id"]: a["tool"] for a in self.schema["actions"]}

    def row(self, entity: str, rendered: dict[str, Any]) -> dict[str, Any]:
        """A tool's row back in canonical names."""
        names = self.canon[entity]
        return {names[k]: v for k, v in rendered.items() if k in names}

    def filter_args(self, entity: str, conds: list[tuple[str, str, Any]]) -> dict[str, Any]:
        """The ``find``/``count`` arguments expressing what they can of ``conds`` (the rest is checked locally)."""
        ent, chosen = self.arch.entity(entity), self.entities[entity]["attributes"]
        args: dict[str, Any] = {}
        for a, op, v in conds:
            attr = ent.attribute(a)
            if attr is None or v is None or isinstance(v, list) or a not in chosen:
                continue
            c = chosen[a]
            if attr.kind in kinds.NUMERIC or attr.kind in kinds.TEMPORAL:
                lo, hi = (f"min_{c}", f"max_{c}") if attr.kind in kinds.NUMERIC else (f"{c}_from", f"{c}_to")
                if op in ("ge", "eq") and lo not in args:
                    args[lo] = v
                if op in ("le", "eq") and hi not in args:
                    args[hi] = v
            elif op == "eq" and c not in args:
                args[c] = v
        return args

    def exact(self, entity: str, conds: list[tuple[str, str, Any]]) -> bool:
        """Whether :meth:`filter_args` expresses every condition exactly."""
        ent = self.arch.entity(entity)
        seen: set[str] = set()
        for a, op, v in conds:
            attr = ent.attribute(a)
            if (
                attr is None
                or v is None
                or isinstance(v, list)
                or a in seen
                or a not in self.entities[entity]["attributes"]
            ):
                return False
            seen.add(a)
            ranged = attr.kind in kinds.NUMERIC or attr.kind in kinds.TEMPORAL
            if op not in (("eq", "ge", "le") if ranged else ("eq",)):
                return False
        return True


def batched(calls: list[tuple[str, dict[str, Any]]], thought: str) -> Program:
    """Run calls in batches of :data:`BATCH`; returns their results in order."""
    out: list[Any] = []
    for i in range(0, len(calls), BATCH):
        results = yield Step(calls[i : i + BATCH], thought if i == 0 else f"Continuing: {thought}")
        out.extend(r["content"] for r in results)
    return out


def find_all(names: Names, entity: str, args: dict[str, Any], thought: str) -> Program:
    """Every row a ``find`` call matches (all pages), canonical."""
    tool = f"find_{names.entities[entity]['plural']}"
    (first,) = yield from batched([(tool, args)], thought)
    key = names.entities[entity]["plural"]
    rows = list(first[key])
    rest = [(tool, {**args, "page": p}) for p in range(2, first["pages"] + 1)]
    if rest:
        for r in (yield from batched(rest, f"There are {first['pages']} pages; reading the rest.")):
            rows += r[key]
    return [names.row(entity, r) for r in rows]


def resolve(names: Names, v: Any) -> Program:
    """A selector value with ``label_of`` looked up (``find`` by label) to the row's key."""
    if not isinstance(v, dict):
        return v
    ent = names.entities[v["label_of"]]
    label = ent["attributes"][ent["label"]]
    rows = yield from find_all(names, v["label_of"], {label: v["label"]}, f"Finding the {ent['name']} {v['label']}.")
    if len(rows) != 1:
        raise ReferenceSolutionError(f"{len(rows)} {ent['plural']} are labelled {v['label']!r}")
    return rows[0]["id"]


def select(names: Names, sel: dict[str, Any]) -> Program:
    """The rows a selector names, through tools (filters, pages, then every condition locally)."""
    if "key" in sel:
        ent = names.entities[sel["entity"]]
        (got,) = yield from batched(
            [(f"get_{ent['name']}", {"id": sel["key"]})], f"Reading {ent['name']} {sel['key']}."
        )
        return [names.row(sel["entity"], got)]
    conds = []
    for a, op, v in sel["where"]:
        conds.append((a, op, (yield from resolve(names, v))))
    ent = names.entities[sel["entity"]]
    rows = yield from find_all(
        names, sel["entity"], names.filter_args(sel["entity"], conds), f"Looking up the matching {ent['plural']}."
    )
    return [r for r in rows if all(rules.compare(r.get(a), op, v) for a, op, v in conds)]


class Mirror:
    """The rows and counts the reference has read (a :class:`rules.Reader` that records misses)."""

    def __init__(self, names: Names):
        self.names = names
        self.known: dict[tuple[str, str], dict[str, Any]] = {}
        self.counts: dict[str, int] = {}
        self.misses: set[tuple[str, str]] = set()
        self.count_misses: dict[str, tuple[str, list[tuple[str, str, Any]]]] = {}

    def get(self, entity: str, key: str) -> dict[str, Any] | None:  # noqa: D102 - rules.Reader
        row = self.known.get((entity, key))
        if row is None:
            self.misses.add((entity, key))
        return row

    def rows(self, entity: str) -> list[dict[str, Any]]:  # noqa: D102 - counts go through count_rows
        return [r for (e, _), r in self.known.items() if e == entity]

    def count_rows(self, c: Count, call: rules.Call) -> int:
        """A count condition's count, if read already (else recorded as a miss: 0)."""
        subs = [(str(s[0]), s[1], rules.value(s[2], call, self) if len(s) == 3 else None) for s in c.where]
        key = json.dumps([c.count, subs], sort_keys=True, default=str)
        if key not in self.counts:
            self.count_misses[key] = (c.count, subs)
            return 0
        return self.counts[key]

    def recount(self, entity: str, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        """Keep the counts read so far true after a row of ``entity`` changes from ``old`` to ``new``.

        A count over ``entity`` moves by whether each version matches its filter; one whose old
        version the mirror never saw cannot be adjusted and is forgotten (read again if needed).
        """
        for key, n in list(self.counts.items()):
            counted, subs = json.loads(key)
            if counted != entity:
                continue
            if old is None:
                del self.counts[key]
                continue

            def hit(row: dict[str, Any], subs: Any = subs) -> bool:
                return all(rules.compare(row.get(a), op, v) for a, op, v in subs)

            self.counts[key] = n + hit(new) - hit(old)

    def fetch(self) -> Program:
        """Read every missed row and count."""
        names = self.names
        gets = sorted(self.misses)
        results = yield from batched(
            [(f"get_{names.entities[e]['name']}", {"id": k}) for e, k in gets],
            "Reading the records the rules depend on.",
        )
        for (e, k), r in zip(gets, results, strict=True):
            self.known[(e, k)] = names.row(e, r)
        misses = sorted(self.count_misses.items())
        exact = [(key, entity, subs) for key, (entity, subs) in misses if names.exact(entity, subs)]
        results = yield from batched(  # the exact counts at once
            [(f"count_{names.entities[e]['plural']}", names.filter_args(e, subs)) for _, e, subs in exact],
            "Counting for the rules.",
        )
        for (key, _, _), res in zip(exact, results, strict=True):
            self.counts[key] = res["count"]
        for key, (entity, subs) in misses:
            if not names.exact(entity, subs):  # the count tool cannot filter so: rows, counted here
                rows = yield from find_all(names, entity, names.filter_args(entity, subs), "Counting for a rule.")
                self.counts[key] = sum(1 for r in rows if all(rules.compare(r.get(a), op, v) for a, op, v in subs))
        self.misses.clear()
        self.count_misses.clear()


class Solver:
    """Requests checked on the mirror, then written (batched while the mirror predicts their effects)."""

    def __init__(self, params: dict[str, Any], tool_config: dict[str, Any]):
        self.names = Names(tool_config)
        self.mirror = Mirror(self.names)
        self.now = dt.datetime.fromisoformat(params["now"])
        self.policies = [p for p in self.names.arch.policies if p.id in params.get("policies", [])]
        self.pending: list[tuple[tuple[str, dict[str, Any]], str]] = []

    def flush(self) -> Program:
        """Send the pending writes; the rows they return replace the mirror's predictions."""
        if not self.pending:
            return []
        calls = [c for c, _ in self.pending]
        results = yield from batched(calls, "Making the changes the rules allow.")
        ids = []
        for (_, entity), r in zip(self.pending, results, strict=True):
            row = self.names.row(entity, r["row"])
            self.mirror.known[(entity, row["id"])] = row
            ids.append(row["id"])
        self.pending.clear()
        return ids

    def _call(self, act: Action, target: str | None, params: dict[str, Any]) -> rules.Call:
        if target is not None:
            row = dict(self.mirror.known[(act.entity, target)])
        else:
            row = {
                "id": "?",
                **{a: params.get(a, act.init.get(a)) for a in self.names.entities[act.entity]["attributes"]},
            }
        return rules.Call(self.names.arch, act, row, params, self.now)

    def _verdict(self, act: Action, target: str | None, params: dict[str, Any]) -> tuple[bool, Any]:
        call = self._call(act, target, params)
        if rules.failed_requirement(call, self.mirror) is not None:
            return False, None
        if any(rules.forbids(p, call, self.mirror) for p in self.policies if p.action == act.id):
            return False, None
        try:
            return True, rules.effects(call, self.mirror, self.names)
        except rules.ToolError:  # an amount below a minimum: the tool would refuse it
            return False, None

    def allowed(self, act: Action, target: str | None, params: dict[str, Any]) -> Program:
        """(allowed, predicted changes) of one request, reading what the rules need first."""
        for _ in range(8):
            ok, changes = self._verdict(act, target, params)
            if not self.mirror.misses and not self.mirror.count_misses:
                return ok, changes
            yield from self.flush()  # reads must see every write made so far
            yield from self.mirror.fetch()
        raise ReferenceSolutionError(f"the rules of {act.id} kept needing more reads")

    def _touch(self, act: Action, target: str | None, params: dict[str, Any]) -> None:
        """Evaluate every condition and effect of a request, none skipped: records all it reads."""
        call = self._call(act, target, params)
        pols = [p for p in self.policies if p.action == act.id]
        for cond in [*act.requires, *(c for p in pols for c in [*p.forbid_if, *p.when, *p.require])]:
            rules.holds(cond, call, self.mirror)
        try:
            rules.effects(call, self.mirror, self.names)
        except rules.ToolError:
            pass

    def prefetch(self, items: list[tuple[Action, str | None, dict[str, Any]]]) -> Program:
        """Read, in a few batches, what the checks of many requests need (before any of them writes)."""
        for _ in range(3):  # rows read through rows read (a ref of a ref) need a second round
            for act, target, params in items:
                self._touch(act, target, params)
            if not self.mirror.misses and not self.mirror.count_misses:
                return
            yield from self.mirror.fetch()

    def write(self, act: Action, target: str | None, params: dict[str, Any], changes: Any) -> Program:
        """Queue (or, for a new row, send) one allowed write; returns the id acted on, when known."""
        names = arg_names(act, self.names.arch, self.names.schema)
        args = {names[k]: v for k, v in params.items()}
        if target is not None:
            args[names[""]] = target
        self.pending.append(((self.names.action_tools[act.id], args), act.entity))
        if target is None:
            self.mirror.counts.clear()  # a new row: any count of its entity may have changed
            ids = yield from self.flush()  # earlier queued writes go with it
            return ids[-1]
        for (entity, key), row in changes.items():
            self.mirror.recount(entity, self.mirror.known.get((entity, key)), row)
            self.mirror.known[(entity, key)] = row
        if len(self.pending) >= BATCH:
            yield from self.flush()
        return target

    def request(self, req: dict[str, Any], target: str | None = None) -> Program:
        """Do one request if the rules allow it; returns the id acted on or created, or None."""
        act = next(a for a in self.names.arch.actions if a.id == req["action"])
        if target is None and req.get("target") is not None:
            rows = yield from select(self.names, req["target"])
            if len(rows) != 1:
                raise ReferenceSolutionError(f"{len(rows)} rows match the target of {act.id}")
            target = rows[0]["id"]
            self.mirror.known[(act.entity, target)] = rows[0]
        params = {}
        for k, v in req["params"].items():
            params[k] = yield from resolve(self.names, v)
        ok, changes = yield from self.allowed(act, target, params)
        if not ok:
            return (yield from self.request(req["instead"])) if req.get("instead") else None
        return (yield from self.write(act, target, params, changes))


def program(params: dict[str, Any], tool_config: dict[str, Any]) -> Program:
    """Solve a domains task through the tools; returns the answer it submits."""
    s = Solver(params, tool_config)
    names, kind = s.names, params["kind"]
    if kind in ("act", "policy"):
        ids = []
        for req in params["requests"]:
            done = yield from s.request(req)
            if done is not None:
                ids.append(done)
        yield from s.flush()
        if kind == "act":
            return Final(ids[0] if ids else "", "The change is made; submitting the id.")
        return Final(sorted(ids), f"Done: {len(ids)} of {len(params['requests'])} requests were allowed.")
    rows = yield from select(names, params["target"])
    ent = params["target"]["entity"]
    if kind == "lookup":
        row = rows[0]
        if len(params["path"]) == 2:
            other = str(names.arch.entity(ent).attribute(params["path"][0]).to)  # type: ignore[union-attr]
            (got,) = yield from batched(
                [(f"get_{names.entities[other]['name']}", {"id": row[params["path"][0]]})], "Following the reference."
            )
            row = names.row(other, got)
        return Final(row[params["path"][-1]], "Found it.")
    if kind == "select":
        return Final(
            sorted(r["id"] for r in rows), f"Submitting the ids that meet every condition ({len(rows)} in all)."
        )
    if kind == "ranking":
        f = params["field"]
        rows = sorted((r for r in rows if r.get(f) is not None), key=lambda r: r["id"])  # ties: lower id first
        rows.sort(key=lambda r: r[f], reverse=params["best"] == "max")  # stable: id order kept within a tie
        return Final([r["id"] for r in rows[: params["k"]]], f"The top {params['k']} of {len(rows)}, best first.")
    if kind == "breakdown":
        f = params["field"]
        counts = {v: sum(1 for r in rows if r.get(f) == v) for v in params["values"]}
        return Final(counts, f"Counted the {len(rows)} matching rows by value.")
    if kind == "sum":
        return Final(round(sum(r.get(params["field"]) or 0 for r in rows), 2), "Adding them up.")
    if kind == "conditional":
        row = rows[0]
        s.mirror.known[(ent, row["id"])] = row
        if rules.compare(row.get(params["field"]), params["op"], params["value"]):
            done = yield from s.request(params["then"], target=row["id"])
            yield from s.flush()
            if done is None:
                raise ReferenceSolutionError("the conditional's write was not allowed")
            return Final(done, "The condition held, so I made the change.")
        if params.get("else") is not None:
            done = yield from s.request(params["else"], target=row["id"])
            yield from s.flush()
            if done is None:
                raise ReferenceSolutionError("the conditional's other write was not allowed")
            return Final(done, "The condition does not hold, so I made the other change.")
        return Final(row[params["other"]], "The condition does not hold; nothing to change.")
    if kind == "bulk":
        return (yield from _bulk(s, params, rows))
    raise ReferenceSolutionError(f"unknown domains task kind {kind!r}")


def _bulk(s: Solver, params: dict[str, Any], rows: list[dict[str, Any]]) -> Program:
    ent = params["target"]["entity"]
    act = next(a for a in s.names.arch.actions if a.id == params["action"])
    req = {"action": act.id, "target": None, "params": params["params"]}
    resolved = {}
    for k, v in req["params"].items():
        resolved[k] = yield from resolve(s.names, v)
    for r in rows:
        s.mirror.known[(ent, r["id"])] = r
    yield from s.prefetch([(act, r["id"], resolved) for r in rows])
    done = []
    for r in rows:
        ok, changes = yield from s.allowed(act, r["id"], resolved)
        if ok:
            done.append((yield from s.write(act, r["id"], resolved, changes)))
    yield from s.flush()
    return Final(sorted(done), f"Done: {len(done)} of {len(rows)} could be changed under the rules.")
