"""Domains prompts read as English a person would write, and still name everything the params say.

A property test over tasks of every archetype at every difficulty checks each defect kind found
in generated prompts is gone (a word twice in a row, flags said ``is yes``/``is no``, snake_case,
``None``/``nan``/template braces, ``T`` datetimes, money without separators, a verb repeating its
entity, "the X that is the X of"), and that every value the task's params hold is said in the
prompt the way :func:`query.value_text` says it; focused tests pin the phrasing functions.
"""

from __future__ import annotations

import functools
import random
import re
from typing import Any

import pytest

from toolgym.synth.domains import query, requests
from toolgym.synth.domains.family import Domains
from toolgym.synth.domains.schema import action_params
from toolgym.synth.domains.terms import glossary
from toolgym.synth.domains.world import DomainWorld, archetype_ids
from toolgym.synth.text import with_article

FAM = Domains()
DEFECTS = {
    "a word twice in a row": re.compile(r"\b([A-Za-z]+) \1\b", re.IGNORECASE),
    "a flag said yes/no/true/false": re.compile(r"\bis (yes|no|true|false)(?=$|[,.?;)]| and | or | with | \()", re.M),
    "snake_case": re.compile(r"\b[A-Za-z0-9]+_[A-Za-z0-9_]+\b"),
    "None/nan/template": re.compile(r"\bNone\b|\bnan\b|\{\{|\}\}|\{%"),
    "a T datetime": re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d"),
    "money without separators": re.compile(r"(?<![\d,.-])\d{4,}\.\d\d\b"),
    "a verb for a new row": re.compile(r"\bfor a new\b"),
    "the X that is the X of": re.compile(r"\bthe ([a-z ]+) that is the \1 of\b"),
}


@functools.cache
def _tasks(seed: int) -> list[tuple[DomainWorld, Any]]:
    """One task per archetype and difficulty (205 for the 41 archetypes), with its world."""
    out = []
    for i, arch in enumerate(archetype_ids()):
        for d in range(1, 6):
            world = FAM.make_world(seed * 1000 + i * 10 + d, d, arch)
            draft = FAM.make_task(world, d, random.Random(seed * 1000 + i * 10 + d))
            if draft is not None:
                out.append((world, draft))
    return out


def _body(draft: Any) -> str:
    """The prompt less the archetype's rule texts (hand-written English, not generated).

    A breakdown's values are the exact keys of its answer, so they are said as the tools spell
    them (``on_leave``) and left out here.
    """
    text = "\n".join(line for line in draft.prompt.splitlines() if not line.startswith("- "))
    for key in draft.params["values"] if draft.params["kind"] == "breakdown" else []:
        text = text.replace(key, "")
    return text


@pytest.mark.parametrize("seed", [0, 1])
def test_prompts_have_none_of_the_defect_kinds(seed: int) -> None:
    found = {kind: [_body(d) for _, d in _tasks(seed) if pattern.search(_body(d))] for kind, pattern in DEFECTS.items()}
    assert {k: v[:2] for k, v in found.items() if v} == {}
    assert len({d.params["kind"] for _, d in _tasks(seed)}) >= 8  # every kind was looked at


def _said(world: DomainWorld, entity: str, attr: str, v: Any, act_id: str | None = None) -> str | None:
    """How a prompt says a value of an attribute (or of an action's parameter), unit aside.

    None for flags (said as on/off or "set to true").
    """
    if isinstance(v, bool):
        return None
    spec = world.arch.entity(entity).attribute(attr)
    if act_id is not None:
        act = next(a for a in world.arch.actions if a.id == act_id)
        spec = action_params(act, world.arch.entity(act.entity)).get(attr, spec)
    return query.value_text(v, spec.kind if spec is not None else "text", None, "minutes")


def _selector_values(world: DomainWorld, sel: dict[str, Any] | None) -> list[str]:
    if sel is None:
        return []
    if "key" in sel:
        return [sel["key"]]
    return [s for a, _, v in sel["where"] if (s := _said(world, sel["entity"], a, v)) is not None]


def _request_values(world: DomainWorld, req: dict[str, Any]) -> list[str]:
    ent = requests.action_entity(world, req["action"])
    out = _selector_values(world, req["target"])
    out += [s for k, v in req["params"].items() if (s := _said(world, ent, k, v, req["action"])) is not None]
    return out + (_request_values(world, req["instead"]) if req.get("instead") else [])


def _values(world: DomainWorld, params: dict[str, Any]) -> list[str]:
    """Every value a task's params name, as the prompt must say it."""
    out = _selector_values(world, params.get("target"))
    for req in params.get("requests", []):
        out += _request_values(world, req)
    if "then" in params:  # conditional: the threshold and the write
        out.append(_said(world, params["target"]["entity"], params["field"], params["value"]))
        out += _request_values(world, {**params["then"], "target": None})
    if "else" in params:  # conditional with a write in its else branch
        out += _request_values(world, {**params["else"], "target": None})
    if params["kind"] == "bulk":
        ent = requests.action_entity(world, params["action"])
        out += [s for k, v in params["params"].items() if (s := _said(world, ent, k, v, params["action"])) is not None]
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_prompts_name_every_value_of_their_params(seed: int) -> None:
    missing = []
    for world, draft in _tasks(seed):
        said = draft.prompt
        missing += [(draft.params["kind"], v, said) for v in _values(world, draft.params) if v not in said]
    assert missing[:3] == []


