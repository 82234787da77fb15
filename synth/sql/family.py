"""The ``sql`` family (``toolgym/SQLAnalyst-v0``): analysis questions over a generated DuckDB database.

Worlds are ``domains`` worlds with a NULL layer, as a read-only sandboxed DuckDB file
(:mod:`~toolgym.synth.sql.world`, :mod:`~toolgym.synth.sql.engine`); tasks by difficulty are in
:mod:`~toolgym.synth.sql.tasks` and :mod:`~toolgym.synth.sql.kinds`; the reference writes SQL and
answers through ``run_sql`` (:mod:`~toolgym.synth.sql.reference`); answers are checked by
:mod:`toolgym.verifiers.table`.

Episodes: each gets a :class:`~toolgym.synth.sql.tools.SqlSession` (its own DuckDB connection to
the world's database, opened on the first query and closed with the episode), so what a session
may create (temporary tables, variables) never reaches another episode. Nothing can change the
data, so the verifier checks the answer only.

Gate answers (per answer column, as the task's ``meta`` describes it):

* random: a plausible table of the expected size, each column drawn from the world: values of
  the column it shows (distinct for key columns), sums of k random values of the measure (k
  times the mean of at most 16 of them), counts
  in a plausible range, months of the date column;
* bluff: well-formed without the world: ids in the table's key format with random numbers,
  random words, counts and amounts;
* perturbed: the reference answer with a number off by one, off by 1 % (an integer: off by one
  either way, so every perturbed answer fits the ``submit`` schema), a row dropped (or
  duplicated), and for an ordered answer its first two rows swapped.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from toolgym.envs.tools import Tool
from toolgym.spec import TaskDraft, TaskSpec
from toolgym.synth.family import Family, Program, params_key
from toolgym.synth.sql import heuristic, kinds, reference, tasks
from toolgym.synth.sql.gates import bluff_value, draw, random_pass_bound, typed
from toolgym.synth.sql.tools import SqlSession, toolset
from toolgym.synth.sql.world import SqlWorld, load, make_world

#: What an open world database holds besides its rows (DuckDB instance, buffers, file: measured).
DB_BYTES = 7 * 2**20
#: What a row holds, its domain data, DuckDB blocks and cached results together (measured).
ROW_BYTES = 600


class SQLAnalyst(Family):
    """Analysis questions over a generated relational database, answered with read-only SQL."""

    id = "sql"
    env_name = "SQLAnalyst"
    version = 0
    summary = "analysis questions over a generated DuckDB database: filters, joins, group-bys, windows, NULLs"
    categories = ("sql", "data analysis", "databases")
    # A world's tables and database cost ~60-120 ms to generate, build and open (d5); its tasks a
    # few ms each (queries cached per world): 32 candidates amortize a world to ~4 ms a task.
    tasks_per_world = 32

    def make_world(self, seed: int, difficulty: int) -> SqlWorld:
        """The world of a seed (its archetype is the one ``domains`` picks for the seed)."""
        return make_world(seed, difficulty)

    def load_world(self, data: dict[str, Any]) -> SqlWorld:
        """Rebuild a world from its stored inputs (see :func:`toolgym.synth.sql.world.load`)."""
        return load(data)

    def world_bytes(self, world: SqlWorld) -> int:
        """~7 MiB a world plus ~600 bytes a row: its DuckDB instance once opened, and its rows.

        Measured (difficulty 5, 12 worlds kept, each queried by 16 task drafts): ~9 MB of process
        memory a world (the instance, its buffers, the result cache, the domain rows) and ~1.4 MB
        of ``/dev/shm`` (its file); difficulty 1 (~400 rows), ~6 MB and the same file. Counted
        whether or not the database is open yet (it opens on the first query of any episode), so
        the task sources' byte budgets (``FLY_BYTES``, ``DATASET_BYTES``) keep about six worlds.
        """
        return DB_BYTES + ROW_BYTES * sum(t.rows for t in world.tables.values())

    def archetypes(self) -> Sequence[str]:
        """The domain archetypes worlds are drawn from.

        Four of them (``conference``, ``course_registration``, ``restaurant_chain``, ``school``)
        only at difficulty 1: their schemas never have what the harder kinds read
        (:func:`toolgym.synth.sql.world.analysable`), so from difficulty 2 their seeds redraw.
        """
        from toolgym.synth.domains.world import archetype_ids

        return list(archetype_ids())

    def world_archetype(self, world: SqlWorld) -> str:
        """The archetype a world was sampled from."""
        return str(world.domain.data["archetype"])

    def world_schema(self, world: SqlWorld) -> dict[str, Any]:
        """The database's tables and columns (names and types)."""
        return {name: [[c.name, c.type] for c in t.columns] for name, t in world.tables.items()}

    def make_task(self, world: SqlWorld, difficulty: int, rng: random.Random) -> TaskDraft | None:
        """A task of the difficulty's kinds, falling back to easier kinds the world can host."""
        return kinds.draft(tasks.Builder(world, difficulty, rng))

    def task_key(self, draft: TaskDraft) -> str:
        """Its public parameters: two drafts of a world asking the same thing are one task (the second is dropped)."""
        return params_key(draft)

    def tools(self, tool_config: dict[str, Any]) -> Sequence[Tool]:
        """``list_tables``, ``describe_table``, ``run_sql`` and ``submit`` typed by the answer shape."""
        return toolset(tool_config["answer"], tuple(tool_config["columns"]))

    def reference(self, params: dict[str, Any], tool_config: dict[str, Any]) -> Program:
        """The reference program (describes, probes, queries through ``run_sql``)."""
        return reference.program(params, tool_config)

    def heuristic(self, task: TaskSpec) -> Program:
        """The shallow analyst of :mod:`toolgym.synth.sql.heuristic` (one query, dates as written, no fine print)."""
        return heuristic.program(task.params)

    def episode_context(self, world: SqlWorld, task: TaskSpec) -> SqlSession:
        """A session of the episode's own (a connection opened on its first query)."""
        return SqlSession(world)

    def close_context(self, context: Any) -> None:
        """Close the episode's connection."""
        if isinstance(context, SqlSession):
            context.close()

    def random_answer(self, world: SqlWorld, task: TaskSpec, rng: random.Random) -> Any:
        """A plausible answer drawn from the world, of the expected shape and size."""
        n = len(task.verifier_spec["expected"])
        types = task.tool_config["columns"]
        columns = [
            [typed(v, t) for v in draw(world, spec, n, rng)] for spec, t in zip(task.meta["gate"], types, strict=True)
        ]
        return _shaped([list(r) for r in zip(*columns, strict=True)], task.verifier_spec["shape"])

    def random_pass(self, world: SqlWorld, task: TaskSpec) -> float | None:
        """An upper bound on the chance that :meth:`random_answer` passes (see :mod:`toolgym.synth.sql.gates`)."""
        return random_pass_bound(world, task)

    def bluff_answer(self, task: TaskSpec, rng: random.Random) -> Any:
        """A well-formed answer made without the world."""
        n = len(task.verifier_spec["expected"])
        types = task.tool_config["columns"]
        columns = [
            [bluff_value(how, t, rng) for _ in range(n)] for how, t in zip(task.meta["bluff"], types, strict=True)
        ]
        return _shaped([list(r) for r in zip(*columns, strict=True)], task.verifier_spec["shape"])

    def perturb(self, world: SqlWorld, task: TaskSpec, answer: Any, rng: random.Random) -> list[Any]:
        """Broken copies of the reference answer (see the module docstring)."""
        shape = task.verifier_spec["shape"]
        rows = [[answer]] if shape == "scalar" else [list(answer)] if shape == "row" else [list(r) for r in answer]
        types, out = task.tool_config["columns"], []
        for k in range(2):  # a number off by one, then off by 1 % (an integer: off by one the other way)
            i = rng.randrange(len(rows))
            nums = [j for j, t in enumerate(types) if t != "text"]
            if nums:
                broken = [list(r) for r in rows]
                j = rng.choice(nums)
                x = broken[i][j]
                if types[j] == "integer":
                    broken[i][j] = x + 1 if k == 0 else (x - 1 if x > 0 else x + 2)
                else:
                    broken[i][j] = float(x + 1 if k == 0 else round(x * 1.01 + 0.5, 2))
                out.append(broken)
        if shape == "table":
            out.append(rows[:-1] if len(rows) > 1 else rows + rows)
            if task.verifier_spec.get("ordered") and len(rows) > 1 and rows[0] != rows[1]:
                out.append([rows[1], rows[0], *rows[2:]])
        return [_shaped(r, shape) for r in out]


def _shaped(rows: list[list[Any]], shape: str) -> Any:
    """Rows as the answer shape wants them (one value, one row, or the table)."""
    if shape == "scalar":
        return rows[0][0]
    if shape == "row":
        return rows[0]
    return rows
