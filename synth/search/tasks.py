"""Search tasks: multi-hop chains and inverted (BrowseComp-style) identifications, by difficulty.

* **chain** (80% of the tasks at difficulty 1, 40% at 5: :data:`INVERTED_SHARE`): start from a
  named entity and follow ``difficulty + 1`` functional relations (2 hops at difficulty 1, 6 at
  difficulty 5): "Which person is the founder of the publisher of the work “Songs of Varn”?". Every
  relation has one object per subject, so the chain names exactly one entity: the answer is unique
  by the world's facts.
* **inverted** (the others): several clues about a person that together identify them (the first,
  the pivot, never alone): "Identify the person who works for Varn Press, was born in the year 1971
  and has a career in law." The first clue (an employer, named) is the pivot; the others are
  attributes or relations whose object is named, or, from difficulty 4, described by a chain of its
  own ("was born in the city where the organisation Tol Studios is headquartered"), or, from
  difficulty 3, named by an alias. Uniqueness is checked at generation against the world's reverse
  index: exactly one person meets every clue, and more than one meets the pivot.

Answers are names of entities whose type has enough members that a random name of the right
type passes with chance at most ``random_pass_max`` of the difficulty, and from difficulty 2 at
most a quarter of it (:data:`RANDOM_PASS_MARGIN`, :func:`answer_types`): the family reports that
chance exactly (``Search.random_pass``). The margin is there because nothing else makes a search
answer guessable: a random name of the answer's type passes with exactly ``1 / count`` whatever
the task (names and aliases are distinct under the check's normal form; the random gate draws
names only), so the hardness table's sampled figure (``toolgym bench synth``: 8 tasks x 400
draws) only scatters around ``1 / count``. With 1,100 people at difficulty 2 (1 / 1,100 =
0.091%, just under the 0.1% limit) it read 0.19% (6 hits in 3,200 draws, spread over 5 chains);
with at least 4,000 people (<= 0.025%) the chance that 3,200 draws read above 0.1% (4 hits or
more) is under 1%. The verifier is the ``alias`` check (:mod:`toolgym.verifiers.aliases`): the
name or one of its aliases, normalised.
"""

from __future__ import annotations

import random
from typing import Any

from toolgym.spec import TaskDraft
from toolgym.synth.search.world import LEVELS, RELATIONS, TYPE_WORDS, SearchWorld
from toolgym.synth.text import join_words, with_article

