"""SQL analyst tasks over difficulty 1–5, each answered by one query of :mod:`toolgym.synth.sql.queries`.

Kinds by difficulty (:data:`KINDS`; a world that cannot host one falls back to easier kinds):

1. ``filter`` (rows of one table by an equality and a bound), ``total`` (a sum over a filter and
   a date range: a scalar);
2. ``group`` (count and total per value within a date range), ``top1`` (the key with the largest
   total: a row);
3. ``join_group`` (a join, a filter, an average per value of the joined table), ``top`` (the k
   largest totals over a join, ordered);
4. ``top_per_group`` (a window: per group the row with the largest measure), ``top`` with a date
   range and a ``HAVING`` count;
5. ``share`` (two joins, a filter on one, per group the count, the rows missing the measure, the
   total and its share of the grand total: a window over groups), ``monthly`` (per month the
   total and a running total: a window ordered by month).

Every question says how missing values count (the world's NULL layer makes them matter), that
dates are inclusive, and how ties break; it names tables and columns as the database does. The
expected answer is the query's result as ``run_sql`` shows it; a draft is dropped when that is
empty, holds a null, needs more rows than a result shows, or is too long to submit by hand
(:data:`MAX_ROWS`).

Gate answers are described in ``meta``: ``gate`` lists, per answer column, how the random gate draws
a plausible value from the world (``from``: a value of a column; ``sum``: the sum of k random values
of a column; ``int``/``num``: a range; ``month``: a month of a date column), ``bluff`` how the bluff
gate writes one without the world (``id:<prefix>``, ``text``, ``int``, ``num``, ``month``).
"""

from __future__ import annotations

import random
from typing import Any

from toolgym.spec import TaskDraft
from toolgym.synth.sql import engine
from toolgym.synth.sql.queries import sql_of
from toolgym.synth.sql.world import Column, SqlWorld, Table
from toolgym.synth.text import with_article

KINDS = {
    1: ["filter", "total"],
    2: ["group", "top1"],
    3: ["join_group", "top"],
    4: ["top_per_group", "top_having"],
    5: ["share", "monthly"],
}
#: Easiest first: a world that hosts no kind of the difficulty falls back along it.
FALLBACK = ["filter", "total", "group", "top1", "join_group", "top", "top_per_group", "top_having", "share", "monthly"]
#: Rows an expected table may have (a policy types them into ``submit``).
MAX_ROWS = 25
#: Rounding to 2 decimals passes (abs); float summation error passes (rel); an amount off by 1 does not.
TOLERANCE = {"rel_tol": 1e-9, "abs_tol": 0.01}


def tq(name: str) -> str:
    """A table or column name as the prose shows it."""
    return f"`{name}`"


def show(value: Any) -> str:
    """A value as the prose shows it: a string quoted as SQL writes it, a number plain."""
    return "'" + value.replace("'", "''") + "'" if isinstance(value, str) else str(value)


class Builder:
    """What a kind's builder needs: the world, its database, the difficulty and the draw."""

    def __init__(self, world: SqlWorld, difficulty: int, rng: random.Random):
        self.w, self.d, self.rng = world, difficulty, rng
        self.con = world.database().con
        self.cache: dict[Any, Any] = world.cache

    def all(self, sql: str) -> list[tuple[Any, ...]]:
        """Every row of a generator query (raw Python values; cached per world)."""
        hit = self.cache.get(sql)
        if hit is None:
            hit = self.cache[sql] = self.con.execute(sql).fetchall()
        return list(hit)

    def values(self, table: str, column: str) -> list[tuple[Any, int]]:
        """``(value, rows)`` of a column's non-null values, most frequent first (ties by value)."""
        rows = self.all(f'SELECT "{column}", COUNT(*) FROM "{table}" WHERE "{column}" IS NOT NULL GROUP BY 1')
        return sorted(rows, key=lambda r: (-r[1], str(r[0])))

    def facts(self) -> list[Table]:
        """Tables with a reference to an entity table and at least 20 rows, in a random order."""
        ts = [t for t in self.w.tables.values() if t.noun and t.refs and t.rows >= 20]
        self.rng.shuffle(ts)
        return ts

    def enums(self, t: Table, lo: int = 2, hi: int = 10) -> list[Column]:
        """Never-null enum columns with ``lo..hi`` distinct values."""
        return [
            c for c in t.columns if c.kind == "enum" and not c.nullable and lo <= len(self.values(t.name, c.name)) <= hi
        ]

    def measures(self, t: Table, money: bool = False) -> list[Column]:
        """Measure columns (money first when asked and present)."""
        ms = [c for c in t.columns if c.kind in ("money", "int", "rating", "duration", "percent")]
        cash = [c for c in ms if c.kind == "money"]
        return cash if money and cash else ms

    def dates(self, t: Table) -> list[Column]:
        """Date and timestamp columns."""
        return [c for c in t.columns if c.kind in ("date", "datetime")]

    def pick(self, items: list[Any]) -> Any:
        """A random item, or None."""
        return self.rng.choice(items) if items else None

    def date_range(self, t: Table, c: Column, share: tuple[float, float] = (0.3, 0.8)) -> dict[str, Any] | None:
        """A range of ``c`` holding about ``share`` of its rows (bounds are dates that occur)."""
        key = ("days", t.name, c.name)
        if key not in self.cache:
            sql = f'SELECT CAST("{c.name}" AS DATE) AS d FROM "{t.name}" WHERE "{c.name}" IS NOT NULL ORDER BY d'
            self.cache[key] = [str(d) for (d,) in self.con.execute(sql).fetchall()]
        days = self.cache[key]
        if len(days) < 10:
            return None
        n = len(days)
        width = int(n * self.rng.uniform(*share))
        start = self.rng.randrange(0, n - width)
        lo, hi = days[start], days[min(n - 1, start + width)]
        return {"column": c.name, "kind": c.kind, "from": lo, "to": hi} if lo < hi else None

    def value(self, t: Table, c: Column, least: int = 3) -> Any:
        """A value of an enum column held by at least ``least`` rows (None if none is)."""
        return self.pick([v for v, n in self.values(t.name, c.name) if n >= least])

    def prefix(self, table: str) -> str:
        """The key prefix of a table's ids (``BK`` of ``BK-00001``)."""
        ent = self.w.domain.entities.get(self.w.tables[table].entity)
        return str(ent["key_prefix"]) if ent else "X"


