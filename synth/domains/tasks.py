"""Domain tasks by difficulty: what is asked, the expected answer and state, the toolset.

Kinds (``params["kind"]``; every one is public, structured data the reference interprets
through tools, and the prompt says in words from jinja2 templates with variants):

==========  ==  ===========================================================================
lookup      1   one field of a row named by its label or constraints (1–2 calls; via a ref)
select      2   the ids of the rows meeting two or three constraints (a set; maybe paged)
ranking     2   among the rows of a related row (a join through a ref, by its label where it has
                one), the three with the highest or lowest value of a numeric field, best
                first (an ordered list of ids; a tie goes to the lower id, as the prompt says)
aggregate   3   a breakdown: how many rows meeting constraints hold each value of an enum (an
                object value -> count, every value present, so none is 0 or omitted); or the
                total of a money field over them
act         3   one write on a target named by constraints (or one new row); answer: its id
conditional 4   read a row; if a field meets a threshold do a write, else another write on it
                (or, where the row has no other allowed write, answer a field)
policy      4   three requests (two where the world allows no third), one of which a rule
                forbids: do the allowed ones, skip (or replace) the forbidden one
bulk        5   one write on every row of a paged group, in id order, skipping those a rule or
                a precondition forbids (writes depend on what earlier ones changed)
==========  ==  ===========================================================================

A difficulty tries its kinds in random order (weighted by :data:`FIRST_WEIGHT`), then falls back
to easier ones, so a world whose archetype has no policies still hosts difficulty-4 tasks. The
verifier is always ``all(answer check, state check)``; the expected state is the generator's own
simulation of the requests (:mod:`toolgym.synth.domains.requests`), hashed here, so the reference
scoring 1 cross-checks two implementations; read-only tasks expect no change at all.

Toolset augmentation: difficulty 1 exposes only the tools the task needs; 2–4 add one to
three distractor tools; 5 exposes every tool of the world.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import Any

import jinja2

from toolgym.spec import TaskDraft
from toolgym.synth.domains import kinds, query, requests
from toolgym.synth.domains.ontology import Action, Count
from toolgym.synth.domains.schema import action_params
from toolgym.synth.domains.terms import glossary
from toolgym.synth.domains.world import DomainState, DomainWorld
from toolgym.synth.text import with_article
from toolgym.verifiers.state import state_hash

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
_ENV.filters["capitalize"] = lambda s: s[:1].upper() + s[1:]  # jinja's lowercases the rest (names!)
_ENV.filters["count_word"] = lambda n: ["no", "one", "two", "three", "four", "five"][n] if n <= 5 else str(n)
TEMPLATES: dict[str, list[str]] = {
    "lookup": [
        "What is the {{ field }} of the {{ what }}?",
        "Look up the {{ what }} and tell me the {{ field }}.",
        "I need the {{ field }} of the {{ what }}.",
    ],
    "select": [
        "Which {{ plural }} are there {{ cond }}? Submit all their ids.",
        "List the ids of every {{ thing }} {{ cond }}.",
        "Find all {{ plural }} {{ cond }} and submit their ids.",
    ],
    "ranking": [
        "Among the {{ plural }} {{ cond }}, which three have the {{ best }} {{ field }}? "
        "Submit their ids as a list, {{ best }} first (where two tie, the lower id first).",
        "Rank the {{ plural }} {{ cond }} by {{ field }} and submit the ids of the three with the "
        "{{ best }} {{ field }}, in order ({{ best }} first; a tie goes to the lower id).",
    ],
    "breakdown": [
        "Of the {{ plural }} {{ cond }}, how many have each {{ attr }} ({{ values }})? "
        "Submit an object mapping each {{ attr }} to its count.",
        "Break down the {{ plural }} {{ cond }} by {{ attr }}: count those of each {{ attr }} ({{ values }}) "
        "and submit the counts as an object keyed by {{ attr }}.",
    ],
    "sum": [
        "What is the sum of the {{ field }} over the {{ plural }} {{ cond }}?",
        "Add up the {{ field }} of every {{ thing }} {{ cond }}. What is the total?",
    ],
    "act": [
        "Please {{ request }}. Then submit the id of the {{ thing }} you {{ done }}.",
        "{{ request | capitalize }}, and submit the {{ thing }}'s id when done.",
    ],
    "conditional": [
        "Look at the {{ what }}. If its {{ field }} {{ be }} {{ test }}, {{ request }} and submit its id; "
        "otherwise change nothing and submit its {{ other }}.",
        "Check the {{ field }} of the {{ what }}: when that is {{ test }}, {{ request }} and submit its id. "
        "If not, leave it as it is and submit its {{ other }} instead.",
    ],
    "conditional_else": [
        "Look at the {{ what }}. If its {{ field }} {{ be }} {{ test }}, {{ request }}; otherwise {{ otherwise }}. "
        "Either way, submit its id when done.",
        "Check the {{ field }} of the {{ what }}: when that is {{ test }}, {{ request }}. If not, {{ otherwise }} "
        "instead. Then submit its id.",
    ],
    "policy": [
        "{{ reqs | length | count_word | capitalize }} requests came in. "
        "{% for r in reqs %}({{ loop.index }}) {{ r | capitalize }}. {% endfor %}"
        "Carry out each one the rules allow and skip any they forbid. Submit the ids of the {{ plural }} "
        "you changed or created (an empty list if none).",
        "Handle these, following the rules: {% for r in reqs %}({{ loop.index }}) {{ r }}; {% endfor %}"
        "then submit the list of ids of the {{ plural }} you actually changed or created.",
    ],
    "bulk": [
        "{{ act_every | capitalize }}{{ extra }}, working through them in id order. "
        "Skip any that the rules or the action's own conditions do not allow. "
        "Submit the ids of the {{ plural }} you {{ done }}.",
        "Go through all {{ plural }} {{ cond }}, in id order, and {{ act_each }}{{ extra }}, except where "
        "a rule or a condition of the action forbids it. Then submit the ids of those you {{ done }}.",
    ],
}
INTRO = [
    "You are the assistant of {{ org }}, {{ a_title }}. It is now {{ now }}.",
    "You work for {{ org }} ({{ title }}). The current time is {{ now }}.",
]
KINDS_BY_DIFFICULTY = {
    1: ["lookup"],
    2: ["select", "ranking"],
    3: ["aggregate", "act"],
    4: ["conditional", "policy"],
    5: ["bulk"],
}
#: How much more often a difficulty tries a kind first (default 1): a two-kind difficulty tries
#: a kind of weight 2 first two times in three. The ranking (a join: a ``find`` by label, then the
#: group; 3+ reference calls) goes first twice as often as select (mostly one ``find``), so that
#: difficulty 2's median reference calls exceed difficulty 1's; select stays a share of difficulty
#: 2 and the fallback of worlds that host no ranking.
FIRST_WEIGHT = {"ranking": 2.0}
FALLBACK = ["bulk", "policy", "conditional", "act", "aggregate", "ranking", "select", "lookup"]
ANSWER_FIELDS = frozenset(
    {"person_name", "company_name", "email", "phone", "address", "code", "phrase", "date", "datetime"}
)


def render(kind: str, rng: random.Random, **values: Any) -> str:
    """One variant of a kind's template, filled."""
    return _template(rng.choice(TEMPLATES[kind])).render(**values).strip()


