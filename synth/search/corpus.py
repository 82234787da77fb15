"""The documents of a search world: facts rendered by varied templates, scattered, among distractors.

Every fact of the world (a relation or an attribute of one subject) is written as **one**
sentence, by one of its relation's templates (:data:`TEMPLATES`), in one *home* document:

* the subject's profile (the document titled with its name), for 75% of facts at difficulty 1
  down to 35% at difficulty 5 (:data:`OWN_PAGE`);
* the object's profile, for 15% of relation facts (a sentence such as "Varn Press employs
  Ada Korvel." on the page of Varn Press);
* an article (a "review issue" holding several facts of unrelated entities), for the rest.

So a fact is found by searching for the subject's name, but not always on its own page. Every
profile also carries its aliases, filler sentences and sometimes a mention of another entity;
*distractor* documents (most of the corpus at high difficulty) mention entities without stating
facts: unfounded reports ("Reports that Ada Korvel was born in the city of Brenmere have never
been confirmed.", never doubting a true fact: :data:`DENIALS`), confusions with near-namesakes,
talks and letters. A distractor sentence is never a template sentence: a template matched
against the whole sentence (the reference's parser, :func:`fact_patterns`) finds only true facts
(tested over every sentence of a world).

Documents are stored as a title and a list of sentences; a page is :data:`PAGE` sentences.
Document order is shuffled, so a document id says nothing of its kind.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from toolgym.synth.search.world import ATTRIBUTES, RELATIONS, TYPE_WORDS, SearchWorld

#: Sentences per page of ``open_document``.
PAGE = 5

#: Per difficulty: the share of relation facts written on the subject's own page (attributes: 10
#: points more); 15% go to the object's page, the rest to articles. Scattering grows with difficulty,
#: so a lookup reads more documents before it finds its fact.
OWN_PAGE = {1: 0.75, 2: 0.65, 3: 0.55, 4: 0.45, 5: 0.35}
#: Each fact kind's templates: ``{s}`` the subject's name, ``{o}`` the object's, ``{v}`` a value.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "born_in": ("{s} was born in the city of {o}.", "{s} is a native of {o}.", "The birthplace of {s} is {o}."),
    "works_for": ("{s} works for {o}.", "{s} is on the staff of {o}.", "{o} employs {s}."),
    "mentored_by": ("{s} trained under {o}.", "{o} was the mentor of {s}.", "The mentor of {s} was {o}."),
    "parent_org": ("{s} is a subsidiary of {o}.", "{o} owns {s}.", "The parent company of {s} is {o}."),
    "based_in": (
        "{s} is headquartered in {o}.",
        "The head office of {s} is in {o}.",
        "{o} hosts the head office of {s}.",
    ),
    "founded_by": ("{s} was founded by {o}.", "{o} founded {s}.", "The founder of {s} is {o}."),
    "created_by": ("{s} was created by {o}.", "{o} is the creator of {s}.", "{s} is a work by {o}."),
    "published_by": ("{s} was published by {o}.", "{o} released {s}.", "The publisher of {s} is {o}."),
    "held_in": ("{s} was held in {o}.", "{s} took place in {o}.", "{o} hosted {s}."),
    "organised_by": ("{s} was organised by {o}.", "{o} organised {s}.", "The organiser of {s} is {o}."),
    "won_by": ("{s} was won by {o}.", "{o} won {s}.", "The winner of {s} is {o}."),
    "in_region": ("{s} lies in {o}.", "{s} is a city in {o}."),
    "birth_year": ("{s} was born in the year {v}.", "The year of birth of {s} is {v}."),
    "field": ("{s} has a career in {v}.", "{s} is known for work in {v}."),
    "founded_year": ("{s} was established in {v}.", "The founding year of {s} is {v}."),
    "year": ("{s} first appeared in {v}.", "{s} dates from {v}."),
    "event_year": ("{s} was staged in {v}.", "The edition of {s} took place in {v}."),
    "alias": ("{s} is also known as {o}.",),
}
#: The sentence of a profile that gives an alias (``{s}`` the name, ``{o}`` the alias).
ALIAS_TEMPLATE = TEMPLATES["alias"][0]
#: Sentences that mention entities and state no fact (``{s}``, ``{o}``: names; ``{x}``: a namesake).
DISTRACTORS = (
    "Reports that {s} was born in the city of {o} have never been confirmed.",
    "Some catalogues wrongly list {s} under {o}, an error later corrected.",
    "{s} once gave a talk about {o}.",
    "A letter to {s} mentions {o} twice.",
    "{s} should not be confused with {x}.",
    "Visitors often compare {s} with {o}.",
    "It is sometimes claimed that {o} employs {s}, but no record shows it.",
)
#: The distractors that doubt or deny a claim about a person: their ``{o}`` is never one of
#: the person's true objects (a true birthplace "never confirmed" would contradict the facts).
DENIALS = frozenset(DISTRACTORS[k] for k in (0, 1, 6))
#: The person relations a denial could be read as (its ``{o}`` is never their object).
DENIED = ("born_in", "works_for")
_OPENERS = (
    "The archive",
    "An old register",
    "A later survey",
    "One biographer",
    "The regional press",
    "A museum guide",
    "A census clerk",
    "A travelling critic",
)
_RESTS = (
    "describes this period only briefly.",
    "notes that several records were lost in a flood.",
    "quotes a letter that has since been lost.",
    "gives conflicting dates for minor details.",
    "mentions a dispute that was settled quietly.",
    "lists this entry under a misspelt heading.",
    "praises the careful bookkeeping of the time.",
    "adds nothing further.",
)
FILLERS = tuple(f"{a} {b}" for a in _OPENERS for b in _RESTS)
_MASTHEADS = ("Gazette", "Bulletin", "Chronicle", "Courier", "Digest", "Review", "Herald", "Ledger")
_TOPICS = ("Letters", "Notices", "Society", "Culture", "Trade", "Archives", "Miscellany", "Travel")
_KINDS = tuple(RELATIONS) + tuple(ATTRIBUTES)


@dataclass
class Corpus:
    """The documents of a world.

    Attributes:
        titles: Title per document index (``doc_id`` is ``"doc-<index>"``).
        sentences: Sentences per document index.
    """

    titles: list[str]
    sentences: list[list[str]]

    def __len__(self) -> int:
        return len(self.titles)


def doc_id(i: int) -> str:
    """The public id of document ``i``."""
    return f"doc-{i}"


def _subject_kind(kind: str) -> str:
    return RELATIONS[kind][0] if kind in RELATIONS else ATTRIBUTES[kind][0]


def _profiles(world: SearchWorld, rng: random.Random) -> dict[tuple[str, int], list[str]]:
    """Each entity's profile sentences so far (intro and aliases)."""
    out: dict[tuple[str, int], list[str]] = {}
    for kind, names in world.names.items():
        word = TYPE_WORDS[kind]
        art = "an" if word[0] in "aeiou" else "a"
        for i, name in enumerate(names):
            lines = [f"{name} is {art} {word} described in this collection."]
            lines += [ALIAS_TEMPLATE.format(s=name, o=a) for a in world.aliases[kind][i]]
            out[(kind, i)] = lines
    return out


