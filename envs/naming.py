r"""The one name rule of every family, for tools and verifiers alike.

A name a policy writes (a city, a venue, a file, a group in an answer…) matches a name of the
world when the two are equal after Unicode NFC normalization and trimming surrounding
whitespace. Case matters and inner whitespace matters: ``"Café Lumen"`` matches
``"Cafe\u0301 Lumen "`` but not ``"café lumen"`` or ``"Café  Lumen"``. A miss names the closest
name of the world (``did you mean …?``), so one call fixes it. The system prompt states the
rule in these words: "Names are matched exactly after Unicode NFC normalization and trimming
surrounding whitespace (case matters); a miss suggests the closest name."

Why not case-folding: names are identifiers the tools hand out, so a policy can always copy
them exactly, while NFC/NFD and stray spaces are artefacts of tokenizers and copying that a
human would not see. Why a hint on every miss (even for gibberish): the hint is always a real
name, and naming the closest one is the cheapest help a policy can get.

Worlds store their names in canonical form (:func:`is_canonical`), so a lookup is one dict hit
for an exact name and one normalization plus a dict hit otherwise (:func:`lookup`); the hint
(:func:`closest`) is only computed on a miss. This module is layer L1: families (L4) and
verifiers (L2) both import it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Container, Iterable, Mapping
from typing import TypeVar

V = TypeVar("V")

#: The rule as the system prompt states it.
RULE = (
    "Names are matched exactly after Unicode NFC normalization and trimming surrounding whitespace "
    "(case matters); a miss suggests the closest name."
)


def canon(name: str) -> str:
    """The canonical form of a name: Unicode NFC, surrounding whitespace trimmed.

    Args:
        name: Any string.

    Returns:
        ``unicodedata.normalize("NFC", name).strip()`` (ASCII skips the normalization).
    """
    if name.isascii():
        return name.strip()
    return unicodedata.normalize("NFC", name).strip()


def is_canonical(name: str) -> bool:
    """Whether ``name`` is already in canonical form (what worlds must store)."""
    return canon(name) == name


def same(a: str, b: str) -> bool:
    """Whether two names match under the rule."""
    return a == b or canon(a) == canon(b)


def lookup(table: Mapping[str, V], name: str) -> V | None:
    """The entry of ``table`` (keyed by canonical names) that ``name`` matches, or None.

    Args:
        table: A mapping whose keys are canonical names (see :func:`is_canonical`).
        name: The name as the policy wrote it.
    """
    hit = table.get(name)
    if hit is None:
        hit = table.get(canon(name))
    return hit


def resolve(names: Container[str], name: str) -> str | None:
    """The canonical name in ``names`` (canonical names only) that ``name`` matches, or None."""
    if name in names:
        return name
    key = canon(name)
    return key if key in names else None


def _grams(s: str) -> frozenset[str]:
    """Case-folded character bigrams of a name, padded so one-letter names have some."""
    f = f" {s.casefold()} "
    return frozenset(f[i : i + 2] for i in range(len(f) - 1))


class NamePool:
    """The names of one kind, prepared for fast hints (built once per world and kind).

    :meth:`closest` scores every name by the Dice coefficient of case-folded character bigrams
    (``2|A∩B| / (|A|+|B|)``, set intersections done in C), which ranks typos, missing words,
    case and accent slips close to the name meant; about 1 µs per name.
    """

    def __init__(self, names: Iterable[str]):
        self.names = list(names)
        self._folded: dict[str, str] = {}
        for n in self.names:
            self._folded.setdefault(n.casefold(), n)
        self._grams = [(_grams(n), len(_grams(n))) for n in self.names]

    def closest(self, name: str) -> str | None:
        """The name closest to ``name``; None only for an empty pool.

        A name equal up to case wins outright; ties go to the earlier name, so hints are
        deterministic.
        """
        if not self.names:
            return None
        key = canon(name)
        hit = self._folded.get(key.casefold())
        if hit is not None:
            return hit
        q = _grams(key)
        nq = len(q)
        best, best_score = 0, -1.0
        for i, (g, ng) in enumerate(self._grams):
            score = 2 * len(q & g) / (nq + ng)
            if score > best_score:
                best, best_score = i, score
        return self.names[best]


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``name`` (see :class:`NamePool`); None only when there are none.

    Args:
        name: The name as the policy wrote it (it need not be canonical).
        candidates: The world's names of the kind asked for.
    """
    return NamePool(candidates).closest(name)


def hint(close: str | None, otherwise: str = "") -> str:
    """The hint clause for a closest name: ``"; did you mean 'X'?"`` (``otherwise`` for None).

    The name is quoted as it is, not with ``repr``: ``repr`` writes characters such as U+202E as
    the six characters ``\u202e``, a spelling that would not match when copied back (the payload
    writer escapes what JSON needs, so the decoded hint holds the exact name).
    """
    return f"; did you mean '{close}'?" if close is not None else otherwise


def did_you_mean(name: str, candidates: Iterable[str], otherwise: str = "") -> str:
    """The hint clause of a miss among ``candidates`` (see :func:`hint`)."""
    return hint(closest(name, candidates), otherwise)