def date_text(date: dict[str, Any] | None) -> str:
    """`` whose `d` falls between A and B (inclusive)`` or nothing."""
    if not date:
        return ""
    return f"whose {tq(date['column'])} falls between {date['from']} and {date['to']} (inclusive)"


def finish(b: Builder, plan: dict[str, Any]) -> TaskDraft | None:
    """Run a plan's query, check its result and make the draft (None when the result does not fit).

    ``plan``: ``kind``, ``query``, ``text`` (the question), ``shape``, ``ordered``, ``columns``
    (answer column descriptions), ``gate``, ``bluff``, ``tables`` (described by the reference),
    optionally ``probe`` (``[table, column]`` the reference lists the values of first).
    """
    sql = sql_of({"kind": plan["kind"], "query": plan["query"]})
    # through the cache: the reference's run_sql of the same query then costs nothing
    res = engine.run_query(b.con, sql, cache=b.w.database().results if engine.cacheable(sql) else None)
    rows = res["rows"]
    if res.get("truncated") or not rows or any(v is None for r in rows for v in r):
        return None
    shape = plan["shape"]
    if (shape != "table" and len(rows) != 1) or (shape == "table" and not 2 <= len(rows) <= MAX_ROWS):
        return None
    if shape == "scalar" and rows[0][0] in (0, 0.0):
        return None
    cols = plan["columns"]
    if shape == "scalar":
        fmt = "Submit the answer as one number."
    else:
        what = "one row: a list" if shape == "row" else "a table: a list of rows, each a list"
        order = "rows in the order asked" if plan["ordered"] else "rows in any order"
        fmt = f"Submit {what} of {len(cols)} values, in this order: {'; '.join(cols)}" + (
            f"; {order}." if shape == "table" else "."
        )
    intro = (
        f"You are a data analyst at {b.w.org}, {with_article(b.w.title)}. Today is {b.w.today}. "
        "Its data is in a DuckDB database you can query with SQL through the tools."
    )
    text = f"{intro}\n{plan['text']}\n{fmt} Numbers may be rounded to 2 decimals."
    types = [column_type([r[j] for r in rows]) for j in range(len(rows[0]))]
    verifier = {"kind": "table", "shape": shape, "expected": rows, "ordered": plan["ordered"], **TOLERANCE}
    params = {
        "kind": plan["kind"],
        "query": plan["query"],
        "shape": shape,
        "tables": plan["tables"],
        "explore": b.d >= 2,
        "probe": plan.get("probe"),
        # from d4 the reference counts the rows missing the measure before it aggregates
        "null_check": [plan["query"]["table"], plan["query"]["measure"]] if b.d >= 4 else None,
    }
    meta = {"kind": plan["kind"], "gate": plan["gate"], "bluff": plan["bluff"], "archetype": b.w.domain.arch.id}
    return TaskDraft(
        prompt=text, params=params, verifier_spec=verifier, tool_config={"answer": shape, "columns": types}, meta=meta
    )


def column_type(values: list[Any]) -> str:
    """``text``, ``integer`` (every value an int) or ``number``: the type ``submit`` asks for in a column."""
    if all(isinstance(v, str) for v in values):
        return "text"
    return "integer" if all(isinstance(v, int) and not isinstance(v, bool) for v in values) else "number"


def avg_rows(b: Builder, t: Table, fk: Column) -> int:
    """Rows of ``t`` per referenced key, rounded up (the random gate's sum size)."""
    return max(1, -(-t.rows // max(1, len(b.values(t.name, fk.name)))))


def parent_of(b: Builder, fk: Column) -> Table:
    """The table a reference column points into."""
    return b.w.tables[str(fk.ref)]