def _place_facts(
    world: SearchWorld, rng: random.Random, profiles: dict[tuple[str, int], list[str]], articles: list[list[str]]
) -> None:
    """Write every fact once, into its home document."""
    n_art = len(articles)
    own = OWN_PAGE[world.difficulty]
    for kind in _KINDS:
        templates = TEMPLATES[kind]
        subj = _subject_kind(kind)
        names = world.names[subj]
        if kind in RELATIONS:
            onames = world.names[RELATIONS[kind][1]]
            okind = RELATIONS[kind][1]
            for s, o in enumerate(world.rel[kind]):
                line = templates[int(rng.random() * len(templates))].format(s=names[s], o=onames[o])
                roll = rng.random()
                if roll < own:
                    profiles[(subj, s)].append(line)
                elif roll < own + 0.15:
                    profiles[(okind, o)].append(line)
                else:
                    articles[int(rng.random() * n_art)].append(line)
        else:
            for s, v in enumerate(world.attrs[kind]):
                line = templates[int(rng.random() * len(templates))].format(s=names[s], v=v)
                if rng.random() < own + 0.1:
                    profiles[(subj, s)].append(line)
                else:
                    articles[int(rng.random() * n_art)].append(line)


def _random_entity(world: SearchWorld, rng: random.Random, kinds: tuple[str, ...]) -> str:
    kind = kinds[int(rng.random() * len(kinds))]
    names = world.names[kind]
    return names[int(rng.random() * len(names))]


def _by_first_name(world: SearchWorld) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in world.names["person"]:
        out.setdefault(p.split(" ", 1)[0], []).append(p)
    return out


def distractor_line(world: SearchWorld, rng: random.Random, firsts: dict[str, list[str]]) -> str:
    """One sentence that mentions entities and states no fact (``firsts``: people by first name)."""
    pattern = DISTRACTORS[int(rng.random() * len(DISTRACTORS))]
    people = world.names["person"]
    i = int(rng.random() * len(people))
    s = people[i]
    if "{x}" in pattern:  # someone of the same first name: the near-namesakes are among them
        same = firsts[s.split(" ", 1)[0]]
        x = same[int(rng.random() * len(same))]
        return pattern.format(s=s, x=x if x != s else people[i - 1])
    if rng.random() < 0.5 and world.aliases["person"][i]:
        s = world.aliases["person"][i][0]
    kinds = ("org", "city", "work", "event")
    o = _random_entity(world, rng, kinds)
    if pattern in DENIALS:
        true = {world.names[RELATIONS[r][1]][world.rel[r][i]] for r in DENIED}
        while o in true:
            o = _random_entity(world, rng, kinds)
    return pattern.format(s=s, o=o)


