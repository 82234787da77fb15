"""Small grammar helpers for generated text: articles, plural agreement, lists, clipping.

Every generator that puts a value into a sentence (prompts, reference thoughts, tool errors)
goes through these, so "a attraction", "1 days" or a thought cut mid-word cannot be written
by one template and missed by another. ``tests/synth/test_text.py`` renders every template of
every family and checks the result with independent rules.
"""

from __future__ import annotations

import re

# Vowel letters with a consonant sound ("a unit", "a one-way", "a European") and the reverse
# ("an hour"). Matched on the lower-cased start of the word.
_A_BEFORE_VOWEL = ("uni", "use", "usu", "uti", "ure", "eu", "ewe", "one", "once", "ubi", "uto")
_AN_BEFORE_CONSONANT = ("hour", "honest", "honor", "honour", "heir")
# Letters read by name: "an F", "an M", "a U".
_AN_LETTERS = frozenset("aefhilmnorsx")
_WORD = re.compile(r"[A-Za-z0-9]+")


def article(word: str) -> str:
    """``"a"`` or ``"an"`` for the sound ``word`` starts with.

    Args:
        word: The next word (leading backticks, quotes and brackets are skipped). Numerals are
            read as spoken: "an 8", "an 11", "an 18", "an 80", "a 1".

    Returns:
        ``"an"`` before a vowel sound, else ``"a"`` (also for an empty word).
    """
    m = _WORD.search(word)
    if m is None:
        return "a"
    w = m.group(0)
    low = w.lower()
    if w[0].isdigit():
        digits = w
        if digits.startswith("8"):
            return "an"
        # 11 and 18 (and 11,000 / 18,000 …) start with a vowel sound when read in groups of three.
        lead = len(digits) % 3 or 3
        return "an" if digits[:lead] in ("11", "18") else "a"
    if len(w) == 1 or (w.isupper() and len(w) <= 4):  # a letter or an acronym read by letters
        return "an" if low[0] in _AN_LETTERS else "a"
    if low.startswith(_AN_BEFORE_CONSONANT):
        return "an"
    if low[0] in "aeiou" and not low.startswith(_A_BEFORE_VOWEL):
        return "an"
    return "a"


def with_article(phrase: str) -> str:
    """``phrase`` with its indefinite article: ``"an aquarium"``, ``"a `dock` event"``."""
    return f"{article(phrase)} {phrase}"


def plural(n: int | float, singular: str, many: str | None = None) -> str:
    """``"1 day"``, ``"2 days"``, ``"0 days"`` (``many`` defaults to ``singular + "s"``)."""
    word = singular if n == 1 else (many if many is not None else singular + "s")
    return f"{n} {word}"


def join_words(items: list[str], conjunction: str = "and") -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"`` (no Oxford comma, as the prompts write)."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary, with ``"…"`` if cut.

    A cut never splits a word (or a number): it falls at the last space before the limit (or,
    failing one, before the last separator such as ``,``), and trailing separators go.
    """
    if len(text) <= limit:
        return text
    head = text[: max(limit - 1, 0)]
    cut = head.rfind(" ")
    if cut <= 0:
        cut = max(head.rfind(","), head.rfind(";"))
    head = head[:cut] if cut > 0 else ""
    return head.rstrip(" ,;:") + "…"


__all__ = ["article", "clip", "join_words", "plural", "with_article"]
