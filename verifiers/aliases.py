"""The ``alias`` answer check: a name matched against the expected name and its aliases.

``{"kind": "alias", "expected": "Ada Korvel", "aliases": ["Ada M. Korvel"]}`` accepts a string
answer whose normal form (:func:`normalize`) equals the normal form of the expected name or of
one of its aliases, and nothing else: no substring, no edit distance, no list of guesses (a
list, a number or a boolean fails). The normal form is the usual one of open-domain QA
evaluation (SQuAD's): Unicode NFC, case folded, punctuation turned into spaces, the articles
"a", "an" and "the" dropped as whole words, whitespace collapsed; an ampersand reads as the
word "and". So ``"the Varn  Press."`` and ``"varn press"`` are one name, ``"Varn & Oak"`` and
``"Varn and Oak"`` another, and ``"Varn Pres"`` a third.

Families that emit this check keep every name and alias of a world distinct under the same
normal form (the search family checks it at generation), so an accepted answer names exactly
one entity.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from toolgym.verifiers.verdict import Verdict

#: Words dropped from a normal form (whole words only).
ARTICLES = frozenset({"a", "an", "the"})


#: Ampersands, read as the word "and" ("Varn & Oak" is "Varn and Oak").
_AMPERSANDS = frozenset("&\uff06\ufe60")
#: ASCII punctuation and symbols to spaces, "&" to " and " (the fast path of :func:`normalize`).
_ASCII_SPACED = str.maketrans(
    {c: " and " if c in _AMPERSANDS else " " for c in map(chr, range(128)) if not c.isalnum() and not c.isspace()}
)


def _spaced(ch: str) -> str:
    """An ampersand as " and ", a punctuation or symbol character as a space, any other as itself."""
    if ch in _AMPERSANDS:
        return " and "
    return " " if unicodedata.category(ch)[0] in "PS" else ch


def normalize(text: str) -> str:
    """The normal form of a name: NFC, case folded, punctuation as spaces, "&" as "and", articles dropped.

    Args:
        text: Any string.

    Returns:
        The words of the normal form joined by single spaces (``""`` for a string of
        punctuation and articles only).
    """
    if text.isascii():
        low = text.lower().translate(_ASCII_SPACED)
    else:
        low = "".join(map(_spaced, unicodedata.normalize("NFC", text).casefold()))
    return " ".join(w for w in low.split() if w not in ARTICLES)


def verify_alias(spec: dict[str, Any], answer: Any, state: Any) -> Verdict:
    """``{"kind": "alias", "expected": name, "aliases": [...]}``: the normal forms are equal.

    Args:
        spec: The check: ``expected`` (str) and optional ``aliases`` (list of str).
        answer: The submitted answer (must be a string).
        state: Unused (the check reads the answer only).

    Returns:
        Pass when ``normalize(answer)`` is the normal form of the expected name or of an alias.
    """
    if not isinstance(answer, str):
        return Verdict.fail(f"answer is not a name: {str(answer)[:60]!r}")
    got = normalize(answer)
    if got and got in {normalize(n) for n in [spec["expected"], *spec.get("aliases", ())]}:
        return Verdict.ok()
    return Verdict.fail("the name differs from the expected name and its aliases")


__all__ = ["ARTICLES", "normalize", "verify_alias"]