def render(world: SearchWorld) -> Corpus:
    """The world's documents: profiles, articles and distractors, in shuffled order."""
    from toolgym.synth.search.world import LEVELS

    level = LEVELS[world.difficulty]
    rng = random.Random(f"search-corpus-{world.seed}-{world.difficulty}")
    profiles = _profiles(world, rng)
    firsts = _by_first_name(world)
    articles: list[list[str]] = [[] for _ in range(level.articles)]
    _place_facts(world, rng, profiles, articles)
    titles: list[str] = []
    bodies: list[list[str]] = []
    nf = len(FILLERS)
    for (kind, i), lines in profiles.items():
        lines.append(FILLERS[int(rng.random() * nf)])
        if rng.random() < 0.3:
            lines.append(distractor_line(world, rng, firsts))
        titles.append(world.names[kind][i])
        bodies.append(lines)
    for n, lines in enumerate(articles):
        lines.insert(int(rng.random() * (len(lines) + 1)), FILLERS[int(rng.random() * nf)])
        titles.append(f"{_TOPICS[n % len(_TOPICS)]} Review, issue {n + 1}")
        bodies.append(lines)
    for n in range(level.distractors):
        lines = [FILLERS[int(rng.random() * nf)], distractor_line(world, rng, firsts)]
        if rng.random() < 0.5:
            lines.append(distractor_line(world, rng, firsts))
        titles.append(f"{_MASTHEADS[n % len(_MASTHEADS)]} of {_TOPICS[(n // 8) % len(_TOPICS)]}, no. {n + 1}")
        bodies.append(lines)
    order = list(range(len(titles)))
    rng.shuffle(order)
    return Corpus([titles[k] for k in order], [bodies[k] for k in order])


def fact_patterns(kind: str, subject: str | None = None, obj: str | None = None) -> list[re.Pattern[str]]:
    """Regexes that match a whole sentence of one of ``kind``'s templates.

    Args:
        kind: A relation or attribute name.
        subject: The subject's name, fixed in the pattern (None: captured as group ``s``).
        obj: The object's name or the value, fixed (None: captured as group ``o``).

    Returns:
        One compiled pattern per template, to ``fullmatch`` a sentence.
    """
    out = []
    for t in TEMPLATES[kind]:
        parts = re.split(r"(\{s\}|\{o\}|\{v\})", t)
        rx = ""
        for p in parts:
            if p == "{s}":
                rx += re.escape(subject) if subject is not None else "(?P<s>.+?)"
            elif p in ("{o}", "{v}"):
                rx += re.escape(obj) if obj is not None else "(?P<o>.+?)"
            else:
                rx += re.escape(p)
        out.append(re.compile(rx))
    return out


def _split(template: str) -> tuple[str, str, str, str, str]:
    """A template as (literal, first slot, literal, second slot, literal)."""
    head, a, mid, b, tail = re.split(r"\{([sov])\}", template)
    return head, a, mid, b, tail


_SPLIT = {kind: [_split(t) for t in templates] for kind, templates in TEMPLATES.items()}


def parse_fact(kind: str, sentences: list[str], subject: str | None = None, obj: str | None = None) -> list[Any]:
    """The captured names of every sentence that is a ``kind`` fact with the fixed part given.

    Exactly what ``fact_patterns(kind, subject, obj)`` fullmatches, without compiling a regex
    per name: with one slot fixed, a template is a prefix, the other slot and a suffix.

    Args:
        kind: A relation or attribute name.
        sentences: The sentences to parse.
        subject: The subject's name (forward: returns the objects or values found).
        obj: The object's name or the value (reverse: returns the subjects found); give one of the two.

    Returns:
        The captured names, in sentence order (one per matching sentence).
    """
    fixed, slot = (subject, "s") if subject is not None else (obj, "o")
    shapes = []
    for head, a, mid, _b, tail in _SPLIT[kind]:
        if (a == "s") == (slot == "s"):  # the fixed slot comes first
            shapes.append((head + str(fixed) + mid, tail))
        else:
            shapes.append((head, mid + str(fixed) + tail))
    out = []
    for line in sentences:
        for prefix, suffix in shapes:
            if len(line) > len(prefix) + len(suffix) and line.startswith(prefix) and line.endswith(suffix):
                out.append(line[len(prefix) : len(line) - len(suffix)])
                break
    return out


__all__ = [
    "DENIALS",
    "DISTRACTORS",
    "FILLERS",
    "PAGE",
    "TEMPLATES",
    "Corpus",
    "doc_id",
    "fact_patterns",
    "parse_fact",
    "render",
]
