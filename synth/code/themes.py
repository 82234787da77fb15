"""Themes of the code-interpreter family: the schema of each world's data files, declaratively.

Every theme is the same *star schema* under different names, so one set of task kinds serves
them all:

* ``E`` — the entity table (products, stations, books, docks): generated names, a category,
  numbers, and a *level* (stock, battery, copies, bikes) that the event log moves;
* ``A`` — the actor table (customers, sensor models, members, riders): names and categories;
* ``F`` — the fact table (orders, readings, loans, trips): a date, a foreign key to ``E`` and
  one to ``A``, categorical and numeric columns. Numeric columns marked ``effect`` are scaled
  by a hidden per-entity factor, so groups really differ and "which group is largest" has a
  clear answer;
* ``L`` — an event log over ``E`` (restocks and sales, charges and transmissions…) that a
  simulation task replays in timestamp order.

A column's ``phrase`` is how prompts speak of it; ``additive`` says whether a sum means
something (a total quantity does, a total temperature does not); ``fine`` marks columns with
enough distinct values that a median, maximum or minimum cannot be guessed. Entity names and
some category domains (cities, regions, districts, vendors) are generated per world with
:mod:`toolgym.synth.names`, so no answer can be memorized across worlds; small closed
vocabularies (order status, membership type) stay fixed because real data has them too.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from toolgym.synth import names as nm

Maker = Callable[[random.Random], str]


def person(rng: random.Random) -> str:
    """A person's name: generated first and last name."""
    return f"{nm.word(rng, 2)} {nm.word(rng)}"


def _product(rng: random.Random) -> str:
    return f"{nm.word(rng)} {rng.choice(_GOODS)}"


def _station(rng: random.Random) -> str:
    return f"{nm.word(rng)} {rng.choice(('Ridge', 'Point', 'Hill', 'Lake', 'Pass', 'Field', 'Bay', 'Crag'))}"


def _dock(rng: random.Random) -> str:
    return f"{nm.word(rng)} St & {nm.word(rng, 2)} Ave"


def _model(rng: random.Random) -> str:
    return f"{nm.word(rng, 2)}-{rng.randrange(100, 1000)}"


def _vendor(rng: random.Random) -> str:
    return f"{nm.word(rng)} {rng.choice(('Instruments', 'Labs', 'Systems', 'Sensing'))}"


def _title(rng: random.Random) -> str:
    pattern = rng.choice(("The {A} {N}", "{W} of {T}", "A {N} for {W}", "The {W} {N}", "{T} and {T2}"))
    topics = rng.sample(_TOPICS, 2)
    return pattern.format(A=rng.choice(_ADJ), N=rng.choice(_NOUNS), W=nm.word(rng), T=topics[0], T2=topics[1].lower())


_GOODS = (
    "Kettle", "Lamp", "Backpack", "Blender", "Speaker", "Notebook", "Tent", "Jacket", "Planter",
    "Headphones", "Mug", "Drill", "Scarf", "Puzzle", "Skillet", "Charger", "Helmet", "Easel",
)  # fmt: skip
_ADJ = ("Silent", "Last", "Hidden", "Northern", "Broken", "Golden", "Winter", "Distant", "Paper", "Salt")
_NOUNS = ("Harbor", "Orchard", "Letter", "Garden", "Lantern", "Voyage", "Archive", "Meadow", "Tide", "Clock")
_TOPICS = ("Rivers", "Glass", "Stars", "Maps", "Salt", "Bells", "Silk", "Stone", "Light", "Wolves", "Ash", "Rain")


@dataclass(frozen=True)
class Col:
    """One column of a table, with how to generate it and how prompts name it.

    Attributes:
        name: Column name as it appears in the file.
        kind: ``id`` | ``name`` | ``fk`` | ``cat`` | ``int`` | ``float`` | ``date`` | ``ts`` |
            ``event`` | ``level``.
        phrase: Words for prompts ("unit price", "days kept").
        values: A fixed category vocabulary (``cat``), or the two event names (``event``: the
            one that adds, then the one that removes).
        maker: Generates category values (``cat``, with ``n`` values per world) or names.
        n: Range of the number of generated category values per world.
        lo: Lower bound of a number.
        hi: Upper bound of a number.
        dec: Decimals of a float (the files show exactly this many).
        dist: ``uniform`` | ``skew`` (small values common) | ``lognormal`` | ``gauss``.
        effect: Scaled by the row's entity factor (fact tables only).
        additive: A sum over rows is meaningful.
        fine: Many distinct values (median/max/min questions allowed).
        ref: Target role of a foreign key (``E`` or ``A``).
        unit: ``(base, alt, factor, alt_decimals)`` for a fact column whose messy files write
            each value with a unit: ``"4.50 USD"`` or, converted, ``"450 cents"`` (value times
            ``factor``, shown with ``alt_decimals``). None: never written with a unit.
    """

    name: str
    kind: str
    phrase: str = ""
    values: tuple[str, ...] = ()
    maker: Maker | None = None
    n: tuple[int, int] = (0, 0)
    lo: float = 0.0
    hi: float = 0.0
    dec: int = 0
    dist: str = "uniform"
    effect: bool = False
    additive: bool = True
    fine: bool = False
    ref: str = ""
    unit: tuple[str, str, float, int] | None = None