@functools.cache
def _template(source: str) -> jinja2.Template:
    """A compiled template (compiling costs ~0.2 ms; every task renders two)."""
    return _ENV.from_string(source)


def _name(world: DomainWorld, entity: str, attr: str | None = None) -> str:
    """An entity's chosen name in words, or an attribute's as a noun (:func:`query.attr_noun`)."""
    return query.attr_noun(world, entity, attr) if attr else world.entities[entity]["name"].replace("_", " ")


def _answer_kind(kind: str) -> str:
    if kind in ("money", "rating"):
        return "number"
    if kind in ("int", "percent", "duration"):
        return "integer"
    return "text"


def answer_check(answer_kind: str, expected: Any) -> dict[str, Any]:
    """The answer verifier for an answer kind (``text``/``texts``/``ranking``/``counts``/``number``/``integer``).

    ``ranking`` (a list of ids, order significant) is an exact check of the list; ``counts`` (an
    object value -> integer count) is a JSON check: the same keys, each count exact.
    """
    if answer_kind == "ranking":
        return {"kind": "exact", "expected": list(expected)}
    if answer_kind == "counts":
        return {"kind": "json", "expected": dict(expected), "rel_tol": 0.0, "abs_tol": 0.0}
    if answer_kind == "texts":
        return {"kind": "set", "expected": sorted(expected)}
    if answer_kind == "number":
        return {"kind": "numeric", "expected": expected, "rel_tol": 0.0, "abs_tol": 0.005}
    if answer_kind == "integer":
        return {"kind": "numeric", "expected": expected, "rel_tol": 0.0, "abs_tol": 0.0, "integer": True}
    return {"kind": "exact", "expected": expected}