#: Per difficulty: the most a random name of the answer's type may pass with (SynthConfig's default).
RANDOM_PASS_MAX = (0.05, 0.001, 0.001, 0.001, 0.001)
#: From difficulty 2, an answer type's exact random chance is at most the limit / this (see the
#: module docstring: a sampled estimate of a chance at the limit reads above it half the time).
RANDOM_PASS_MARGIN = 4
#: From this difficulty, 70% of the chains whose start has an alias name it by the alias (and half
#: the inverted tasks' clue objects named directly).
ALIAS_START = 3
#: Per difficulty: the share of inverted tasks (they read every document naming the pivot: more calls).
INVERTED_SHARE = {1: 0.2, 2: 0.35, 3: 0.5, 4: 0.5, 5: 0.6}
#: Per difficulty: (clues of an inverted task, clues whose object is described by a chain).
CLUES = {1: (2, 0), 2: (2, 0), 3: (3, 0), 4: (3, 1), 5: (4, 2)}
#: The person facts an inverted task's clues use, besides the pivot (``works_for``).
PERSON_CLUES = ("born_in", "birth_year", "field", "mentored_by")
#: Noun phrases of a hop: ``{x}`` is the phrase of the entity the hop starts from.
HOP_PHRASES: dict[str, tuple[str, ...]] = {
    "born_in": ("the birthplace of {x}", "the city where {x} was born"),
    "works_for": ("the employer of {x}", "the organisation {x} works for"),
    "mentored_by": ("the mentor of {x}", "the person who trained {x}"),
    "parent_org": ("the parent company of {x}", "the organisation that owns {x}"),
    "based_in": ("the city where {x} is headquartered", "the home city of {x}"),
    "founded_by": ("the founder of {x}", "the person who founded {x}"),
    "created_by": ("the creator of {x}", "the person who created {x}"),
    "published_by": ("the publisher of {x}", "the organisation that published {x}"),
    "held_in": ("the city that hosted {x}", "the host city of {x}"),
    "organised_by": ("the organiser of {x}", "the organisation that organised {x}"),
    "won_by": ("the winner of {x}", "the person who won {x}"),
    "in_region": ("the region containing {x}", "the region where {x} lies"),
}
#: A hop as a step from the entity reached so far.
HOP_STEPS = {
    "born_in": "the city where that person was born",
    "works_for": "the organisation that person works for",
    "mentored_by": "the person that person trained under",
    "parent_org": "the organisation that owns that organisation",
    "based_in": "the city where that organisation is headquartered",
    "founded_by": "the person who founded that organisation",
    "created_by": "the person who created that work",
    "published_by": "the organisation that published that work",
    "held_in": "the city that hosted that event",
    "organised_by": "the organisation that organised that event",
    "won_by": "the person who won that event",
    "in_region": "the region containing that city",
}
#: Clue phrases of an inverted task: ``{o}`` the object's phrase or the value.
CLUE_PHRASES: dict[str, tuple[str, ...]] = {
    "works_for": ("works for {o}", "is on the staff of {o}"),
    "born_in": ("was born in {o}", "is a native of {o}"),
    "birth_year": ("was born in the year {o}", "has {o} as year of birth"),
    "field": ("has a career in {o}", "works in the field of {o}"),
    "mentored_by": ("trained under {o}", "was a student of {o}"),
}
QUESTIONS = (
    "Which {type} is {phrase}? Use the tools to find out, then submit the name.",
    "Find {phrase}. Submit the {type}'s name as the documents write it.",
    "Using the document search, identify {phrase} ({type_a}) and submit the name.",
)
IDENTIFY = (
    "Identify the {type} who {clues}. Exactly one {type} matches every clue; submit their name.",
    "Several clues point to one {type}, who {clues}. Search the documents and submit that {type}'s name.",
)
INSTRUCTION = " The answer is a name only."


def random_pass_limit(difficulty: int) -> float:
    """The most an answer type's random chance may be at ``difficulty`` (the margin from difficulty 2)."""
    return RANDOM_PASS_MAX[difficulty - 1] / (RANDOM_PASS_MARGIN if difficulty >= 2 else 1)


def answer_types(difficulty: int) -> list[str]:
    """The entity types an answer may have: a random name of one passes with chance <= :func:`random_pass_limit`."""
    level = LEVELS[difficulty]
    return [t for t in ("person", "org") if 1 / level.count(t) <= random_pass_limit(difficulty)]


def entity_phrase(kind: str, name: str) -> str:
    """How a prompt names an entity: ``the organisation Varn Press``, ``the work “Songs of Tol”``."""
    shown = f"“{name}”" if kind == "work" else name
    return f"the {TYPE_WORDS[kind]} {shown}"


def chain_phrase(start: dict[str, str], path: list[str], rng: random.Random) -> str:
    """The nested noun phrase of a chain (innermost hop first in ``path``).

    A wording whose verb follows the inner phrase ("the organisation {x} works for") only for
    the innermost hop, where ``{x}`` is a name: around a longer phrase it reads as a garden path.
    """
    phrase = entity_phrase(start["type"], start["name"])
    for h, r in enumerate(path):
        options = [p for p in HOP_PHRASES[r] if h == 0 or p.endswith("{x}")]
        phrase = options[int(rng.random() * len(options))].format(x=phrase)
    return phrase


def steps_question(start: dict[str, str], path: list[str], answer_type: str) -> str:
    """A chain as numbered steps: "Start from …. 1) take its founder; 2) …"."""
    steps = "; ".join(f"{n}) take {HOP_STEPS[r]}" for n, r in enumerate(path, start=1))
    return (
        f"Start from {entity_phrase(start['type'], start['name'])} and follow these steps: {steps}. "
        f"Which {TYPE_WORDS[answer_type]} do you reach? Submit the name."
    )


