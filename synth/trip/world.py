"""Trip-planning worlds: cities, hotels, restaurants, attractions, transport and weather.

A world is a pure function of (seed, difficulty). Difficulty sets its size (cities, venues per
city), the list tools' page size, and how many distractor venues (near-namesakes placed in
other cities) it holds. Prices correlate with stars and ratings the way real ones do, so
cheap-and-good is rare and a tight budget genuinely constrains the plan.

The world object answers the lookups the tools and the itinerary verifier need (``city``,
``venue``, ``transport``, ``weather``, and ``closest`` for hints) from indices built once in
``__init__``; its JSON data is what a dataset stores, and ``TripWorld(data)`` rebuilds it.
Names follow the one name rule (:mod:`toolgym.envs.naming`): the world stores every name in
canonical form (NFC, no surrounding whitespace; a world that does not is refused), and every
lookup matches a name after normalizing it the same way, case-sensitively.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from pydantic import BaseModel, ConfigDict

from toolgym.envs import naming
from toolgym.errors import ConfigError
from toolgym.synth import names as nm

CUISINES = (
    "italian",
    "japanese",
    "mexican",
    "indian",
    "french",
    "thai",
    "greek",
    "lebanese",
    "korean",
    "spanish",
    "vegetarian",
    "seafood",
)
CONDITIONS = ("sunny", "cloudy", "rain", "storm", "windy", "snow")
_CONDITION_CUM = (0.34, 0.60, 0.80, 0.87, 0.96, 1.0)  # cumulative: P = .34 .26 .20 .07 .09 .04
MODES = ("train", "bus", "flight", "ferry")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
WEATHER_DAYS = 28
_HINT_CACHE = 4096  # memoized "did you mean" hints per world


class WorldConfig(BaseModel):
    """Sizes of a world at one difficulty."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cities: int
    hotels: tuple[int, int]
    restaurants: tuple[int, int]
    attractions: tuple[int, int]
    page_size: int | None
    distractors: int
    edge_p: float


WORLD_CONFIGS: dict[int, WorldConfig] = {
    1: WorldConfig(
        cities=4, hotels=(3, 4), restaurants=(4, 5), attractions=(3, 4), page_size=None, distractors=0, edge_p=0.7
    ),
    2: WorldConfig(
        cities=5, hotels=(3, 5), restaurants=(4, 6), attractions=(3, 5), page_size=None, distractors=1, edge_p=0.6
    ),
    3: WorldConfig(
        cities=6, hotels=(4, 5), restaurants=(5, 7), attractions=(4, 5), page_size=4, distractors=2, edge_p=0.55
    ),
    4: WorldConfig(
        cities=7, hotels=(4, 6), restaurants=(5, 7), attractions=(4, 6), page_size=4, distractors=3, edge_p=0.5
    ),
    5: WorldConfig(
        cities=8, hotels=(5, 6), restaurants=(6, 8), attractions=(5, 6), page_size=3, distractors=4, edge_p=0.45
    ),
}


def weekday(date: str) -> str:
    """``"Mon"``… for an ISO date."""
    return WEEKDAYS[dt.date.fromisoformat(date).weekday()]


def add_days(date: str, n: int) -> str:
    """ISO date ``n`` days after ``date``."""
    return (dt.date.fromisoformat(date) + dt.timedelta(days=n)).isoformat()


def _closed(rng: random.Random, p: float) -> list[str]:
    return [d for d in WEEKDAYS if rng.random() < p]


def generate(seed: int, difficulty: int) -> dict[str, Any]:
    """The JSON data of a world."""
    cfg = WORLD_CONFIGS[difficulty]
    rng = random.Random(seed)
    book = nm.NameBook(rng)
    cities = [book.unique(nm.city_name) for _ in range(cfg.cities)]
    hotels: list[dict[str, Any]] = []
    restaurants: list[dict[str, Any]] = []
    attractions: list[dict[str, Any]] = []

    def rating(quality: float) -> float:
        return min(5.0, max(1.5, round(2.4 + 2.6 * quality + rng.gauss(0, 0.35), 1)))

    for city in cities:
        for _ in range(rng.randint(*cfg.hotels)):
            stars = rng.randint(2, 5)
            q = rng.betavariate(2, 2)
            price = int(round(40 + 45 * stars + 160 * q + rng.gauss(0, 25), -1))
            hotels.append(
                {
                    "name": book.unique(nm.hotel_name),
                    "city": city,
                    "stars": stars,
                    "price": max(30, price),
                    "rating": rating(0.5 * q + 0.1 * stars),
                }
            )
        for _ in range(rng.randint(*cfg.restaurants)):
            q = rng.betavariate(2, 2)
            restaurants.append(
                {
                    "name": book.unique(nm.restaurant_name),
                    "city": city,
                    "cuisine": rng.choice(CUISINES),
                    "price": int(max(8, round(12 + 70 * q + rng.gauss(0, 8)))),
                    "rating": rating(q),
                    "closed_on": _closed(rng, 0.12),
                }
            )
        for _ in range(rng.randint(*cfg.attractions)):
            cat = rng.choice(nm.ATTRACTION_CATEGORIES)
            q = rng.betavariate(2, 2)
            attractions.append(
                {
                    "name": book.unique(nm.attraction_name, cat),
                    "city": city,
                    "category": cat,
                    "indoor": cat in nm.INDOOR_CATEGORIES,
                    "ticket": int(max(0, round(5 + 45 * q + rng.gauss(0, 6)))),
                    "rating": rating(q),
                    "closed_on": _closed(rng, 0.12),
                }
            )
    # Distractors: a namesake of a real venue placed in another city, so a policy that matches
    # names loosely (or skips checking a venue's city) picks the wrong one.
    for _ in range(cfg.distractors):
        pool = rng.choice((hotels, restaurants, attractions))
        src = rng.choice(pool)
        other = [c for c in cities if c != src["city"]]
        twin = dict(src, city=rng.choice(other))
        twin["name"] = book.unique(lambda r, n=src["name"]: f"{n} {nm.word(r, 1)}")
        twin["price" if "price" in twin else "ticket"] = int(twin.get("price", twin.get("ticket", 0)) * 0.8)
        if "closed_on" in twin:
            twin["closed_on"] = list(twin["closed_on"])
        pool.append(twin)
    transport = _transport(rng, cities, cfg.edge_p)
    start = dt.date(2026, 1, 5) + dt.timedelta(days=rng.randrange(330))
    dates = [(start + dt.timedelta(days=i)).isoformat() for i in range(WEATHER_DAYS)]
    weather = {c: {d: _weather(rng) for d in dates} for c in cities}
    return {
        "cities": cities,
        "hotels": hotels,
        "restaurants": restaurants,
        "attractions": attractions,
        "transport": transport,
        "weather": weather,
        "dates": dates,
        "page_size": cfg.page_size,
    }


