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
    return {
        "theme": theme.id,
        "difficulty": difficulty,
        "period": [start.isoformat(), end.isoformat()],
        "tables": tables,
    }


def _cell(value: Any, col: Col) -> str:
    if isinstance(value, float):
        return f"{value:.{col.dec}f}"
    return str(value)


def render(table: Table, columns: list[str], rows: list[list[Any]], fmt: str) -> str:
    """A table as file text: CSV with a header, or a JSON array with one object per line."""
    cols = [table.col(c) for c in columns]
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
            self.files[stored["file"]] = render(t, cols, stored["rows"], t.fmt)
            self.file_of[t.role] = stored["file"]
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

    def name_of(self, role: str) -> str:
        """The display-name column of an entity or actor table."""
        return self.roles[role].by_kind("name")[0].name


__all__ = ["SIZES", "CodeWorld", "generate", "render"]
