"""The domains heuristic: a shallow agent that takes one look and never reads the rules.

A baseline for the hardness table (``toolgym bench synth --family domains``), not a solver.
Like the reference it reads the task's public parameters (what the prompt says in words) and
acts only through the tools, but it is shallow by design, the same way for every task:

* **one look**: a selector becomes one ``find`` call with the filters the tool takes for its
  conditions (a value named by a label of another entity is the first row ``find`` returns
  for that label); it checks nothing locally;
* **one page**: it reads the first page of results and never pages on; it takes the first row
  where the task names one row;
* **no rules**: it never reads the rules, the preconditions, the ``instead`` fallback of a
  request or the condition of a conditional request; it makes every write it is asked for, and
  a write the tool refuses is simply not done (the error is an observation, not a crash).

So per kind: lookup answers the first row's field (following a ref if asked); select submits
the first page's ids; ranking the first page's extremes (no tie rule); breakdown and sum count
and add up the first page; act and policy make every request and submit the ids the write tools returned;
conditional makes its write on the first match whatever the field's value, answering the other
field only when the tool refuses; bulk writes on every row of the first page. Its share falls
with difficulty because harder kinds ask for more of what it skips (pages, rules), never
because it looks at the difficulty.

Why every filter and not only the first condition (the issue's example): a select task (a
kind of difficulty 2) always has two or more conditions, so a first-condition agent
solves none of them while it solves most one-write acts of difficulty 3 — measured on a
300-task run: 0.96, 0.00, 0.45, 0.39, 0.07 for difficulties 1–5, a share that does not fall.
"""

from __future__ import annotations

from typing import Any

from toolgym.envs.rollout import Final, Program, Step
from toolgym.synth.domains.actions import arg_names
from toolgym.synth.domains.reference import Names

#: What the heuristic submits when it found nothing to answer with, per answer kind.
EMPTY: dict[str, Any] = {"text": "", "texts": [], "ranking": [], "counts": {}, "number": 0.0, "integer": 0}


def call(tool: str, args: dict[str, Any], thought: str) -> Program:
    """One tool call; returns its content, or None when the tool answered with an error."""
    results = yield Step([(tool, args)], thought)
    result = results[0] if results else {"error": "no result"}
    return None if "error" in result else result.get("content")


def first_page(names: Names, sel: dict[str, Any]) -> Program:
    """The rows of the first ``find`` page for a selector's first condition (canonical rows).

    A selector by key is one ``get``. Returns ``[]`` when a tool refused.
    """
    entity = sel["entity"]
    ent = names.entities[entity]
    if "key" in sel:
        got = yield from call(f"get_{ent['name']}", {"id": sel["key"]}, f"Reading {ent['name']} {sel['key']}.")
        return [] if got is None else [names.row(entity, got)]
    conds = []
    for a, op, v in sel["where"]:
        conds.append((a, op, (yield from first_label(names, v))))
    found = yield from call(
        f"find_{ent['plural']}", names.filter_args(entity, conds), f"Looking for the {ent['plural']}."
    )
    return [] if found is None else [names.row(entity, r) for r in found[ent["plural"]]]


def first_label(names: Names, v: Any) -> Program:
    """A value named by label (``{"label_of", "label"}``) as the key of the first row found; else itself."""
    if not isinstance(v, dict):
        return v
    ent = names.entities[v["label_of"]]
    label = ent["attributes"][ent["label"]]
    found = yield from call(f"find_{ent['plural']}", {label: v["label"]}, f"Finding the {ent['name']} {v['label']}.")
    rows = [] if found is None else found[ent["plural"]]
    return rows[0]["id"] if rows else v["label"]


def write(names: Names, action: str, target: str | None, params: dict[str, Any]) -> Program:
    """One write, rules unread; returns the id the tool acted on or created, or None if it refused."""
    act = next(a for a in names.arch.actions if a.id == action)
    arg = arg_names(act, names.arch, names.schema)
    args = {}
    for k, v in params.items():
        args[arg[k]] = yield from first_label(names, v)
    if target is not None:
        args[arg[""]] = target
    done = yield from call(names.action_tools[action], args, "Making the change.")
    return None if done is None else done["row"]["id"]


def request(names: Names, req: dict[str, Any]) -> Program:
    """A request on its target's first match (or a new row); the id written, or None."""
    target = None
    if req.get("target") is not None:
        rows = yield from first_page(names, req["target"])
        if not rows:
            return None
        target = rows[0]["id"]
    return (yield from write(names, req["action"], target, req["params"]))


def program(params: dict[str, Any], tool_config: dict[str, Any]) -> Program:
    """The shallow agent of a domains task (see the module docstring); returns its answer."""
    names, kind = Names(tool_config), params["kind"]
    empty = EMPTY[tool_config["answer"]]
    if kind in ("act", "policy"):
        ids = []
        for req in params["requests"]:
            done = yield from request(names, req)
            if done is not None:
                ids.append(done)
        if kind == "act":
            return Final(ids[0] if ids else empty, "Done; submitting the id.")
        return Final(sorted(ids), "Done; submitting what changed.")
    rows = yield from first_page(names, params["target"])
    if not rows:
        return Final(empty, "Nothing found.")
    if kind == "lookup":
        return (yield from _lookup(names, params, rows[0], empty))
    if kind == "select":
        return Final(sorted(r["id"] for r in rows), "These match.")
    if kind == "ranking":
        f = params["field"]
        valued = sorted((r for r in rows if r.get(f) is not None), key=lambda r: r[f], reverse=params["best"] == "max")
        return Final([r["id"] for r in valued[: params["k"]]], "Those are the extremes.")
    if kind == "breakdown":
        f = params["field"]
        return Final({v: sum(1 for r in rows if r.get(f) == v) for v in params["values"]}, "Counted.")
    if kind == "sum":
        return Final(round(sum(r.get(params["field"]) or 0 for r in rows), 2), "Added up.")
    if kind == "conditional":
        done = yield from write(names, params["then"]["action"], rows[0]["id"], params["then"]["params"])
        return Final(done if done is not None else rows[0].get(params["other"], empty), "Handled.")
    if kind == "bulk":
        ids = []
        for r in rows:
            done = yield from write(names, params["action"], r["id"], params["params"])
            if done is not None:
                ids.append(done)
        return Final(sorted(ids), "Went through them.")
    return Final(empty, f"I do not know how to handle a {kind} task.")


def _lookup(names: Names, params: dict[str, Any], row: dict[str, Any], empty: Any) -> Program:
    """The asked field of ``row``, or of the row its ref points to."""
    path, entity = params["path"], params["target"]["entity"]
    if len(path) == 2:
        other = str(names.arch.entity(entity).attribute(path[0]).to)  # type: ignore[union-attr]
        if row.get(path[0]) is None:
            return Final(empty, "It refers to nothing.")
        got = yield from call(f"get_{names.entities[other]['name']}", {"id": row[path[0]]}, "Following the reference.")
        if got is None:
            return Final(empty, "The reference could not be read.")
        row = names.row(other, got)
    value = row.get(path[-1])
    return Final(empty if value is None else value, "Found it.")