def _weather(rng: random.Random) -> dict[str, Any]:
    cond = rng.choices(CONDITIONS, cum_weights=_CONDITION_CUM)[0]
    high = rng.randrange(-2, 34) if cond != "snow" else rng.randrange(-8, 3)
    return {"condition": cond, "high_c": high, "low_c": high - rng.randrange(4, 12)}


def _transport(rng: random.Random, cities: list[str], p: float) -> list[dict[str, Any]]:
    """Symmetric connections: a random spanning tree plus extra edges with probability ``p``."""
    n = len(cities)
    order = rng.sample(range(n), n)
    edges = {tuple(sorted((order[i], order[rng.randrange(i)]))) for i in range(1, n)}
    edges |= {(i, j) for i in range(n) for j in range(i + 1, n) if rng.random() < p}
    out = []
    for i, j in sorted(edges):
        for mode in sorted(rng.sample(range(len(MODES)), rng.randint(1, 2))):
            hours = round(rng.uniform(0.7, 6.5) * (0.4 if MODES[mode] == "flight" else 1.0) + 0.3, 1)
            price = int(round(8 + hours * (14 if MODES[mode] != "flight" else 60) + rng.gauss(0, 5)))
            out.append({"a": cities[i], "b": cities[j], "mode": MODES[mode], "price": max(5, price), "hours": hours})
    return out


class TripWorld:
    """A trip world with its lookup indices (read-only: tasks never write to it)."""

    def __init__(self, data: dict[str, Any]):
        self.data = data
        self.cities: list[str] = data["cities"]
        self.city_set = set(self.cities)
        self.page_size: int | None = data["page_size"]
        self.by_kind: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self.venues: dict[str, tuple[str, dict[str, Any]]] = {}
        for kind, key in (("hotel", "hotels"), ("restaurant", "restaurants"), ("attraction", "attractions")):
            per_city: dict[str, list[dict[str, Any]]] = {c: [] for c in self.cities}
            for rec in data[key]:
                per_city[rec["city"]].append(rec)
                self.venues[rec["name"]] = (kind, rec)
            self.by_kind[kind] = per_city
        for name in (*self.cities, *self.venues):
            if not naming.is_canonical(name):
                raise ConfigError(f"world name {name!r} is not canonical (Unicode NFC, no surrounding whitespace)")
        self._pools: dict[str | None, naming.NamePool] = {}
        self._hints: dict[tuple[str, str | None], str | None] = {}
        self.links: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for e in data["transport"]:
            opt = {"mode": e["mode"], "price": e["price"], "hours": e["hours"]}
            self.links.setdefault((e["a"], e["b"]), []).append(opt)
            self.links.setdefault((e["b"], e["a"]), []).append(opt)

    def to_json(self) -> dict[str, Any]:
        """The world's JSON data."""
        return self.data

    # The lookups below are the protocol the itinerary verifier relies on; each matches names
    # by the name rule (one dict hit for an exact name, so the hot path stays a lookup).
    def city(self, name: str) -> str | None:
        """The world's spelling of a city name, or None if no city matches."""
        return naming.resolve(self.city_set, name)

    def venue(self, name: str) -> tuple[str, dict[str, Any]] | None:
        """(kind, record) of the venue a name matches, or None."""
        return naming.lookup(self.venues, name)

    def transport(self, a: str, b: str) -> list[dict[str, Any]]:
        """Connection options between two cities (both directions are the same)."""
        hit = self.links.get((a, b))
        if hit is None:
            hit = self.links.get((naming.canon(a), naming.canon(b)))
        return hit or []

    def weather(self, city: str, date: str) -> dict[str, Any] | None:
        """The forecast of a city on a date."""
        c = self.city(city)
        return self.data["weather"].get(c, {}).get(date) if c is not None else None

    def closest(self, name: str, kind: str | None = None) -> str | None:
        """The name closest to ``name`` among the cities (``kind="city"``) or the venues of a kind.

        Hints are memoized per world (random gate agents repeat their misses), up to a bound.

        Args:
            name: The name as written.
            kind: ``"city"``, ``"hotel"``, ``"restaurant"``, ``"attraction"``, or None for any venue.
        """
        key = (name, kind)
        if key in self._hints:
            return self._hints[key]
        if kind not in self._pools:
            if kind == "city":
                self._pools[kind] = naming.NamePool(self.cities)
            else:
                self._pools[kind] = naming.NamePool(n for n, (k, _) in self.venues.items() if kind is None or k == kind)
        hit = self._pools[kind].closest(name)
        if len(self._hints) >= _HINT_CACHE:
            self._hints.clear()
        self._hints[key] = hit
        return hit

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_hints": {}, "_pools": {}}