def test_verb_phrases_read_as_english() -> None:
    vp = requests.verb_phrase
    assert vp("call_off", "it") == "call it off"
    assert vp("request_time_off", "it") == "request time off for it"  # a particle ends only a 2-word verb
    assert vp("cancel_sailing", "it", {"sailing", "departure", "voyage"}) == "cancel it"  # any of its names
    assert vp("cancel_po", "the purchase order X", {"purchase_order", "po"}) == "cancel the purchase order X"
    assert vp("file_application", "a new permit application", {"application", "permit_application"}) == (
        "file a new permit application"
    )
    assert vp("book_room", "a new booking", "booking") == "book room (a new booking)"
    assert vp("report_lost", "it") == "report it as lost"
    assert vp("flag_for_repair", "the bike X") == "flag the bike X for repair"
    assert vp("send_to_workshop", "it") == "send it to workshop"
    assert vp("withdraw_from", "the enrolment X") == "withdraw from the enrolment X"
    assert vp("set_price", "it") == "set price for it"
    assert vp("take_out_of_service", "it") == "take it out of service"
    assert vp("put_on_hold", "the script X") == "put the script X on hold"
    assert vp("turn_on_roaming", "it") == "turn on roaming for it"


def _world(arch: str = "bank") -> DomainWorld:
    return FAM.make_world(3, 2, arch)


def test_values_are_said_as_a_person_writes_them() -> None:
    vt = query.value_text
    assert vt(12345.6, "money") == "12,345.60"
    assert vt("2026-05-01T14:30", "datetime") == "2026-05-01 14:30"
    assert vt("pay_as_you_go", "enum") == "pay as you go"
    assert vt(90, "duration") == "90 minutes"
    assert vt(90, "duration", name="extra_minutes") == "90"  # the name says the unit
    assert vt(1, "int", "nights") == "1 night"
    assert vt({"label_of": "patient", "label": "Ada Reyes"}, "ref") == "Ada Reyes"
    assert vt({"label_of": "pet", "label": "Ziggy 7"}, "ref") == '"Ziggy 7"'  # a numbered name, quoted
    assert vt("Screen 12", "phrase") == '"Screen 12"'
    assert vt(5, "percent") == "5%"
    assert query.copula("reward points", "int") == "are"
    assert [query.copula(n, k) for n, k in [("species", "enum"), ("status", "enum"), ("bonus", "money")]] == ["is"] * 3


def test_selectors_say_flags_and_participle_names_naturally() -> None:
    world = _world("bank")
    flag = next(a for e in world.entities for a in world.attrs(e) if a.kind == "flag")
    ent = next(e for e in world.entities if flag in world.attrs(e))
    name = world.entities[ent]["attributes"][flag.name].replace("_", " ")
    said = query.phrase(world, {"entity": ent, "where": [[flag.name, "eq", False]]})
    assert said == f"whose {name}{'' if name.endswith('flag') else ' flag'} is off"
    for w in [world, *(_world(a) for a in ("auto_repair", "car_rental", "library", "it_helpdesk"))]:
        for e, a in [(x, a) for x in w.entities for a in w.attrs(x) if a.kind in ("date", "datetime", "ref")]:
            last = query.attr_noun(w, e, a.name).split()[-1]  # "opened on date", not "opened on"
            assert last not in query.PREPOSITIONS and not (a.kind != "ref" and last.endswith("ed")), (e, a.name)


def test_rules_say_which_of_their_words_the_world_names_otherwise() -> None:
    """A rule written with the archetype's words ("cancel", "booking") is read with the world's ("refund")."""
    checked = 0
    ids = archetype_ids()
    for seed in range(60):
        world = FAM.make_world(seed, 4, ids[seed % len(ids)])
        rules = [p for p in world.arch.policies if p.id in world.policy_modes]
        if not rules:
            continue
        said = glossary(world, rules)
        verbs = {a["id"]: a["verb"] for a in world.schema["actions"]}
        for pol in rules:
            act = next(a for a in world.arch.actions if a.id == pol.action)
            ent = world.entities[act.entity]["name"]
            for canon, chosen, word in (
                (act.verb, verbs[act.id], f"to {act.verb}"),
                (act.entity, ent, with_article(act.entity)),
            ):
                word = word.replace("_", " ")
                if canon != chosen:
                    assert f'"{word}" means' in said, (world.arch.id, canon, said)
                    checked += 1
                else:
                    assert f'"{word}" means' not in said, (world.arch.id, canon, said)
    assert checked > 20