@dataclass(frozen=True)
class Table:
    """One table of a theme (a file in the workspace)."""

    role: str  # E | A | F | L
    name: str  # also the file stem and the reference program's variable name
    fmt: str  # csv | json
    noun: str
    plural: str
    cols: tuple[Col, ...]

    @property
    def key(self) -> str:
        """The id column."""
        return self.cols[0].name

    def col(self, name: str) -> Col:
        """A column by name."""
        return next(c for c in self.cols if c.name == name)

    def by_kind(self, *kinds: str) -> list[Col]:
        """Columns of the given kinds, in schema order."""
        return [c for c in self.cols if c.kind in kinds]


@dataclass(frozen=True)
class Theme:
    """A data domain: four tables and the words prompts use for it."""

    id: str
    place: str  # "an online shop"
    tables: tuple[Table, ...]
    derived: tuple[str, str, str] | None = None  # (phrase, F column, E column) multiplied

    def table(self, role: str) -> Table:
        """The table playing ``role``."""
        return next(t for t in self.tables if t.role == role)


def _num(name: str, phrase: str, lo: float, hi: float, dec: int = 0, **kw: object) -> Col:
    return Col(name, "float" if dec else "int", phrase, lo=lo, hi=hi, dec=dec, **kw)  # type: ignore[arg-type]


SHOP = Theme(
    "shop",
    "an online shop",
    (
        Table("E", "products", "json", "product", "products", (
            Col("product_id", "id", values=("P",)),
            Col("name", "name", "name", maker=_product),
            Col("category", "cat", "category", values=(
                "kitchen", "garden", "toys", "sports", "beauty", "office", "audio", "pets", "outdoor", "tools")),
            _num("price", "unit price", 3, 400, 2, dist="lognormal", fine=True),
            _num("rating", "rating", 1.5, 5.0, 1, additive=False),
            Col("stock", "level", "stock", lo=0, hi=30),
        )),
        Table("A", "customers", "csv", "customer", "customers", (
            Col("customer_id", "id", values=("C",)),
            Col("name", "name", "name", maker=person),
            Col("city", "cat", "city", maker=nm.city_name, n=(5, 8)),
            Col("tier", "cat", "loyalty tier", values=("bronze", "silver", "gold", "platinum")),
        )),
        Table("F", "orders", "csv", "order", "orders", (
            Col("order_id", "id", values=("O",)),
            Col("date", "date", "order date"),
            Col("customer_id", "fk", ref="A"),
            Col("product_id", "fk", ref="E"),
            _num("quantity", "quantity", 1, 12, dist="skew", effect=True),
            _num("discount_pct", "discount (percent)", 0, 35, additive=False),
            _num("shipping_fee", "shipping fee", 0, 25, 2, fine=True, unit=("USD", "cents", 100, 0)),
            Col("status", "cat", "status", values=("delivered", "shipped", "cancelled", "returned")),
        )),
        Table("L", "inventory_log", "csv", "inventory event", "inventory events", (
            Col("ts", "ts", "time"),
            Col("product_id", "fk", ref="E"),
            Col("event", "event", "event", values=("restock", "sale")),
            _num("quantity", "quantity", 1, 6),
        )),
    ),
    derived=("order value (quantity times the product's unit price)", "quantity", "price"),
)  # fmt: skip

