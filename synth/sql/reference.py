"""The SQL reference: it writes its query from the task's public parameters and answers through ``run_sql``.

It never sees the world. Its steps, as an analyst would take them (so its calls grow with the
difficulty):

1. from difficulty 2, ``list_tables`` (and checks that every table it needs is there);
2. ``describe_table`` of every table the question uses (one turn), checking each column it will
   name exists;
3. where the task has a ``probe`` (difficulty 4–5), the values of the column the question filters
   or groups on, with their counts, and (``null_check``, difficulty 4–5) how many rows miss the
   measure, in one turn of ``run_sql`` calls;
4. the query of :func:`toolgym.synth.sql.queries.sql_of` through ``run_sql``, whose rows it submits
   as the task's shape asks (one value, one row or the table).

A check that fails raises :class:`~toolgym.errors.ReferenceSolutionError`: the task is wrong.
"""

from __future__ import annotations

from typing import Any

from toolgym.envs.rollout import Program, Step
from toolgym.errors import ReferenceSolutionError
from toolgym.synth.sql.queries import ident, sql_of


def _named_columns(params: dict[str, Any]) -> set[str]:
    """Every string in the query parameters that could be a column name (checked against the descriptions)."""
    q, out = params["query"], set()
    for key in ("measure", "by", "fk", "other_fk"):
        if isinstance(q.get(key), str):
            out.add(q[key])
    if q.get("eq"):
        out.add(q["eq"][0])
    if q.get("date"):
        out.add(q["date"]["column"])
    return out


def program(params: dict[str, Any], tool_config: dict[str, Any]) -> Program:
    """The reference program of a task (see the module docstring)."""
    tables: list[str] = params["tables"]
    if params.get("explore"):
        (listing,) = yield Step([("list_tables", {})], "Which tables does the database have?")
        have = {t["name"] for t in listing["content"]["tables"]}
        if not set(tables) <= have:
            raise ReferenceSolutionError(f"tables {sorted(set(tables) - have)} are not in the database")
    described = yield Step([("describe_table", {"table": t}) for t in tables], "What columns do these tables have?")
    columns = {c["name"] for r in described for c in r["content"]["columns"]}
    missing = _named_columns(params) - columns
    if missing:
        raise ReferenceSolutionError(f"columns {sorted(missing)} are in none of {tables}")
    checks = []
    if params.get("probe"):
        table, column = params["probe"]
        checks.append(f"SELECT {ident(column)}, COUNT(*) AS n FROM {ident(table)} GROUP BY 1 ORDER BY 1")
    if params.get("null_check"):
        table, column = params["null_check"]
        checks.append(f"SELECT COUNT(*) AS n, COUNT(*) - COUNT({ident(column)}) AS missing FROM {ident(table)}")
    if checks:
        seen = yield Step([("run_sql", {"query": q}) for q in checks], "First the values and the missing entries.")
        if any(not r["content"]["rows"] for r in seen):
            raise ReferenceSolutionError(f"a check query returned no rows: {checks}")
    (result,) = yield Step([("run_sql", {"query": sql_of(params)})], "This query answers the question.")
    rows = result["content"]["rows"]
    if result["content"].get("truncated"):
        raise ReferenceSolutionError("the answer's query returned more rows than a result shows")
    shape = params["shape"]
    if shape == "scalar":
        return rows[0][0]
    if shape == "row":
        return rows[0]
    return rows
