"""SQL of each task kind, from a task's public parameters (shared by the generator and the reference).

A task's ``params`` name tables, columns and values; :func:`sql_of` writes the query that answers
it (DuckDB dialect). The generator runs it once to get the expected answer; the reference writes
the same query from the same parameters and answers through ``run_sql`` alone. Kinds (``f`` the
fact table, ``p`` a table it references; dates inclusive, a ``TIMESTAMP`` column compared by its date):

* ``filter``: rows of one table by an equality and a lower bound (``id`` and the measure);
* ``total``: the sum of a measure over a filter and a date range (a scalar);
* ``top1``: the referenced key with the largest total measure (a row; ties to the smaller key);
* ``group``: count and total per value of a column, within a date range;
* ``join_group``: count and average per value of a referenced table's column, over a filter;
* ``top``: the ``k`` referenced rows with the largest totals, ordered (optionally ``HAVING`` a count);
* ``top_per_group``: per value of a column, the row with the largest measure (a window, ``ROW_NUMBER``);
* ``share``: two joins, per group the count, the rows missing the measure, the total and its
  percentage of the grand total (a window over the groups, ``SUM(SUM(…)) OVER ()``);
* ``monthly``: per month of a date range, the total and the running total (a window ordered by month).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def lit(value: Any) -> str:
    """A SQL literal of a string or number."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def col(alias: str, name: str) -> str:
    """``alias."name"``."""
    return f"{alias}.{ident(name)}"


def date_cond(alias: str, date: dict[str, Any] | None) -> list[str]:
    """The date range condition (inclusive; a timestamp compared by its date), as a list of 0 or 1."""
    if not date:
        return []
    expr = col(alias, date["column"])
    if date["kind"] == "datetime":
        expr = f"CAST({expr} AS DATE)"
    return [f"{expr} BETWEEN DATE {lit(date['from'])} AND DATE {lit(date['to'])}"]


def where(conds: list[str]) -> str:
    """`` WHERE a AND b`` (or nothing)."""
    return f" WHERE {' AND '.join(conds)}" if conds else ""


def _eq(alias: str, eq: list[Any] | None) -> list[str]:
    return [f"{col(alias, eq[0])} = {lit(eq[1])}"] if eq else []


def _join(p: dict[str, Any], fk: str, alias: str) -> str:
    return f" JOIN {ident(p['table'])} {alias} ON {col('f', fk)} = {alias}.id"


def _filter(q: dict[str, Any]) -> str:
    m = col("f", q["measure"])
    conds = [*_eq("f", q["eq"]), f"{m} >= {lit(q['min'])}"]
    return f"SELECT f.id, {m} FROM {ident(q['table'])} f{where(conds)}"


def _total(q: dict[str, Any]) -> str:
    conds = [*_eq("f", q["eq"]), *date_cond("f", q["date"])]
    return f"SELECT SUM({col('f', q['measure'])}) FROM {ident(q['table'])} f{where(conds)}"


def _top1(q: dict[str, Any]) -> str:
    fk, m = col("f", q["fk"]), col("f", q["measure"])
    conds = [f"{fk} IS NOT NULL", f"{m} IS NOT NULL"]
    return (
        f"SELECT {fk}, SUM({m}) AS total FROM {ident(q['table'])} f{where(conds)} "
        f"GROUP BY {fk} ORDER BY total DESC, {fk} LIMIT 1"
    )


def _group(q: dict[str, Any]) -> str:
    by = col("f", q["by"])
    body = f"SELECT {by}, COUNT(*), SUM({col('f', q['measure'])}) FROM {ident(q['table'])} f"
    return body + where(date_cond("f", q["date"])) + f" GROUP BY {by}"


def _join_group(q: dict[str, Any]) -> str:
    by = col("p", q["parent"]["by"])
    body = f"SELECT {by}, COUNT(*), AVG({col('f', q['measure'])}) FROM {ident(q['table'])} f"
    return body + _join(q["parent"], q["fk"], "p") + where(_eq("f", q["eq"])) + f" GROUP BY {by}"


def _top(q: dict[str, Any]) -> str:
    parent, m = q["parent"], col("f", q["measure"])
    keys = ["p.id"] + ([col("p", parent["label"])] if parent.get("label") else [])
    conds = [f"{m} IS NOT NULL", *date_cond("f", q["date"])]
    having = f" HAVING COUNT(*) >= {int(q['min_count'])}" if q.get("min_count") else ""
    return (
        f"SELECT {', '.join(keys)}, SUM({m}) AS total FROM {ident(q['table'])} f{_join(parent, q['fk'], 'p')}"
        f"{where(conds)} GROUP BY {', '.join(keys)}{having} ORDER BY total DESC, p.id LIMIT {int(q['k'])}"
    )


def _top_per_group(q: dict[str, Any]) -> str:
    by, m = col("f", q["by"]), col("f", q["measure"])
    inner = (
        f"SELECT {by} AS grp, f.id, {m} AS val, ROW_NUMBER() OVER (PARTITION BY {by} ORDER BY {m} DESC, f.id) AS rn "
        f"FROM {ident(q['table'])} f{where([f'{m} IS NOT NULL', *date_cond('f', q['date'])])}"
    )
    return f"SELECT grp, id, val FROM ({inner}) WHERE rn = 1"


def _share(q: dict[str, Any]) -> str:
    g, other, m = q["parent"], q["other"], col("f", q["measure"])
    by = col("p", g["by"])
    joins = _join(g, q["fk"], "p") + _join(other, q["other_fk"], "o")
    conds = [*_eq("o", other["eq"]), *date_cond("f", q["date"])]
    return (
        f"SELECT {by}, COUNT(*) AS n, COUNT(*) - COUNT({m}) AS missing, SUM({m}) AS total, "
        f"100.0 * SUM({m}) / SUM(SUM({m})) OVER () AS share "
        f"FROM {ident(q['table'])} f{joins}{where(conds)} GROUP BY {by}"
    )


def _monthly(q: dict[str, Any]) -> str:
    parent, m = q["parent"], col("f", q["measure"])
    month = f"strftime({col('f', q['date']['column'])}, '%Y-%m')"
    conds = [*_eq("p", parent["eq"]), *date_cond("f", q["date"])]
    return (
        f"SELECT {month} AS month, SUM({m}) AS total, SUM(SUM({m})) OVER (ORDER BY {month}) AS running "
        f"FROM {ident(q['table'])} f{_join(parent, q['fk'], 'p')}{where(conds)} GROUP BY month ORDER BY month"
    )


COMPILERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "filter": _filter,
    "total": _total,
    "top1": _top1,
    "group": _group,
    "join_group": _join_group,
    "top": _top,
    "top_per_group": _top_per_group,
    "share": _share,
    "monthly": _monthly,
}


def sql_of(params: dict[str, Any]) -> str:
    """The query answering a task (see the module docstring).

    Raises:
        KeyError: An unknown kind, or parameters missing for it.
    """
    return COMPILERS[params["kind"]](params["query"])