SENSORS = Theme(
    "sensors",
    "a network of weather stations",
    (
        Table("E", "stations", "json", "station", "stations", (
            Col("station_id", "id", values=("ST",)),
            Col("name", "name", "name", maker=_station),
            Col("region", "cat", "region", maker=nm.city_name, n=(4, 7)),
            _num("elevation_m", "elevation (m)", 5, 2400, fine=True),
            Col("battery", "level", "battery charge (units)", lo=4, hi=40),
        )),
        Table("A", "models", "csv", "sensor model", "sensor models", (
            Col("model_id", "id", values=("M",)),
            Col("name", "name", "name", maker=_model),
            Col("vendor", "cat", "vendor", maker=_vendor, n=(3, 6)),
            Col("accuracy_class", "cat", "accuracy class", values=("A", "B", "C")),
        )),
        Table("F", "readings", "csv", "reading", "readings", (
            Col("reading_id", "id", values=("R",)),
            Col("date", "date", "date"),
            Col("station_id", "fk", ref="E"),
            Col("model_id", "fk", ref="A"),
            _num("temperature_c", "temperature (°C)", -25, 42, 1, dist="gauss", effect=True, additive=False,
                 fine=True),
            _num("humidity_pct", "relative humidity (percent)", 5, 100, additive=False),
            _num("rain_mm", "rainfall (mm)", 0, 60, 1, dist="skew", effect=True, fine=True,
                 unit=("mm", "cm", 0.1, 2)),
            Col("flag", "cat", "quality flag", values=("ok", "suspect", "error")),
        )),
        Table("L", "power_log", "csv", "power event", "power events", (
            Col("ts", "ts", "time"),
            Col("station_id", "fk", ref="E"),
            Col("event", "event", "event", values=("charge", "transmit")),
            _num("units", "units", 1, 5),
        )),
    ),
)  # fmt: skip

LIBRARY = Theme(
    "library",
    "a public library",
    (
        Table("E", "books", "json", "book", "books", (
            Col("book_id", "id", values=("B",)),
            Col("title", "name", "title", maker=_title),
            Col("genre", "cat", "genre", values=(
                "mystery", "history", "poetry", "science", "fantasy", "biography", "travel", "cooking")),
            _num("pages", "page count", 60, 950, fine=True),
            _num("year", "publication year", 1950, 2025, additive=False),
            Col("copies", "level", "copies on the shelf", lo=0, hi=5),
        )),
        Table("A", "members", "csv", "member", "members", (
            Col("member_id", "id", values=("M",)),
            Col("name", "name", "name", maker=person),
            Col("district", "cat", "district", maker=nm.city_name, n=(4, 7)),
            Col("membership", "cat", "membership type", values=("student", "adult", "senior", "family")),
        )),
        Table("F", "loans", "csv", "loan", "loans", (
            Col("loan_id", "id", values=("L",)),
            Col("date", "date", "loan date"),
            Col("book_id", "fk", ref="E"),
            Col("member_id", "fk", ref="A"),
            _num("days_kept", "days kept", 1, 60, dist="skew", effect=True),
            _num("late_fee", "late fee", 0, 18, 2, dist="skew", fine=True, unit=("EUR", "cents", 100, 0)),
            Col("channel", "cat", "checkout channel", values=("desk", "kiosk", "app")),
        )),
        Table("L", "circulation_log", "csv", "circulation event", "circulation events", (
            Col("ts", "ts", "time"),
            Col("book_id", "fk", ref="E"),
            Col("event", "event", "event", values=("return", "borrow")),
            _num("copies", "copies", 1, 2),
        )),
    ),
)  # fmt: skip

BIKES = Theme(
    "bikes",
    "a city bike-share scheme",
    (
        Table("E", "docks", "csv", "dock", "docks", (
            Col("dock_id", "id", values=("D",)),
            Col("name", "name", "name", maker=_dock),
            Col("zone", "cat", "zone", maker=nm.city_name, n=(4, 7)),
            _num("capacity", "capacity (bikes)", 8, 40),
            Col("bikes", "level", "bikes docked", lo=0, hi=12),
        )),
        Table("A", "riders", "json", "rider", "riders", (
            Col("rider_id", "id", values=("U",)),
            Col("name", "name", "name", maker=person),
            Col("plan", "cat", "plan", values=("casual", "monthly", "annual", "student")),
            Col("age_band", "cat", "age band", values=("18-25", "26-40", "41-60", "60+")),
        )),
        Table("F", "trips", "csv", "trip", "trips", (
            Col("trip_id", "id", values=("T",)),
            Col("date", "date", "trip date"),
            Col("dock_id", "fk", ref="E"),
            Col("rider_id", "fk", ref="A"),
            _num("duration_min", "duration (minutes)", 2, 120, dist="skew", effect=True),
            _num("distance_km", "distance (km)", 0.3, 25, 2, dist="lognormal", effect=True, fine=True,
                 unit=("km", "m", 1000, 0)),
            Col("bike_type", "cat", "bike type", values=("classic", "electric", "cargo")),
        )),
        Table("L", "dock_log", "csv", "dock event", "dock events", (
            Col("ts", "ts", "time"),
            Col("dock_id", "fk", ref="E"),
            Col("event", "event", "event", values=("dock", "undock")),
            _num("bikes", "bikes", 1, 3),
        )),
    ),
)  # fmt: skip

THEMES: dict[str, Theme] = {t.id: t for t in (SHOP, SENSORS, LIBRARY, BIKES)}
