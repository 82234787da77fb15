"""Code-interpreter worlds: a theme's tables generated from a seed, and the files they become.

A world is a pure function of (seed, difficulty): the theme, the 12-month period the data
covers, and every row come from one ``random.Random(seed)``. Difficulty sets the sizes (the
fact table grows from 120 rows to 1,600, so no file can be read by eye and a policy must
compute) and which tables exist: ``E``, ``F`` at difficulty 1 (the fact table then has no actor
column), the actor table ``A`` from 2, the event log ``L`` from 3.

The stored JSON holds typed rows (ints, floats already rounded to the column's decimals,
strings); :class:`CodeWorld` renders the workspace files from them deterministically (CSV with
fixed decimals, JSON arrays with one object per line so paging by lines works), and keeps the
typed rows for the generator's own computations. A float rendered as ``"12.50"`` parses back to
exactly ``round(x, 2)``, so the files and the typed rows agree bit for bit.

**Mess** (:data:`MESS`, from difficulty 2): the fact table's files are a raw export. The typed
rows stay the truth (a missing cell is None there; a repeat is not a row), and the stored
``mess`` says how the file departs from them: empty cells, exact repeats at later positions,
dates in other unambiguous formats (:data:`DATE_FORMATS`), and the theme's unit column written
with a unit on every value, some converted (``"4.50 USD"`` / ``"450 cents"``). A world stored
before the mess existed has no ``mess`` entry and renders clean.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
from typing import Any

from toolgym.synth import names as nm
from toolgym.synth.code.themes import THEMES, Col, Table, Theme

#: Rows per table role at each difficulty (E entities, A actors, F facts, L events).
SIZES: dict[int, dict[str, int]] = {
    1: {"E": 24, "F": 120},
    2: {"E": 30, "A": 25, "F": 200},
    3: {"E": 36, "A": 40, "F": 450, "L": 160},
    4: {"E": 45, "A": 60, "F": 900, "L": 320},
    5: {"E": 60, "A": 80, "F": 1600, "L": 600},
}
MONTHS = 12
#: Per difficulty, the mess of the fact table's files (the typed rows stay the truth):
#: ``missing`` share of category and number cells left empty (the typed row holds None),
#: ``dups`` share of rows repeated exactly elsewhere in the file, ``dates`` share of dates in a
#: non-ISO format, ``units`` whether the theme's unit column carries a unit on every value
#: (some converted to the other unit).
MESS: dict[int, dict[str, float]] = {
    1: {"missing": 0.0, "dups": 0.0, "dates": 0.0, "units": 0.0},
    2: {"missing": 0.03, "dups": 0.02, "dates": 0.0, "units": 0.0},
    3: {"missing": 0.04, "dups": 0.03, "dates": 0.3, "units": 0.0},
    4: {"missing": 0.05, "dups": 0.04, "dates": 0.35, "units": 1.0},
    5: {"missing": 0.06, "dups": 0.05, "dates": 0.4, "units": 1.0},
}
#: From this difficulty the event log also repeats some events exactly (its only mess).
LOG_REPEATS_FROM = 4
#: Date formats of messy files besides ISO (each unambiguous on its own): ``2024/03/05``,
#: ``5 Mar 2024``, ``Mar 5, 2024``.
DATE_FORMATS = ("iso", "slash", "dmy", "mdy")
_MON = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _number(rng: random.Random, c: Col, factor: float = 1.0) -> float | int:
    lo, hi = c.lo, c.hi
    u = rng.random()
    if c.dist == "skew":
        x = lo + (hi - lo) * u**2.5
    elif c.dist == "lognormal":
        x = max(lo, 0.5) * (hi / max(lo, 0.5)) ** rng.betavariate(2, 3)
    elif c.dist == "gauss":
        x = rng.gauss((lo + hi) / 2, (hi - lo) / 7) + (factor - 1.0) * (hi - lo) / 2
        factor = 1.0
    else:
        x = lo + (hi - lo) * u
    x = min(hi, max(lo, x * factor))
    return round(x, c.dec) if c.dec else int(round(x))


def _columns(theme: Theme, role: str, roles: set[str]) -> list[Col]:
    """A table's columns, without foreign keys to tables this world does not have."""
    return [c for c in theme.table(role).cols if not (c.kind == "fk" and c.ref not in roles)]