class Builder:
    """Assembles one draft: prompt, params, verifier, toolset (the kind functions fill it)."""

    def __init__(self, world: DomainWorld, difficulty: int, rng: random.Random):
        self.world, self.difficulty, self.rng = world, difficulty, rng
        self.state = DomainState(world)  # the generator's copy: simulated writes go here
        self.tools: list[str] = []
        self.actions: list[str] = []
        self.extra_seed = rng.randrange(2**31)  # which distractor tools join

    def need(self, *names: str) -> None:
        """Tools the reference calls (kept in order, once)."""
        self.tools += [n for n in names if n not in self.tools]

    def reads(self, *entities: str) -> None:
        """The get/find tools of entities."""
        for e in entities:
            ent = self.world.entities[e]
            self.need(f"find_{ent['plural']}", f"get_{ent['name']}")

    def selector_tools(self, sel: dict[str, Any]) -> None:
        """The tools resolving a selector (its entity's, and those of labels it names)."""
        if "key" in sel:
            self.need(f"get_{self.world.entities[sel['entity']]['name']}")
            return
        if self.difficulty == 1:  # the shortest toolset that does: find (by label or filters)
            self.need(f"find_{self.world.entities[sel['entity']]['plural']}")
        else:
            self.reads(sel["entity"])
        for _, _, v in sel["where"]:
            if isinstance(v, dict):
                self.need(f"find_{self.world.entities[v['label_of']]['plural']}")

    def write(self, act_id: str, *selectors: dict[str, Any] | None) -> None:
        """An action's tool, the reads its rules need, and the tools resolving its targets' selectors."""
        for sel in selectors:
            if sel is not None and "key" not in sel:
                self.selector_tools(sel)
        self.actions.append(act_id)
        w = self.world
        act = next(a for a in w.arch.actions if a.id == act_id)
        self.need(*(f"get_{e['name']}" for e in w.entities.values()))  # rules read related rows
        self.need(f"find_{w.entities[act.entity]['plural']}")
        conds = [
            *act.requires,
            *(c for p in w.arch.policies if p.action == act_id for c in p.forbid_if + p.when + p.require),
        ]
        for c in conds:
            if isinstance(c, Count) and c.count in w.entities:  # counted through count (or find)
                self.need(f"count_{w.entities[c.count]['plural']}", f"find_{w.entities[c.count]['plural']}")
        for p in action_params(act, w.arch.entity(act.entity)).values():
            if p.kind == "ref" and p.to in w.entities:  # named by label: found with find
                self.need(f"find_{w.entities[p.to]['plural']}")
        self.need(self.world.action_tools[act_id])

    def draft(
        self, kind: str, body: str, params: dict[str, Any], answer_kind: str, expected: Any, gate: dict[str, Any]
    ) -> TaskDraft:
        """The finished draft."""
        w, rng = self.world, self.rng
        intro = _template(rng.choice(INTRO)).render(
            org=w.org, title=w.arch.title, a_title=with_article(w.arch.title), now=w.now.replace("T", " ")
        )
        rules = [p for p in w.arch.policies if p.id in w.policy_modes and p.action in self.actions]
        if self.actions and self.difficulty >= 4:  # every rule of every exposed action
            exposed = set(self._expose() or w.action_tools.values())
            rules = [p for p in w.arch.policies if p.id in w.policy_modes and w.action_tools.get(p.action) in exposed]
        terms = glossary(w, rules)
        shown = "\nRules:" + (f" ({terms})" if terms else "") + "\n" + "\n".join(f"- {p.text}" for p in rules)
        text = intro + (shown if rules else "") + "\n" + body
        verifier = {
            "kind": "all",
            "checks": [answer_check(answer_kind, expected), {"kind": "state", "expected_hash": state_hash(self.state)}],
        }
        tool_config = {"archetype": w.arch.id, "schema": w.schema, "expose": self._expose(), "answer": answer_kind}
        return TaskDraft(
            prompt=text,
            params={**params, "kind": kind, "now": w.now, "policies": [p.id for p in rules]},
            verifier_spec=verifier,
            tool_config=tool_config,
            meta={"kind": kind, "gate": gate, "archetype": w.arch.id},
        )

    def _expose(self) -> list[str] | None:
        if self.difficulty >= 5:
            return None
        from toolgym.synth.domains.tools import tool_names

        every = tool_names(self.world.arch.id, self.world.schema)
        others = [t for t in every if t not in self.tools]
        n = {1: 0, 2: 1, 3: 2, 4: 3}.get(self.difficulty, 0)
        extra = random.Random(self.extra_seed).sample(others, min(n, len(others)))
        return [t for t in every if t in self.tools or t in extra]


