"""The sql heuristic: a hurried analyst who writes one query for the main ask and skips the fine print.

A baseline for the hardness table (``toolgym bench synth --family sql``), not a solver. Like the
reference it reads the task's public parameters (what the question says in words) and acts only
through the tools, but it is shallow by design, the same way for every task:

* **one query, no look around**: no ``list_tables``, no ``describe_table``, no probe of the values
  or the missing entries; one ``run_sql`` whose rows it submits as the answer's shape asks (an
  error or no rows: it submits an empty answer);
* **dates as written**: a date range is compared on the column as it is
  (``col BETWEEN DATE 'a' AND DATE 'b'``), so on a timestamp column the last day's rows after
  midnight fall out (the question says the range is inclusive and compared by date);
* **one table**: it never joins; where the question groups by or names a column of a referenced
  table (or filters on one) it groups by the reference column itself (the keys, not the names)
  and drops that filter;
* **no fine print, no window**: no tie rule and no ``IS NOT NULL`` on the key of a top-1 (an empty
  key can win), no ``HAVING`` count, and no window: per group's top row it takes the group's
  largest value and its smallest id (a plain ``GROUP BY``), and where a share or a running total is
  asked it submits the group's own total in that column.

So per kind (difficulty): ``filter``, ``total`` and ``group`` (1-2) are what it writes anyway and
pass unless their range is on a timestamp; ``top1`` (2) fails when the rows with no key add up to
the most; ``join_group`` (3) fails (keys, not the names asked); ``top`` (3-4) passes only when the
referenced table has no name column to show and no count or empty key changes the ranking;
``top_per_group`` (4) passes only where the top row has the smallest id; ``share`` and ``monthly``
(5) always fail. Its share falls with the difficulty because harder kinds ask for more of what it
skips, never because it looks at the difficulty.
"""

from __future__ import annotations

from typing import Any

from toolgym.envs.rollout import Program, Step
from toolgym.synth.sql.queries import col, date_cond, ident, lit, sql_of, where


def _raw_dates(q: dict[str, Any]) -> dict[str, Any]:
    """The query parameters with every date range compared on the column as it is (no cast to DATE)."""
    out = dict(q)
    if out.get("date"):
        out["date"] = {**out["date"], "kind": "date"}
    return out


# Each takes the query parameters with their dates already raw (:func:`_raw_dates`).
def _top1(q: dict[str, Any]) -> str:
    fk, m = col("f", q["fk"]), col("f", q["measure"])
    return f"SELECT {fk}, SUM({m}) AS total FROM {ident(q['table'])} f GROUP BY {fk} ORDER BY total DESC LIMIT 1"


def _join_group(q: dict[str, Any]) -> str:
    fk = col("f", q["fk"])
    body = f"SELECT {fk}, COUNT(*), AVG({col('f', q['measure'])}) FROM {ident(q['table'])} f"
    return body + where(_eq(q.get("eq"))) + f" GROUP BY {fk}"


def _top(q: dict[str, Any]) -> str:
    fk, m = col("f", q["fk"]), col("f", q["measure"])
    return (
        f"SELECT {fk}, SUM({m}) AS total FROM {ident(q['table'])} f{where(date_cond('f', q.get('date')))} "
        f"GROUP BY {fk} ORDER BY total DESC LIMIT {int(q['k'])}"
    )


def _top_per_group(q: dict[str, Any]) -> str:
    by, m = col("f", q["by"]), col("f", q["measure"])
    conds = [f"{m} IS NOT NULL", *date_cond("f", q.get("date"))]
    return f"SELECT {by}, MIN(f.id), MAX({m}) FROM {ident(q['table'])} f{where(conds)} GROUP BY {by}"


def _share(q: dict[str, Any]) -> str:
    fk, m = col("f", q["fk"]), col("f", q["measure"])
    return (
        f"SELECT {fk}, COUNT(*), COUNT(*) - COUNT({m}), SUM({m}), SUM({m}) FROM {ident(q['table'])} f"
        f"{where(date_cond('f', q.get('date')))} GROUP BY {fk}"
    )


def _monthly(q: dict[str, Any]) -> str:
    m = col("f", q["measure"])
    month = f"strftime({col('f', q['date']['column'])}, '%Y-%m')"
    return (
        f"SELECT {month} AS month, SUM({m}), SUM({m}) FROM {ident(q['table'])} f"
        f"{where(date_cond('f', q.get('date')))} GROUP BY month ORDER BY month"
    )


def _eq(eq: list[Any] | None) -> list[str]:
    return [f"{col('f', eq[0])} = {lit(eq[1])}"] if eq else []


#: The kinds it writes its own way; the others (``filter``, ``total``, ``group``) as the question asks.
SHALLOW = {
    "top1": _top1,
    "join_group": _join_group,
    "top": _top,
    "top_per_group": _top_per_group,
    "share": _share,
    "monthly": _monthly,
}


def query(params: dict[str, Any]) -> str:
    """The one query the heuristic writes for a task (see the module docstring)."""
    kind, q = params["kind"], _raw_dates(params["query"])
    if kind in SHALLOW:
        return SHALLOW[kind](q)
    return sql_of({"kind": kind, "query": q})


def program(params: dict[str, Any]) -> Program:
    """The heuristic's program: one ``run_sql``, then its rows as the answer (see the module docstring)."""
    results = yield Step([("run_sql", {"query": query(params)})], "One query should do it.")
    result: dict[str, Any] = results[0] if results else {"error": "no result"}
    rows = [] if "error" in result else result["content"]["rows"]
    shape = params["shape"]
    if shape == "scalar":
        return rows[0][0] if rows else 0
    if shape == "row":
        return rows[0] if rows else []
    return rows
