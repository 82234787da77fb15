"""The search family's world: a generated universe of entities and the facts between them.

A world is a pure function of ``(seed, difficulty)``. It holds entities of six types (people,
organisations, works, events, cities, regions), each with a unique name and maybe aliases,
the functional relations of :data:`RELATIONS` (every subject has exactly one object, never
itself: a person is born in one city, works for one organisation and trained under someone
else) and the attributes of :data:`ATTRIBUTES`.
Functional relations make every chain of hops name exactly one entity, which is what proves a
multi-hop answer unique; the inverted tasks check uniqueness against the reverse index.

Names: people are a first name from a small pool plus a generated surname, so first names
repeat; about one person in eight is a *near-namesake* of another (same first name, surname one
letter off: "Ada Korvel" / "Ada Korvell"). Every name and alias is distinct from every other
under the answer check's normal form (:func:`toolgym.verifiers.aliases.normalize`), so an
accepted answer names one entity. Aliases: a person's name with a middle initial, an
organisation's other name ("Varn Press" / "Varn Publishing"), each for about 60% of them.

The documents (``corpus.py``) and the index (``index.py``) are built from the world on first use
and never stored: a world's JSON (:meth:`SearchWorld.to_json`) is its inputs and a digest, and
:func:`load` regenerates it (the domains family does the same), so datasets stay small and a
world pickles as its inputs (the tantivy index does not pickle; it is rebuilt lazily, once per
process, through :func:`cached_world`). A process keeps at most :data:`BUILT_DOCUMENTS` documents
rendered and indexed, over all its worlds and besides those an episode reads: a least recently
used world rebuilds them on its next use.
"""

from __future__ import annotations

import hashlib
import random
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from toolgym.errors import WorldDataError
from toolgym.synth import names as nm
from toolgym.verifiers.aliases import normalize

#: Bump when generation changes: stored worlds regenerate only under the same generator.
GENERATOR = 3

TYPES = ("person", "org", "work", "event", "city", "region")
#: How prompts and documents name each type.
TYPE_WORDS = {
    "person": "person",
    "org": "organisation",
    "work": "work",
    "event": "event",
    "city": "city",
    "region": "region",
}
#: Functional relations: name -> (subject type, object type).
RELATIONS: dict[str, tuple[str, str]] = {
    "born_in": ("person", "city"),
    "works_for": ("person", "org"),
    "mentored_by": ("person", "person"),
    "based_in": ("org", "city"),
    "founded_by": ("org", "person"),
    "parent_org": ("org", "org"),
    "created_by": ("work", "person"),
    "published_by": ("work", "org"),
    "held_in": ("event", "city"),
    "organised_by": ("event", "org"),
    "won_by": ("event", "person"),
    "in_region": ("city", "region"),
}
#: Attributes: name -> (subject type, values). Years are strings (they are matched as text).
FIELDS = (
    "astronomy",
    "botany",
    "carpentry",
    "cartography",
    "chemistry",
    "law",
    "linguistics",
    "medicine",
    "music",
    "navigation",
    "painting",
    "philosophy",
    "printing",
    "sculpture",
    "surgery",
    "textiles",
    "theatre",
    "watchmaking",
)
ATTRIBUTES: dict[str, tuple[str, tuple[str, ...]]] = {
    "birth_year": ("person", tuple(str(y) for y in range(1931, 2001))),
    "field": ("person", FIELDS),
    "founded_year": ("org", tuple(str(y) for y in range(1850, 2011))),
    "year": ("work", tuple(str(y) for y in range(1900, 2021))),
    "event_year": ("event", tuple(str(y) for y in range(1950, 2021))),
}


@dataclass(frozen=True)
class Level:
    """Entity and document counts of one difficulty."""

    person: int
    org: int
    work: int
    event: int
    city: int
    region: int
    articles: int
    distractors: int

    def count(self, kind: str) -> int:
        """The number of entities of a type."""
        return int(getattr(self, kind))