def _unique_value(world: DomainWorld, entity: str, attr: str, value: Any) -> bool:
    """Whether a value is held by one row only and is not what an empty answer looks like (0, "")."""
    return value not in (None, 0, "") and len(world.index(entity, attr).get(value, [])) == 1


def lookup(b: Builder) -> TaskDraft | None:
    """A field of a row named by its label or constraints; or a field of the row a ref points to."""
    w, rng = b.world, b.rng
    # the asked field's table is the largest one can: a random row's value (the random gate) is a
    # plausible guess, so small tables make guessable tasks
    ents = sorted((e for e in w.entities if w.rows[e]), key=lambda e: -len(w.rows[e]))[:3]
    ents.sort(key=lambda e: -len(w.rows[e]) * rng.random())  # larger tables first, more likely
    for e in [x for x in ents for _ in range(4)]:  # a few rows of each: some hold no unique value
        row = rng.choice(list(w.rows[e].values()))
        size = len(w.rows[e])
        via = [a for a in w.attrs(e) if a.kind == "ref" and row.get(a.name) is not None and len(w.rows[a.to]) >= size]  # type: ignore[index]
        path_ent, path_row, path = e, row, []
        if via and rng.random() < 0.5:
            ref = rng.choice(via)
            path_ent, path_row, path = str(ref.to), w.rows[str(ref.to)][row[ref.name]], [ref.name]
        label = w.entities[path_ent]["label"]
        fields = [
            a
            for a in w.attrs(path_ent)
            if (a.name != label or path)  # a label is the answer only when the row is reached by a ref
            and (a.kind in ANSWER_FIELDS or a.kind in kinds.NUMERIC or a.name == label)
            and _unique_value(w, path_ent, a.name, path_row.get(a.name))
        ]
        if not fields:
            continue
        field = rng.choice(fields)
        if b.difficulty == 1 and w.entities[e]["label"] is None:  # by key: one get, a short toolset
            sel: dict[str, Any] | None = {"entity": e, "key": row["id"]}
        else:
            sel = query.unique_selector(b.state, e, row, rng, avoid=set() if path else {field.name})
        if sel is None:
            continue
        b.selector_tools(sel)
        if path:
            b.need(f"get_{w.entities[path_ent]['name']}")
        what = f"{_name(w, e)} {query.phrase(w, sel)}"
        if path and _name(w, path_ent) == _name(w, e, path[0]):  # "the doctor of the appointment …"
            what = f"{_name(w, path_ent)} of the {what}"
        elif path:
            what = f"{_name(w, path_ent)} that is the {_name(w, e, path[0])} of the {what}"
        body = render("lookup", rng, field=_name(w, path_ent, field.name), what=what)
        gate = {"values_of": [path_ent, field.name]}
        return b.draft(
            "lookup",
            body,
            {"target": sel, "path": [*path, field.name]},
            _answer_kind(field.kind),
            path_row[field.name],
            gate,
        )
    return None