def walk(world: SearchWorld, hops: int, finals: list[str], rng: random.Random) -> tuple[list[Any], list[str]] | None:
    """A random chain of ``hops`` relations ending in a type of ``finals``, visiting no entity twice.

    Returns:
        (the entities ``[(type, index), …]`` from start to answer, the relations), or None.
    """
    starts = ("person", "org", "work", "event")
    for _ in range(40):
        kind = starts[int(rng.random() * len(starts))]
        node = (kind, int(rng.random() * len(world.names[kind])))
        nodes, path = [node], []
        for h in range(hops):
            last = h == hops - 1
            options = [
                r
                for r, (s, o) in RELATIONS.items()
                if s == node[0] and (o in finals if last else o in ("person", "org"))
            ]
            if not options:
                break
            r = options[int(rng.random() * len(options))]
            node = (RELATIONS[r][1], world.rel[r][node[1]])
            if node in nodes:
                break
            nodes.append(node)
            path.append(r)
        if len(path) == hops:
            return nodes, path
    return None


def answer_check(world: SearchWorld, kind: str, i: int) -> dict[str, Any]:
    """The verifier spec of an answer: the ``alias`` check of entity ``(kind, i)``."""
    return {"kind": "alias", "expected": world.names[kind][i], "aliases": list(world.aliases[kind][i])}


def chain_task(world: SearchWorld, difficulty: int, rng: random.Random) -> TaskDraft | None:
    """A multi-hop task of ``difficulty + 1`` hops, or None when no chain was found."""
    found = walk(world, difficulty + 1, answer_types(difficulty), rng)
    if found is None:
        return None
    nodes, path = found
    (kind0, i0), (kind, i) = nodes[0], nodes[-1]
    start: dict[str, Any] = {"type": kind0, "name": world.names[kind0][i0]}
    aliases = world.aliases[kind0][i0]
    if difficulty >= ALIAS_START and aliases and rng.random() < 0.7:  # named as some documents name it
        start = {"type": kind0, "name": aliases[0], "alias": True}
    if rng.random() < 0.3:
        prompt = steps_question(start, path, kind) + INSTRUCTION
    else:
        question = QUESTIONS[int(rng.random() * len(QUESTIONS))]
        word = TYPE_WORDS[kind]
        prompt = question.format(type=word, type_a=with_article(word), phrase=chain_phrase(start, path, rng))
        prompt += INSTRUCTION
    return TaskDraft(
        prompt=prompt,
        params={"kind": "chain", "start": start, "path": path, "answer_type": kind},
        verifier_spec=answer_check(world, kind, i),
        tool_config={},
        meta={
            "kind": "chain",
            "answer_type": kind,
            "hops": len(path),
            "via": [world.names[k][j] for k, j in nodes[1:-1]],
        },
    )


def describe(
    world: SearchWorld, kind: str, i: int, hops: int, rng: random.Random, avoid: tuple[str, int] | None = None
) -> dict[str, Any]:
    """Entity ``(kind, i)`` as a chain of up to ``hops`` relations from another named entity.

    Walks backwards through the reverse index (a subject whose relation points at the entity),
    never through ``avoid`` (an inverted task's answer must not be named in its own clues);
    stops early where nothing points at it. Returns ``{"start": {"type", "name"}, "path": [...]}``.
    """
    path: list[str] = []
    for _ in range(hops):
        options = [
            (r, s, subjects)
            for r, (s, o) in RELATIONS.items()
            if o == kind and (subjects := [j for j in world.reverse(r).get(i, ()) if (s, j) != avoid])
        ]
        if not options:
            break
        r, skind, subjects = options[int(rng.random() * len(options))]
        i, kind = subjects[int(rng.random() * len(subjects))], skind
        path.insert(0, r)
    return {"start": {"type": kind, "name": world.names[kind][i]}, "path": path}