def generate(seed: int, difficulty: int) -> dict[str, Any]:
    """The JSON data of a world."""
    rng = random.Random(seed)
    theme = THEMES[sorted(THEMES)[rng.randrange(len(THEMES))]]
    sizes = SIZES[difficulty]
    roles = set(sizes)
    book = nm.NameBook(rng)
    k = rng.randrange(27)  # the data covers 12 months starting in 2023-01 … 2025-03
    start = dt.date(2023 + k // 12, k % 12 + 1, 1)
    after = dt.date(start.year + (start.month - 1 + MONTHS) // 12, (start.month - 1 + MONTHS) % 12 + 1, 1)
    end = after - dt.timedelta(days=1)
    domains: dict[str, tuple[str, ...]] = {}  # per-world category vocabularies
    for t in theme.tables:
        for c in t.cols:
            if c.kind == "cat" and c.maker is not None:
                domains[c.name] = tuple(book.unique(c.maker) for _ in range(rng.randint(*c.n)))
            elif c.kind == "cat":
                k = max(3, min(len(c.values), rng.randint(len(c.values) - 3, len(c.values))))
                domains[c.name] = tuple(rng.sample(c.values, k)) if len(c.values) > 4 else c.values
    tables: dict[str, dict[str, Any]] = {}
    keys: dict[str, list[str]] = {}
    weights: dict[str, list[float]] = {}
    factors: list[float] = []
    for role in ("E", "A", "F", "L"):
        if role not in roles:
            continue
        t = theme.table(role)
        cols = _columns(theme, role, roles)
        n = sizes[role]
        cat_w = {c.name: [rng.random() + 0.2 for _ in domains[c.name]] for c in cols if c.kind == "cat"}
        rows: list[list[Any]] = []
        stamps = sorted(rng.sample(range(int((end - start).days + 1) * 86400), n)) if role == "L" else []
        for i in range(n):
            row: list[Any] = []
            ent = -1
            for c in cols:
                if c.kind == "id":
                    row.append(f"{c.values[0]}{i + 1:0{len(str(n)) + 1}d}")
                elif c.kind == "name":
                    row.append(book.unique(c.maker))
                elif c.kind == "cat":
                    row.append(rng.choices(domains[c.name], weights=cat_w[c.name])[0])
                elif c.kind == "fk":
                    j = rng.choices(range(len(keys[c.ref])), weights=weights[c.ref])[0]
                    ent = j if c.ref == "E" else ent
                    row.append(keys[c.ref][j])
                elif c.kind == "date":
                    row.append((start + dt.timedelta(days=rng.randrange((end - start).days + 1))).isoformat())
                elif c.kind == "ts":
                    stamp = dt.datetime.combine(start, dt.time()) + dt.timedelta(seconds=stamps[i])
                    row.append(stamp.isoformat())
                elif c.kind == "event":
                    row.append(c.values[1] if rng.random() < 0.56 else c.values[0])
                elif c.kind == "level":
                    row.append(rng.randint(int(c.lo), int(c.hi)))
                else:
                    row.append(_number(rng, c, factors[ent] if c.effect and ent >= 0 else 1.0))
            rows.append(row)
        if role in ("E", "A"):
            keys[role] = [r[0] for r in rows]
            # Zipf-like popularity in a random order: some entities are much busier than others.
            w = [1.0 / (k + 1) ** 0.8 for k in range(n)]
            rng.shuffle(w)
            weights[role] = w
        if role == "E":
            factors = [rng.lognormvariate(0.0, 0.35) for _ in range(n)]
        if role == "L":
            rng.shuffle(rows)  # the log is not in time order: a simulation must sort it first
        tables[t.name] = {"file": f"{t.name}.{t.fmt}", "columns": [c.name for c in cols], "rows": rows}
        mess = _table_mess(rng, role, cols, rows, difficulty)
        if mess is not None:
            tables[t.name]["mess"] = mess
    return {
        "theme": theme.id,
        "difficulty": difficulty,
        "period": [start.isoformat(), end.isoformat()],
        "tables": tables,
    }


def _mess(rng: random.Random, cols: list[Col], rows: list[list[Any]], mess: dict[str, float]) -> dict[str, Any]:
    """Draw the fact table's mess; blanks the missing cells of ``rows`` in place (None).

    Returns ``{"dups": [[row, position], …], "dates": [format index per row] | None,
    "units": [1 where the value is converted, per row] | None}`` (what :func:`render` needs).
    """
    blankable = [j for j, c in enumerate(cols) if c.kind in ("cat", "int", "float")]
    for row in rows:
        for j in blankable:
            if rng.random() < mess["missing"]:
                row[j] = None
    dups = _repeats(rng, len(rows), mess["dups"])
    dates = [rng.randrange(1, 4) if rng.random() < mess["dates"] else 0 for _ in rows] if mess["dates"] else None
    unit = next((c for c in cols if c.unit is not None), None)
    alt = rng.uniform(0.15, 0.35)
    units = [int(rng.random() < alt) for _ in rows] if mess["units"] and unit is not None else None
    return {"dups": dups, "dates": dates, "units": units}


def _table_mess(
    rng: random.Random, role: str, cols: list[Col], rows: list[list[Any]], difficulty: int
) -> dict[str, Any] | None:
    """A table's mess (None: its file is clean): the fact table's (:func:`_mess`), or the log's repeats."""
    if role == "F":
        return _mess(rng, cols, rows, MESS[difficulty])
    if role == "L" and difficulty >= LOG_REPEATS_FROM:  # the log is exported twice in places too
        return {"dups": _repeats(rng, len(rows), MESS[difficulty]["dups"]), "dates": None, "units": None}
    return None


def _repeats(rng: random.Random, n: int, share: float) -> list[list[int]]:
    """``[row, position]`` pairs: ``share`` of ``n`` rows repeated exactly at a later position."""
    return sorted([i, rng.randint(i + 1, n)] for i in rng.sample(range(n), int(n * share)))


def _cell(value: Any, col: Col) -> str:
    if isinstance(value, float):
        return f"{value:.{col.dec}f}"
    return "" if value is None else str(value)


def show_date(iso: str, fmt: int) -> str:
    """An ISO date in one of :data:`DATE_FORMATS`."""
    d = dt.date.fromisoformat(iso)
    return [iso, f"{d.year}/{d.month:02d}/{d.day:02d}", f"{d.day} {_MON[d.month - 1]} {d.year}",
            f"{_MON[d.month - 1]} {d.day}, {d.year}"][fmt]  # fmt: skip


def show_unit(value: float | int, col: Col, converted: int) -> str:
    """A value written with its unit: ``"4.50 USD"``, or converted: ``"450 cents"``, ``"2,350 m"``."""
    assert col.unit is not None
    base, alt, factor, dec = col.unit
    if converted:
        return f"{value * factor:,.{dec}f} {alt}"
    return f"{value:,.{col.dec}f} {base}"


def _messy(cols: list[Col], rows: list[list[Any]], mess: dict[str, Any] | None) -> list[list[Any]]:
    """The rows as the files show them: dates and units formatted, duplicates inserted."""
    if not mess:
        return rows
    out: list[list[Any]] = []
    for i, r in enumerate(rows):
        row = list(r)
        for j, c in enumerate(cols):
            if row[j] is None:
                continue
            if c.kind == "date" and mess["dates"]:
                row[j] = show_date(row[j], mess["dates"][i])
            elif c.unit is not None and mess["units"]:
                row[j] = show_unit(row[j], c, mess["units"][i])
        out.append(row)
    for i, pos in reversed(mess["dups"]):  # later positions first, so earlier ones stay valid
        out.insert(pos, list(out[i]))
    return out


def render(
    table: Table, columns: list[str], rows: list[list[Any]], fmt: str, mess: dict[str, Any] | None = None
) -> str:
    """A table as file text: CSV with a header, or a JSON array with one object per line.

    ``mess`` (fact tables, see :func:`_mess`) writes dates and units as the messy export does
    and repeats rows; missing values are empty CSV cells or JSON nulls.
    """
    cols = [table.col(c) for c in columns]
    rows = _messy(cols, rows, mess)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow([_cell(v, c) for v, c in zip(r, cols, strict=True)])
        return buf.getvalue()
    lines = [json.dumps(dict(zip(columns, r, strict=True)), ensure_ascii=False) for r in rows]
    return "[\n" + ",\n".join("  " + line for line in lines) + "\n]\n"


class CodeWorld:
    """A world: typed rows by table role, plus the rendered workspace files (read-only)."""

    def __init__(self, data: dict[str, Any]):
        self.data = data
        self.theme: Theme = THEMES[data["theme"]]
        self.roles: dict[str, Table] = {}
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.files: dict[str, str] = {}
        self.file_of: dict[str, str] = {}
        for t in self.theme.tables:
            stored = data["tables"].get(t.name)
            if stored is None:
                continue
            self.roles[t.role] = t
            cols = stored["columns"]
            self.rows[t.role] = [dict(zip(cols, r, strict=True)) for r in stored["rows"]]
            self.files[stored["file"]] = render(t, cols, stored["rows"], t.fmt, stored.get("mess"))
            self.file_of[t.role] = stored["file"]
        # Memos of the generator's own computations (queries.py: condition masks, fk columns);
        # derived from the rows only, never part of the data.
        self.memo: dict[Any, Any] = {}
        # Lookups by id, for joins in the generator's own computations.
        self.by_id = {r: {row[self.roles[r].key]: row for row in self.rows[r]} for r in ("E", "A") if r in self.rows}

    def to_json(self) -> dict[str, Any]:
        """The world's JSON data."""
        return self.data

    def columns(self, role: str) -> list[str]:
        """The columns a table has in this world."""
        return list(self.data["tables"][self.roles[role].name]["columns"])

    def months(self) -> list[str]:
        """The ``YYYY-MM`` months the data covers, in order."""
        start = dt.date.fromisoformat(self.data["period"][0])
        return [f"{start.year + (start.month - 1 + k) // 12}-{(start.month - 1 + k) % 12 + 1:02d}" for k in range(12)]

    def messy(self, what: str, role: str = "F") -> bool:
        """Whether a table's file shows this mess (``missing dups dates units``; the log: ``dups``)."""
        mess = self.data["tables"][self.roles[role].name].get("mess") or {}
        if what == "missing":
            return any(v is None for r in self.rows["F"] for v in r.values())
        return bool(mess.get(what))

    def name_of(self, role: str) -> str:
        """The display-name column of an entity or actor table."""
        return self.roles[role].by_kind("name")[0].name


__all__ = ["SIZES", "CodeWorld", "generate", "render"]