#: Kinds a sum task adds up: money's cents make a random subset's sum coincide with the answer
#: almost never; sums of small integers (party sizes, renewals, 15-minute durations) coincided
#: for 1-18% of random plausible answers (bench synth, d3), so they are not asked.
SUMMABLE = frozenset({"money"})


def _numeric_field(w: DomainWorld, entity: str, rng: random.Random) -> str | None:
    fields = [a.name for a in w.attrs(entity) if a.kind in SUMMABLE]
    return rng.choice(fields) if fields else None


def select(b: Builder) -> TaskDraft | None:
    """The ids of the rows meeting a few constraints."""
    w, rng = b.world, b.rng
    for e in rng.sample(list(w.entities), len(w.entities)):
        sel = query.group_selector(b.state, e, 2, 9, rng)
        if sel is None or len(sel["where"]) < 2:
            continue
        hits = [r["id"] for r in query.matching(b.state, sel)]
        b.selector_tools(sel)
        ent = w.entities[e]
        body = render(
            "select", rng, plural=ent["plural"].replace("_", " "), thing=_name(w, e), cond=query.phrase(w, sel)
        )
        return b.draft("select", body, {"target": sel}, "texts", hits, {"ids_of": e, "n": len(hits)})
    return None


#: How many rows a ranking asks for (best first).
RANK = 3


def _rank_refs(w: DomainWorld, e: str) -> list[Any]:
    """The refs of an entity a ranking can group by.

    Those to a labelled entity (a join through a ``find`` by label) when there are any, else every ref.
    """
    refs = [a for a in w.attrs(e) if a.kind == "ref"]
    labelled = [a for a in refs if w.entities[str(a.to)]["label"] is not None]
    return labelled or refs


def ranking(b: Builder) -> TaskDraft | None:
    """Among the rows of a related row (a ref), the :data:`RANK` with the highest or lowest value of a field.

    The group has at least ``RANK + 2`` rows, all with a value (no null to place), and at least
    ``RANK`` distinct values (the field, not the tie rule, does most of the ranking). Ties go to
    the lower id (ids are zero-padded, so string order is number order), as the prompt says:
    the order and the cut are unambiguous, and small-integer fields (durations, counts) rank too.
    """
    w, rng = b.world, b.rng
    for e in rng.sample(list(w.entities), len(w.entities)):
        fields = [a.name for a in w.attrs(e) if a.kind in kinds.NUMERIC]
        refs = _rank_refs(w, e)
        if not fields or not refs:
            continue
        ref = rng.choice(refs)
        # parents with enough children, from the index (most parents of a small table have few)
        parents = [k for k, kids in w.index(e, ref.name).items() if k is not None and len(kids) >= RANK + 2]
        for parent in rng.sample(parents, min(4, len(parents))):
            field, best = rng.choice(fields), rng.choice(["max", "min"])
            sel = {"entity": e, "where": [[ref.name, "eq", query.ref_value(b.state, ref.to, parent)]]}  # type: ignore[arg-type]
            hits = query.matching(b.state, sel)
            if len(hits) < RANK + 2 or any(r.get(field) is None for r in hits):
                continue
            if len({r[field] for r in hits}) < RANK:
                continue
            sign = -1 if best == "max" else 1
            hits = sorted(hits, key=lambda r: (sign * r[field], r["id"]))
            b.selector_tools(sel)
            body = render(
                "ranking",
                rng,
                plural=w.entities[e]["plural"].replace("_", " "),
                cond=query.phrase(w, sel),
                best="highest" if best == "max" else "lowest",
                field=_name(w, e, field),
            )
            params = {"target": sel, "field": field, "best": best, "k": RANK}
            ids = [r["id"] for r in hits[:RANK]]
            return b.draft("ranking", body, params, "ranking", ids, {"ids_of": e, "n": RANK, "ordered": True})
    return None