#: Corpus size grows with difficulty: about 0.5k, 9.5k, 18k, 40k and 100k documents. From
#: difficulty 2 there are at least 4,000 people (the answer type of every difficulty): a random
#: name passes with at most 1 / 4,000, a quarter of the 0.1% limit
#: (:data:`toolgym.synth.search.tasks.RANDOM_PASS_MARGIN`); organisations (~4.4 people each, an
#: inverted task's pivot pool), cities (~15-20 people born in each) and articles (one per ~4
#: entities, as at the other levels) grow with them.
LEVELS = {
    1: Level(60, 20, 50, 20, 12, 3, 40, 300),
    2: Level(4000, 900, 900, 250, 200, 6, 1400, 2000),
    3: Level(5000, 1200, 2000, 600, 300, 10, 2200, 7000),
    4: Level(7000, 1600, 6000, 1600, 300, 16, 4000, 19000),
    5: Level(16000, 4000, 14000, 4000, 600, 24, 10000, 50000),
}

_FIRST_POOL = 40  # first names per world: they repeat, as they do
_ORG_PATTERNS = ("{W} Press", "{W} Institute", "{W} Works", "{W} & {N}", "{W} Foundation", "{W} Studios", "{W} Guild")
_WORK_PATTERNS = ("The {A} {N}", "{N} of {W}", "Songs of {W}", "The {W} Letters", "{A} {T}", "One {N} for {W}")
_EVENT_KINDS = ("Prize", "Festival", "Open", "Cup", "Summit", "Fair", "Marathon", "Biennale")
_REGION_KINDS = ("Province", "Region", "Valley", "Coast", "Highlands")


class _Names:
    """Unique names under the answer check's normal form (names and aliases alike)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[str] = set()

    def take(self, name: str) -> bool:
        """Claim ``name`` if its normal form is free; returns whether it was."""
        key = normalize(name)
        if not key or key in self.used:
            return False
        self.used.add(key)
        return True

    def draw(self, make: Any) -> str:
        """Call ``make()`` until it yields a free name."""
        for _ in range(1000):
            name = make()
            if self.take(name):
                return str(name)
        raise RuntimeError("name space exhausted")  # practically unreachable


def _namesake(rng: random.Random, surname: str) -> str:
    """A surname one letter off (a letter doubled, changed or appended)."""
    i = rng.randrange(1, len(surname))
    roll = rng.random()
    if roll < 0.4:
        return surname + surname[-1] if surname[-1] not in "aeiouy" else surname + "n"
    if roll < 0.7:
        return surname[:i] + surname[i] + surname[i:]
    return surname[:i] + rng.choice("aeiourlnst") + surname[i + 1 :]


def _people(rng: random.Random, book: _Names, n: int) -> tuple[list[str], list[list[str]]]:
    """People's names (with near-namesakes) and aliases (a middle initial)."""
    firsts = [nm.word(rng, 2) for _ in range(_FIRST_POOL)]
    out: list[str] = []
    for _ in range(n):
        if out and rng.random() < 0.12:
            first, last = rng.choice(out).split(" ", 1)
            name = f"{first} {_namesake(rng, last)}"
            if book.take(name):
                out.append(name)
                continue
        out.append(book.draw(lambda: f"{rng.choice(firsts)} {nm.word(rng)}"))
    aliases = []
    for name in out:
        first, last = name.split(" ", 1)
        alias = f"{first} {rng.choice('BCDFGHJKLMNPRSTVW')}. {last}"
        aliases.append([alias] if rng.random() < 0.6 and book.take(alias) else [])
    return out, aliases


#: An organisation's other name, by the last word of its name.
_ORG_ALIASES = {
    "Press": "{W} Publishing",
    "Institute": "Institute of {W}",
    "Works": "{W} Workshop",
    "Foundation": "{W} Trust",
    "Studios": "Studio {W}",
    "Guild": "Guild of {W}",
}


def _org_alias(name: str) -> str:
    """Another name of an organisation ("Varn Press" -> "Varn Publishing"), or "" for none.

    "Varn & Oak" has none: the answer check reads "&" as "and", so "Varn and Oak" is already
    the same name (an alias would be refused as a duplicate).
    """
    head, _, last = name.rpartition(" ")
    template = _ORG_ALIASES.get(last)
    return template.format(W=head) if template else ""


