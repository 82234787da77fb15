"""The search family's reference (and its shallow heuristic): answers through the tools only.

Both read the task's public parameters (what the prompt says: the start entity and the
relations of a chain, or the clues) and nothing of the world. Their unit of work is a *lookup*
(:class:`Lookup`): a fact of a named subject (forward: "where was Ada Korvel born?") or every
subject of a fact about a named object (reverse: "who works for Varn Press?"). A lookup
searches the name as an exact phrase, then runs ``find_in_document`` with the name on the hits,
best first, and parses each sentence found with the fact's templates, matched against the
whole sentence (:func:`toolgym.synth.search.corpus.parse_fact`): distractor sentences, facts of
near-namesakes and other facts of the same entity do not match. A forward lookup stops at the
first fact found (a fact is written once); a reverse lookup reads every hit of every page.
Lookups that do not depend on each other run side by side, their calls batched into the same
turns (at most ``reference_batch()`` calls a turn).

* chain: one forward lookup per hop (after an alias lookup when the start is named by an alias).
* inverted: the chained clue objects are resolved first (hop by hop, side by side), then the
  pivot's reverse lookup gives the candidates, and each further clue keeps the candidates whose
  fact matches (one forward lookup per candidate and clue, side by side).

The heuristic (:func:`heuristic_program`) is the same agent made shallow: it reads only the
first page of a search and only the first :data:`SHALLOW_DOCS` hits, and answers with what it
has when a lookup comes back empty (a chain stops at the last name it reached; an inverted task
takes the first candidate that is not ruled out).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from toolgym.envs.limits import reference_batch
from toolgym.envs.rollout import Final, Program, Step
from toolgym.synth.search.corpus import parse_fact

BATCH = reference_batch()
#: Hits a forward lookup reads per round (the fact is usually on the subject's own page, the first hit).
FORWARD_DOCS = 5
#: Hits the shallow heuristic reads of a search (first page only).
SHALLOW_DOCS = 2

Call = tuple[str, dict[str, Any]]

#: What a forward lookup finds out, as a clause of a thought (``{n}``: the name).
QUESTIONS = {
    "born_in": "where {n} was born",
    "works_for": "which organisation {n} works for",
    "mentored_by": "whom {n} trained under",
    "based_in": "where {n} is headquartered",
    "founded_by": "who founded {n}",
    "parent_org": "which organisation owns {n}",
    "created_by": "who created {n}",
    "published_by": "who published {n}",
    "held_in": "where {n} was held",
    "organised_by": "who organised {n}",
    "won_by": "who won {n}",
    "in_region": "which region {n} lies in",
    "birth_year": "when {n} was born",
    "field": "which field {n} works in",
    "founded_year": "when {n} was established",
    "year": "when {n} first appeared",
    "event_year": "when {n} was staged",
    "alias": "whose other name {n} is",
}
#: What a reverse lookup collects (``{n}``: the object's name).
COLLECTS = {"works_for": "everyone who works for {n}", "alias": "whose other name {n} is"}


def _asking(lookups: list[Lookup]) -> str:
    """A thought naming what the first lookups find out: "Looking up who founded X and …"."""
    parts = [QUESTIONS[lk.kind].format(n=lk.name) for lk in lookups[:3]]
    more = f" and {len(lookups) - 3} more" if len(lookups) > 3 else ""
    return "Looking up " + ", ".join(parts) + more + "."


@dataclass
class Lookup:
    """One fact lookup in progress.

    Attributes:
        kind: The relation or attribute.
        name: The fixed name: the subject (forward) or the object (reverse).
        reverse: Collect every subject of the fact about ``name`` (else: ``name``'s object).
        shallow: Read one search page and :data:`SHALLOW_DOCS` hits only.
        first: A reverse lookup that stops at the first subject found (an alias has one owner).
        found: What was parsed: objects or values (forward), subjects (reverse), in order.
    """

    kind: str
    name: str
    reverse: bool = False
    shallow: bool = False
    first: bool = False
    found: list[str] = field(default_factory=list)
    page: int = 0
    pages: int = 1
    pending: list[str] = field(default_factory=list)
    read: int = 0
    done: bool = False

    def next_calls(self) -> list[Call]:
        """The calls of this lookup's next round (none when it is done).

        Forward: the next :data:`FORWARD_DOCS` hits, or the next search page when none are left.
        Reverse: every pending hit and, once the first page told how many there are, every
        further page at once.
        """
        if self.done:
            return []
        calls: list[Call] = []
        limit = SHALLOW_DOCS - self.read if self.shallow else (len(self.pending) if self.reverse else FORWARD_DOCS)
        if self.pending and limit > 0:
            take, self.pending = self.pending[:limit], self.pending[limit:]
            self.read += len(take)
            calls += [("find_in_document", {"doc_id": d, "text": self.name}) for d in take]
        if self.shallow and self.page >= 1:
            self.pending = []
        elif self.page < self.pages and (self.reverse or not calls):
            last = self.pages if self.reverse and self.page >= 1 else self.page + 1
            calls += [("search", {"query": f'"{self.name}"', "page": p}) for p in range(self.page + 1, last + 1)]
            self.page = last
        self.done = not calls
        return calls

    def absorb(self, call: Call, result: dict[str, Any]) -> None:
        """Take one call's result in."""
        content = result.get("content")
        if not isinstance(content, dict):
            return
        if call[0] == "search":
            self.pages = content["pages"]
            self.pending += [h["doc_id"] for h in content["results"]]
            return
        lines = [m["sentence"] for m in content["matches"]]
        if self.reverse:
            self.found += [s for s in parse_fact(self.kind, lines, obj=self.name) if s not in self.found]
            self.done = self.done or (self.first and bool(self.found))
        else:
            self.found += parse_fact(self.kind, lines, subject=self.name)
            self.done = self.done or bool(self.found)


def _chunks(calls: list[Call]) -> Iterator[list[Call]]:
    for i in range(0, len(calls), BATCH):
        yield calls[i : i + BATCH]


def run_lookups(lookups: list[Lookup], thought: str) -> Program:
    """Run lookups side by side until each is done (their calls share turns)."""
    first = True
    while True:
        owned = [(lk, c) for lk in lookups for c in lk.next_calls()]
        if not owned:
            return None
        for i in range(0, len(owned), BATCH):
            part = owned[i : i + BATCH]
            searching = any(c[0] == "search" for _, c in part)
            later = "Searching further." if searching else "Reading what the hits say about the names."
            results = yield Step([c for _, c in part], thought if first else later)
            first = False
            for (lk, call), res in zip(part, results, strict=True):
                lk.absorb(call, res)


def resolve(chains: list[dict[str, Any]], shallow: bool = False) -> Program:
    """The entity each chain names, its lookups side by side; None where a chain is lost.

    A chain is ``{"start": {"name", "alias"?}, "path": [...]}``; a start named by an alias is
    first resolved to its name (the profile says "<name> is also known as <alias>.").
    """
    names: list[str | None] = [c["start"]["name"] for c in chains]
    steps = [(["alias"] if c["start"].get("alias") else []) + list(c["path"]) for c in chains]
    for h in range(max(map(len, steps), default=0)):
        active = [
            (k, Lookup(s[h], str(names[k]), reverse=s[h] == "alias", shallow=shallow, first=True))
            for k, s in enumerate(steps)
            if h < len(s) and names[k] is not None
        ]
        if not active:
            break
        yield from run_lookups([lk for _, lk in active], _asking([lk for _, lk in active]))
        for k, lk in active:
            names[k] = lk.found[0] if lk.found else (names[k] if shallow else None)
    return names


def _who(k: int) -> str:
    return "the only candidate" if k == 1 else f"each of the {k} candidates"


def _clue_target(clue: dict[str, Any], objects: dict[int, str | None], n: int) -> str | None:
    return objects.get(n) if "object" in clue else clue["value"]


def inverted(params: dict[str, Any], shallow: bool = False) -> Program:
    """The person the clues identify (None when the candidates run out)."""
    clues = params["clues"]
    chained = [n for n, c in enumerate(clues) if "object" in c]
    names = yield from resolve([clues[n]["object"] for n in chained], shallow)
    objects = dict(zip(chained, names, strict=True))
    pivot = Lookup(clues[0]["kind"], str(objects[0]), reverse=True, shallow=shallow)
    yield from run_lookups([pivot], f"Collecting {COLLECTS.get(pivot.kind, 'everyone it names').format(n=pivot.name)}.")
    left = list(pivot.found)
    for n, clue in enumerate(clues[1:], start=1):
        want = _clue_target(clue, objects, n)
        if len(left) <= (1 if shallow else 0):
            break
        checks = [Lookup(clue["kind"], p, shallow=shallow) for p in left]
        yield from run_lookups(checks, f"Checking {QUESTIONS[clue['kind']].format(n=_who(len(left)))}.")
        kept = [lk.name for lk in checks if lk.found and lk.found[0] == want]
        left = kept if kept or not shallow else left
    return left[0] if left else None


def program(params: dict[str, Any]) -> Program:
    """The reference program of a search task; returns the name it submits."""
    if params["kind"] == "chain":
        (name,) = yield from resolve([{"start": params["start"], "path": params["path"]}])
        return Final(name or "", f"Following every hop leads to {name}.")
    name = yield from inverted(params)
    return Final(name or "", f"Only {name} meets every clue.")


def heuristic_program(params: dict[str, Any]) -> Program:
    """The shallow heuristic (see the module docstring); returns the name it submits."""
    if params["kind"] == "chain":
        (name,) = yield from resolve([{"start": params["start"], "path": params["path"]}], shallow=True)
        return Final(name or "", "That is where the trail ends.")
    name = yield from inverted(params, shallow=True)
    return Final(name or "", "This one fits.")


__all__ = ["BATCH", "Lookup", "heuristic_program", "program", "resolve", "run_lookups"]