def _breakdown(b: Builder, e: str) -> TaskDraft | None:
    """How many rows of a group hold each value of an enum (2–5 values, every one present in the group).

    Rows with no value would be counted under none, so a group with any is not asked about; a
    value with count 0 is never asked (an answer omitting it would be as right as one saying 0).
    """
    w, rng = b.world, b.rng
    enums = [a for a in w.attrs(e) if a.kind == "enum" and 2 <= len(a.values or []) <= 5]
    if not enums:
        return None
    attr = rng.choice(enums)
    sel = query.group_selector(b.state, e, 12, 80, rng)
    if sel is None or any(c[0] == attr.name for c in sel["where"]):
        return None
    values = [str(v) for v in attr.values or []]
    hits = query.matching(b.state, sel)
    counts = {v: sum(1 for r in hits if r.get(attr.name) == v) for v in values}
    if sum(counts.values()) != len(hits) or min(counts.values()) == 0:
        return None
    b.selector_tools(sel)
    name = _name(w, e, attr.name)
    body = render(
        "breakdown",
        rng,
        plural=w.entities[e]["plural"].replace("_", " "),
        cond=query.phrase(w, sel),
        attr=name,
        values=", ".join(values),
    )
    params = {"target": sel, "field": attr.name, "values": values}
    return b.draft("breakdown", body, params, "counts", counts, {"counts_of": [e, attr.name], "values": values})


def _sum(b: Builder, e: str) -> TaskDraft | None:
    """The total of a money field over a group of 3–60 rows (not 0: what the null agent submits)."""
    w, rng = b.world, b.rng
    field = _numeric_field(w, e, rng)
    sel = query.group_selector(b.state, e, 3, 60, rng) if field else None
    if field is None or sel is None:
        return None
    hits = query.matching(b.state, sel)
    total = round(sum(r.get(field) or 0 for r in hits), 2)
    if total == 0:
        return None
    b.selector_tools(sel)
    body = render(
        "sum",
        rng,
        field=_name(w, e, field),
        plural=w.entities[e]["plural"].replace("_", " "),
        thing=_name(w, e),
        cond=query.phrase(w, sel),
    )
    return b.draft(
        "sum", body, {"target": sel, "field": field}, "number", total, {"sum_of": [e, field], "n": len(hits)}
    )


def aggregate(b: Builder) -> TaskDraft | None:
    """A breakdown of a group's counts by an enum, or the total of a money field over a group."""
    for e in b.rng.sample(list(b.world.entities), len(b.world.entities)):
        for make in b.rng.sample([_breakdown, _sum], 2):
            draft = make(b, e)
            if draft is not None:
                return draft
    return None


def _actions(b: Builder, pred: Callable[[Action], bool] = lambda a: True) -> list[Action]:
    acts = [a for a in b.world.arch.actions if a.id in b.world.action_tools and pred(a)]
    b.rng.shuffle(acts)
    return acts


def act(b: Builder) -> TaskDraft | None:
    """One allowed write on a target named by constraints, or one new row."""
    w, rng = b.world, b.rng
    for a in _actions(b):
        req = requests.propose(b.state, a.id, rng)
        if req is None or requests.blocking(b.state, req):
            continue
        done = requests.simulate(b.state, req)
        if done is None:
            continue
        b.write(a.id, req["target"])
        done_words = "acted on" if a.target else "created"
        body = render("act", rng, request=requests.describe(b.state, req), thing=_name(w, a.entity), done=done_words)
        return b.draft("act", body, {"requests": [req]}, "text", done, {"ids_of": a.entity, "n": 1})
    return None