def _entities(rng: random.Random, level: Level) -> tuple[dict[str, list[str]], dict[str, list[list[str]]]]:
    """Every type's names and aliases."""
    book = _Names(rng)
    names: dict[str, list[str]] = {}
    aliases: dict[str, list[list[str]]] = {}
    names["person"], aliases["person"] = _people(rng, book, level.person)
    names["org"] = [book.draw(lambda: nm._fill(rng, nm._pick(rng, _ORG_PATTERNS))) for _ in range(level.org)]
    aliases["org"] = [[a] if rng.random() < 0.6 and book.take(a := _org_alias(o)) else [] for o in names["org"]]
    names["work"] = [book.draw(lambda: nm._fill(rng, nm._pick(rng, _WORK_PATTERNS))) for _ in range(level.work)]
    names["event"] = [book.draw(lambda: f"{nm.word(rng)} {rng.choice(_EVENT_KINDS)}") for _ in range(level.event)]
    names["city"] = [book.draw(lambda: nm.city_name(rng)) for _ in range(level.city)]
    names["region"] = [book.draw(lambda: f"{nm.word(rng)} {rng.choice(_REGION_KINDS)}") for _ in range(level.region)]
    for kind in ("work", "event", "city", "region"):
        aliases[kind] = [[] for _ in names[kind]]
    return names, aliases


def _objects(rng: random.Random, n_subjects: int, n_objects: int, same_type: bool) -> list[int]:
    """One object index per subject; never the subject itself where both have one type.

    Nobody is their own mentor and no organisation its own parent: such a fact reads as
    nonsense ("Ada Korvel trained under Ada Korvel.") and would make an inverted task's clue
    name its own answer ("who trained under Ada Korvel").
    """
    if not same_type:
        return [int(rng.random() * n_objects) for _ in range(n_subjects)]
    out = []
    for s in range(n_subjects):
        o = int(rng.random() * (n_objects - 1))
        out.append(o + 1 if o >= s else o)
    return out


def _facts(rng: random.Random, level: Level) -> tuple[dict[str, list[int]], dict[str, list[str]]]:
    """Each relation's object index per subject, each attribute's value per subject."""
    rel = {r: _objects(rng, level.count(s), level.count(o), s == o) for r, (s, o) in RELATIONS.items()}
    attrs = {a: [nm._pick(rng, values) for _ in range(level.count(s))] for a, (s, values) in ATTRIBUTES.items()}
    return rel, attrs


def generate(seed: int, difficulty: int) -> dict[str, Any]:
    """The world of ``(seed, difficulty)`` as plain data (names, aliases, facts).

    Raises:
        KeyError: ``difficulty`` is not 1–5.
    """
    level = LEVELS[difficulty]
    rng = random.Random(f"search-world-{seed}-{difficulty}")
    names, aliases = _entities(rng, level)
    rel, attrs = _facts(rng, level)
    return {"seed": seed, "difficulty": difficulty, "names": names, "aliases": aliases, "rel": rel, "attrs": attrs}


def digest(data: dict[str, Any]) -> str:
    """A short content hash of a world's generated data."""
    body = orjson.dumps([data["names"], data["aliases"], data["rel"], data["attrs"]])
    return f"{GENERATOR}-" + hashlib.sha256(body).hexdigest()[:16]


