"""Procedural names: cities, people, and venues of each kind, generated, not drawn from a list.

Words are built from syllables (onset + vowel + coda, two or three syllables, plus an
optional place-name suffix), giving tens of millions of distinct, pronounceable words; venue
names wrap a generated word in a kind-specific pattern ("Hotel Varnholt", "The Copper Kestrel",
"Museum of Tidal Glass"). So a policy cannot memorize world contents across seeds, and a
bluffing agent that invents names of the right shape still names nothing that exists.

Every draw comes from the ``random.Random`` passed in (fast scalar draws; seeded per item);
:class:`NameBook` keeps names unique within one
world.
"""

from __future__ import annotations

import random

_ONSETS = (
    "b",
    "br",
    "c",
    "ch",
    "cl",
    "d",
    "dr",
    "f",
    "fl",
    "g",
    "gr",
    "h",
    "k",
    "l",
    "m",
    "n",
    "p",
    "pr",
    "qu",
    "r",
    "s",
    "sh",
    "st",
    "t",
    "th",
    "tr",
    "v",
    "w",
    "z",
    "",
)
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ai", "ea", "ie", "ou", "y")
_CODAS = ("", "", "", "n", "r", "l", "s", "th", "m", "nd", "rk", "st", "v", "x", "ll", "rn")
_PLACE_SUFFIXES = (
    "mere",
    "ford",
    "ton",
    "haven",
    "wick",
    "bury",
    "gate",
    "holm",
    "stead",
    "port",
    "vale",
    "moor",
    "field",
    "crest",
    "by",
    "dale",
    "mouth",
    "ridge",
    "ley",
    "minster",
)
_ADJECTIVES = (
    "Golden",
    "Silver",
    "Copper",
    "Royal",
    "Old",
    "Grand",
    "Blue",
    "Crimson",
    "Quiet",
    "Amber",
    "Little",
    "Green",
    "Ivory",
    "Hidden",
    "Northern",
    "Velvet",
    "Rustic",
    "Salt",
    "Iron",
    "Jade",
)
_NOUNS = (
    "Lantern",
    "Harbor",
    "Oak",
    "Willow",
    "Anchor",
    "Crown",
    "Fox",
    "Heron",
    "Garden",
    "Bridge",
    "Mill",
    "Orchard",
    "Kestrel",
    "Compass",
    "Tide",
    "Lark",
    "Cellar",
    "Meadow",
    "Falcon",
    "Loom",
)
_TOPICS = (
    "Glass",
    "Maps",
    "Clocks",
    "Textiles",
    "Ships",
    "Coins",
    "Stone",
    "Light",
    "Music",
    "Salt",
    "Paper",
    "Bells",
    "Kites",
    "Silk",
    "Ceramics",
    "Stars",
    "Rivers",
    "Masks",
    "Printing",
    "Tea",
)
_HOTEL = ("Hotel {W}", "The {W} Inn", "{A} {N} Hotel", "{W} Suites", "{W} Lodge", "The {A} {N}", "{W} Palace")
_RESTAURANT = ("{W}'s Kitchen", "The {A} {N}", "Café {W}", "{W} Bistro", "Trattoria {W}", "{N} & {N2}", "{W} Grill")
_ATTRACTION = {
    "museum": ("Museum of {T}", "{W} Museum", "{W} Museum of {T}"),
    "gallery": ("{W} Gallery", "Gallery of {T}"),
    "park": ("{W} Park", "{A} Park"),
    "garden": ("{W} Gardens", "{A} {N} Garden"),
    "market": ("{W} Market", "Old {N} Market"),
    "castle": ("{W} Castle", "Castle {W}"),
    "tower": ("{W} Tower", "The {A} Tower"),
    "aquarium": ("{W} Aquarium",),
    "theatre": ("{W} Theatre", "The {A} Stage"),
    "cathedral": ("{W} Cathedral", "Cathedral of {W}"),
    "beach": ("{W} Beach", "{A} Sands"),
    "zoo": ("{W} Zoo",),
}
ATTRACTION_CATEGORIES: tuple[str, ...] = tuple(_ATTRACTION)
INDOOR_CATEGORIES = frozenset({"museum", "gallery", "aquarium", "theatre", "cathedral"})


def _pick(rng: random.Random, seq: tuple[str, ...]) -> str:
    return seq[int(rng.random() * len(seq))]  # 3x cheaper than randrange; names are a hot path


def word(rng: random.Random, syllables: int | None = None) -> str:
    """A pronounceable capitalized word of 2–3 syllables."""
    n = syllables or rng.randrange(2, 4)
    parts = [_pick(rng, _ONSETS) + _pick(rng, _VOWELS) + (_pick(rng, _CODAS) if i == n - 1 else "") for i in range(n)]
    return "".join(parts).capitalize()


def city_name(rng: random.Random) -> str:
    """A place name: a generated stem, usually with a place suffix."""
    stem = word(rng, rng.randrange(1, 3))
    return stem + _pick(rng, _PLACE_SUFFIXES) if rng.random() < 0.75 else word(rng)


def _fill(rng: random.Random, pattern: str) -> str:
    """Fill only the placeholders the pattern uses (each draw costs; this is the hot path)."""
    vals: dict[str, str] = {}
    if "{W}" in pattern:
        vals["W"] = word(rng)
    if "{A}" in pattern:
        vals["A"] = _pick(rng, _ADJECTIVES)
    if "{N}" in pattern:
        vals["N"] = _pick(rng, _NOUNS)
    if "{N2}" in pattern:
        i = int(rng.random() * (len(_NOUNS) - 1))
        vals["N2"] = [n for n in _NOUNS if n != vals["N"]][i]
    if "{T}" in pattern:
        vals["T"] = _pick(rng, _TOPICS)
    return pattern.format(**vals)


def hotel_name(rng: random.Random) -> str:
    """A hotel name."""
    return _fill(rng, _pick(rng, _HOTEL))


def restaurant_name(rng: random.Random) -> str:
    """A restaurant name."""
    return _fill(rng, _pick(rng, _RESTAURANT))


def attraction_name(rng: random.Random, category: str) -> str:
    """An attraction name of a category."""
    return _fill(rng, _pick(rng, _ATTRACTION[category]))


class NameBook:
    """Draws names that are unique within one world (and never collide across kinds)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[str] = set()

    def unique(self, make: object, *args: object) -> str:
        """Call ``make(rng, *args)`` until it yields an unused name."""
        for _ in range(1000):
            name = make(self.rng, *args)  # type: ignore[operator]
            if name not in self.used:
                self.used.add(name)
                return name
        raise RuntimeError("name space exhausted")  # practically unreachable