def _meets(world: SearchWorld, p: int, clue: str, target: int) -> bool:
    """Whether person ``p`` has the same ``clue`` fact as the target."""
    table = world.rel.get(clue) or world.attrs[clue]
    return table[p] == table[target]


def _clue_set(world: SearchWorld, target: int, n_clues: int, rng: random.Random) -> list[str] | None:
    """The target's clues (pivot first) that leave exactly the target; None if none do."""
    org = world.rel["works_for"][target]
    pool = world.reverse("works_for")[org]
    if len(pool) < 2:
        return None
    order = list(PERSON_CLUES)
    rng.shuffle(order)
    clues, left = ["works_for"], list(pool)
    for clue in order:
        if len(left) == 1 and len(clues) >= n_clues:
            break
        clues.append(clue)
        left = [p for p in left if _meets(world, p, clue, target)]
    return clues if left == [target] else None


def inverted_task(world: SearchWorld, difficulty: int, rng: random.Random) -> TaskDraft | None:
    """A task whose clues together identify one person; None when no target in 20 tries works."""
    if "person" not in answer_types(difficulty):
        return None
    n_clues, n_chained = CLUES[difficulty]
    people = world.names["person"]
    for _ in range(20):
        target = int(rng.random() * len(people))
        kinds = _clue_set(world, target, n_clues, rng)
        if kinds is not None:
            break
    else:
        return None
    clues: list[dict[str, Any]] = []
    chained = set(rng.sample(range(1, len(kinds)), min(n_chained, len(kinds) - 1)))
    for n, kind in enumerate(kinds):
        if kind in RELATIONS:
            okind, o = RELATIONS[kind][1], world.rel[kind][target]
            hops = (1 + int(rng.random() * 2)) if n in chained else 0
            obj = describe(world, okind, o, hops, rng, avoid=("person", target))
            aliases = world.aliases[okind][o]
            if not hops and aliases and difficulty >= ALIAS_START and rng.random() < 0.5:
                obj = {"start": {"type": okind, "name": aliases[0], "alias": True}, "path": []}
            clues.append({"kind": kind, "object": obj})
        else:
            clues.append({"kind": kind, "value": world.attrs[kind][target]})
    return TaskDraft(
        prompt=identify_prompt(clues, rng),
        params={"kind": "inverted", "type": "person", "clues": clues},
        verifier_spec=answer_check(world, "person", target),
        tool_config={},
        meta={
            "kind": "inverted",
            "answer_type": "person",
            "hops": sum(len(c.get("object", {}).get("path", [])) for c in clues) + 1,
        },
    )


def identify_prompt(clues: list[dict[str, Any]], rng: random.Random) -> str:
    """The question of an inverted task: its clues in order, each in one of its wordings."""
    parts = []
    for c in clues:
        options = CLUE_PHRASES[c["kind"]]
        if "object" in c:
            obj = chain_phrase(c["object"]["start"], c["object"]["path"], rng)
            if not c["object"]["path"]:
                obj = c["object"]["start"]["name"]
        else:
            obj = c["value"]
        parts.append(options[int(rng.random() * len(options))].format(o=obj))
    template = IDENTIFY[int(rng.random() * len(IDENTIFY))]
    return template.format(type="person", clues=join_words(parts)) + INSTRUCTION


def make_task(world: SearchWorld, difficulty: int, rng: random.Random) -> TaskDraft | None:
    """An inverted task with the difficulty's odds (:data:`INVERTED_SHARE`), else a chain (each falls back)."""
    inverted = rng.random() < INVERTED_SHARE[difficulty]
    first, second = (inverted_task, chain_task) if inverted else (chain_task, inverted_task)
    return first(world, difficulty, rng) or second(world, difficulty, rng)


__all__ = [
    "CLUES",
    "answer_types",
    "chain_phrase",
    "chain_task",
    "describe",
    "entity_phrase",
    "identify_prompt",
    "inverted_task",
    "make_task",
    "random_pass_limit",
]