class SearchWorld:
    """One world: entities and facts, with its corpus and index built on first use.

    Attributes:
        seed, difficulty: The inputs.
        names: Type -> entity names (an entity is ``(type, index)``).
        aliases: Type -> each entity's aliases.
        rel: Relation -> object index per subject index.
        attrs: Attribute -> value per subject index.
    """

    def __init__(self, data: dict[str, Any]):
        self.seed: int = data["seed"]
        self.difficulty: int = data["difficulty"]
        self.names: dict[str, list[str]] = data["names"]
        self.aliases: dict[str, list[list[str]]] = data["aliases"]
        self.rel: dict[str, list[int]] = data["rel"]
        self.attrs: dict[str, list[str]] = data["attrs"]
        self.digest = digest(data)
        self._reverse: dict[str, dict[int, list[int]]] = {}
        self._pins = False  # a view of :meth:`pinned`: holds its documents once built
        self._pin: _Built | None = None

    def to_json(self) -> dict[str, Any]:
        """The world's inputs and digest (what a dataset stores; :func:`load` regenerates it)."""
        return {"seed": self.seed, "difficulty": self.difficulty, "generator": GENERATOR, "digest": self.digest}

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        """Pickle as the inputs: unpickling regenerates the world through the process cache.

        The tantivy index does not pickle; this way it is rebuilt on first use where the
        world lands, once per process (:func:`cached_world`).
        """
        return cached_world, (self.to_json(),)

    def name(self, kind: str, i: int) -> str:
        """The name of entity ``(kind, i)``."""
        return self.names[kind][i]

    def reverse(self, relation: str) -> dict[int, list[int]]:
        """Object index -> the subjects of ``relation`` that point to it (cached)."""
        got = self._reverse.get(relation)
        if got is None:
            got = {}
            for s, o in enumerate(self.rel[relation]):
                got.setdefault(o, []).append(s)
            self._reverse[relation] = got
        return got

    def pinned(self) -> SearchWorld:
        """A view of this world that holds its documents and index for as long as it lives.

        The context of one episode (:meth:`toolgym.synth.search.family.Search.episode_context`):
        the process's store may drop a world's documents when others are used, never those of a
        world an episode is reading. The view shares every field; it pins on first use.
        """
        view = object.__new__(SearchWorld)  # not copy.copy: __reduce__ would return the cached world
        view.__dict__.update(self.__dict__)
        view._pins, view._pin = True, None
        return view

    def _built(self) -> _Built:
        """This world's documents and index, from the process's bounded store (:data:`BUILT_DOCUMENTS`)."""
        if self._pin is not None:
            return self._pin
        key = (self.seed, self.difficulty, self.digest)
        got = _BUILT.get(key)
        if got is not None:
            _BUILT.move_to_end(key)
        else:
            got = _LIVE.get(key)  # still held by an episode: shared, not rebuilt
            if got is None:
                from toolgym.synth.search.corpus import render

                got = _LIVE[key] = _Built(render(self))
            _BUILT[key] = got
            total = sum(len(b.corpus) for b in _BUILT.values())
            while len(_BUILT) > 1 and total > BUILT_DOCUMENTS:
                total -= len(_BUILT.popitem(last=False)[1].corpus)
        if self._pins:
            self._pin = got
        return got

    @property
    def corpus(self) -> Any:
        """The documents (:class:`toolgym.synth.search.corpus.Corpus`), rendered on first use."""
        return self._built().corpus

    @property
    def index(self) -> Any:
        """The search index (:class:`toolgym.synth.search.index.SearchIndex`), built on first use."""
        built = self._built()
        if built.index is None:
            from toolgym.synth.search.index import SearchIndex

            built.index = SearchIndex(built.corpus)
        return built.index


class _Built:
    """A world's documents and, once built, its index."""

    __slots__ = ("__weakref__", "corpus", "index")

    def __init__(self, corpus: Any):
        self.corpus = corpus
        self.index: Any = None


#: Documents kept rendered and indexed per process, over all worlds (~1.3 kB each with the index:
#: two difficulty-5 worlds, ~330 MB). Task sources hold many world objects (a dataset source 32,
#: on-the-fly synthesis 64), which cost little; only the most recently used worlds, and those an
#: episode is reading (:meth:`SearchWorld.pinned`), keep their documents and index, the others
#: drop them and rebuild them, identical, on their next use.
BUILT_DOCUMENTS = 250_000
_BUILT: OrderedDict[tuple[int, int, str], _Built] = OrderedDict()
#: Every world's documents still held anywhere (the store or an episode's view).
_LIVE: weakref.WeakValueDictionary[tuple[int, int, str], _Built] = weakref.WeakValueDictionary()


_CACHE: OrderedDict[tuple[int, int], SearchWorld] = OrderedDict()
_CACHE_SIZE = 2  # the worlds make() returns from its cache (their documents are bounded apart)


def make(seed: int, difficulty: int) -> SearchWorld:
    """The world of ``(seed, difficulty)``, from the process cache when it is there."""
    key = (seed, difficulty)
    world = _CACHE.get(key)
    if world is None:
        world = SearchWorld(generate(seed, difficulty))
        _CACHE[key] = world
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return world


def cached_world(data: dict[str, Any]) -> SearchWorld:
    """The world a stored row describes (:meth:`SearchWorld.to_json`), regenerated or cached.

    Worlds are immutable (every tool reads), so one object serves every episode and task of a
    process that names it: its index is built once.

    Raises:
        WorldDataError: The row is not a search world, or the world regenerates with another
            digest (another generator version made the dataset).
    """
    try:
        seed, difficulty, stored = int(data["seed"]), int(data["difficulty"]), str(data["digest"])
        world = make(seed, difficulty)
    except (KeyError, TypeError, ValueError) as exc:
        raise WorldDataError(f"not a search world row ({type(exc).__name__}: {exc})") from None
    if world.digest != stored:
        raise WorldDataError(
            f"search world {seed}/d{difficulty} regenerates with digest {world.digest}, stored {stored}: "
            "the dataset was synthesized by another version of the generator (synthesize it again)"
        )
    return world
