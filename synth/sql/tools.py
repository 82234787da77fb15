"""The SQL analyst's tools: ``list_tables``, ``describe_table``, ``run_sql`` and a typed ``submit``.

Every tool takes the episode's :class:`SqlSession`: the shared world and, once SQL has run, the
episode's own DuckDB connection (:mod:`toolgym.synth.sql.engine`). Tools are plain typed
functions; their schemas come from their signatures (:func:`toolgym.envs.tools.make_tool`).

``submit``'s answer is typed by the task's answer shape (``tool_config["answer"]``) and column types
(``tool_config["columns"]``: ``text``, ``integer`` or ``number`` each):

* ``scalar``: one value;
* ``row``: a list of values, one per column, in the order the question lists them;
* ``table``: a list of such rows.

The verifier (:mod:`toolgym.verifiers.table`) compares rows as multisets with a float tolerance,
columns in any order, rows in order only when the question asks for an order.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from toolgym.envs import naming
from toolgym.envs.strict import Integer, Number, Text
from toolgym.envs.tools import Tool, ToolError, make_tool
from toolgym.synth.family import episodes_trusted
from toolgym.synth.sql import engine
from toolgym.synth.sql.world import SqlWorld

#: What a result's note says once after a copy (pickle) of an episode lost its live connection.
COPY_NOTE = (
    "this episode was copied (pickled) after SQL had run: the copy has a new connection, so temporary "
    "tables and variables made before are gone; the data is the same"
)
#: What a result's note says once after the SQL worker was restarted (another query ran past its
#: hard deadline or brought it down) since this session's last query.
RESTART_NOTE = (
    "the SQL worker was restarted since your last query (a query ran past its time cap or out of memory): "
    "temporary tables and variables made before are gone; the data is the same"
)


class SqlSession:
    """One episode's context: the world and, after the first query, a connection of its own.

    ``pristine`` holds while the connection has run only cacheable queries
    (:func:`toolgym.synth.sql.engine.cacheable`): it has created nothing (no temporary table,
    variable or macro), so its queries see exactly the world's data and share the database's
    result cache. The first other statement ends that for the connection's life.

    ``isolated`` (the default, and what every env uses) runs the connection in the process's SQL
    worker (:mod:`toolgym.synth.sql.worker`): a query past the hard deadline or the worker's memory
    limit is killed there, never in this process. ``False`` runs it in this process (trusted SQL
    only, e.g. a benchmark's comparison); None (the default) means isolated except in a world's
    synthesis, whose reference and gates run the generator's own SQL
    (:func:`toolgym.synth.family.episodes_trusted`: the worker's round trip and per-world open would
    cost synthesis throughput for no protection).
    """

    def __init__(self, world: SqlWorld, time_cap_s: float = engine.TIME_CAP_S, isolated: bool | None = None):
        self.world = world
        self.time_cap_s = time_cap_s
        self.isolated = not episodes_trusted() if isolated is None else isolated
        self._cursor: Any = None
        self._pid = -1
        self.copied_live = False  # copied while its connection was open (see __getstate__)
        self.pristine = True

    def cursor(self) -> Any:
        """The episode's DuckDB connection, opened on first use (and again in a forked copy)."""
        if self._cursor is None or self._pid != os.getpid():
            self._cursor = self.world.database().session(self.isolated)
            self._pid = os.getpid()
            self.pristine = True  # a new connection has created nothing
        return self._cursor

    def run(self, sql: str) -> dict[str, Any]:
        """Run ``sql`` on the episode's connection (through the result cache while pristine)."""
        cursor = self.cursor()
        self.pristine = self.pristine and engine.cacheable(sql)
        cache = self.world.database().results if self.pristine else None
        return engine.run_query(cursor, sql, time_cap_s=self.time_cap_s, cache=cache)

    def note(self) -> dict[str, str]:
        """``{"note": ...}`` once after a copy lost its connection or the worker restarted, else ``{}``.

        The note is :data:`COPY_NOTE` or :data:`RESTART_NOTE`.
        """
        if getattr(self._cursor, "restarted", False):
            self._cursor.restarted = False
            return {"note": RESTART_NOTE}
        if not self.copied_live:
            return {}
        self.copied_live = False
        return {"note": COPY_NOTE}

    def close(self) -> None:
        """Close the episode's connection (what it created goes with it)."""
        if self._cursor is not None and self._pid == os.getpid():
            self._cursor.close()
        self._cursor = None

    def to_json(self) -> dict[str, Any]:
        """Nothing an episode does changes the data: the state is empty (the verifier reads no state)."""
        return {}

    def __getstate__(self) -> dict[str, Any]:
        live = self._cursor is not None or self.copied_live
        return {
            "world": self.world,
            "time_cap_s": self.time_cap_s,
            "isolated": self.isolated,
            "_cursor": None,
            "_pid": -1,
            "copied_live": live,
            "pristine": True,  # the copy's connection will be new
        }


def list_tables(session: SqlSession) -> dict[str, Any]:
    """List the database's tables with their row counts."""
    return {"tables": [{"name": t.name, "rows": t.rows} for t in session.world.tables.values()]}


def describe_table(session: SqlSession, table: str) -> dict[str, Any]:
    """Describe a table: its columns, their SQL types, which may be null, and which reference another table.

    Args:
        table: The table's name, as list_tables gives it.
    """
    tables = session.world.tables
    t = tables.get(naming.canon(table))
    if t is None:
        hint = naming.did_you_mean(table, list(tables))
        raise ToolError(f"no table named {table!r}{hint}; list_tables names them all")
    cols = []
    for c in t.columns:
        col: dict[str, Any] = {"name": c.name, "type": c.type}
        if c.name == "id":
            col["key"] = True
        if c.nullable:
            col["nullable"] = True
        if c.ref is not None:
            col["references"] = f"{c.ref}.id"
        cols.append(col)
    return {"table": t.name, "rows": t.rows, "columns": cols}


def run_sql(session: SqlSession, query: str) -> dict[str, Any]:
    """Run a read-only SQL query (DuckDB dialect) and get its rows.

    At most 50 rows are shown; a longer result is marked truncated. Queries run under a time and a
    memory cap; the database cannot be changed and no file or network is reachable.

    Args:
        query: One SQL statement, e.g. SELECT status, COUNT(*) FROM bookings GROUP BY status.
    """
    out = session.run(query)
    return {**out, **session.note()}


def _submit(session: SqlSession, answer: Any) -> str:
    return "submitted"


#: The type of an answer cell by the column type a task states (``tool_config["columns"]``).
CELLS: dict[str, Any] = {"text": Text, "integer": Integer, "number": Number}
SHAPES = ("scalar", "row", "table")
_ANSWER_DOCS = {
    "scalar": "the answer: one value",
    "row": "the answer: one row, a list of the values the question asks for, in the order it lists them",
    "table": "the answer: a list of rows, each a list of the values the question asks for, in the order it lists them",
}


def answer_type(shape: str, columns: tuple[str, ...]) -> Any:
    """The ``submit`` answer's type: one typed value, a typed row (a fixed-length tuple) or a list of rows.

    Each column is typed (a string is never a number, a count never a fraction), so a row is a
    tuple in the order the question lists the columns; the verifier itself takes the columns in any
    order (columns of one type may come swapped).
    """
    cells = tuple(CELLS[c] for c in columns)
    if shape == "scalar":
        return cells[0]
    row = tuple[cells]  # type: ignore[valid-type]
    return row if shape == "row" else list[row]  # type: ignore[valid-type]


def _submit_fn(shape: str, columns: tuple[str, ...]) -> Any:
    """``submit(answer)`` with the answer typed by ``shape`` and ``columns`` (a function for :func:`make_tool`)."""

    def submit(session: SqlSession, answer: Any) -> str:
        return _submit(session, answer)

    submit.__annotations__ = {"session": SqlSession, "answer": answer_type(shape, columns), "return": str}
    submit.__doc__ = f"""Submit the final answer; this ends the episode.

        Args:
            answer: {_ANSWER_DOCS[shape]}.
        """
    return submit


@functools.cache
def toolset(shape: str, columns: tuple[str, ...]) -> tuple[Tool, ...]:
    """The tools of a task whose answer has ``shape`` (``scalar``, ``row`` or ``table``) and column types.

    Raises:
        KeyError: An unknown shape or column type.
    """
    if shape not in SHAPES or not columns or not set(columns) <= set(CELLS):
        raise KeyError(f"unknown answer shape {shape!r} or column types {columns!r}")
    return (
        make_tool(list_tables),
        make_tool(describe_table),
        make_tool(run_sql),
        make_tool(_submit_fn(shape, columns), name="submit"),
    )
