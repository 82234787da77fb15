"""`bench synth`'s hardness and distinctness figures, recomputed on a family with write tools."""

from __future__ import annotations

import pytest

from toolgym.bench.synth import distinctness, hardness
from toolgym.data.dataset import Dataset
from toolgym.synth.config import SynthConfig
from toolgym.synth.run import synthesize


def test_hardness_counts_reference_writes_and_tools_and_the_run_its_yield(tmp_path):
    out = tmp_path / "inv.duckdb"
    synthesize(SynthConfig(family="inventory", count=12, difficulty=(1, 3), workers=1, random_tries=2), out)
    rows = hardness(out, samples_per_task=5, tasks_per_difficulty=2)
    # the toy reference asks find_item per item, then moves each: difficulty + 1 items
    assert [(r.difficulty, r.ref_writes, r.ref_tools) for r in rows] == [(d, d + 1, 3) for d in (1, 2, 3)]
    assert all(r.heuristic is None and r.heuristic_tasks == 0 for r in rows)  # no heuristic: the CLI shows "–"
    d = distinctness(out, "inventory")
    with Dataset(out, read_only=True) as ds:
        worlds = ds.con.execute("SELECT count(DISTINCT world_id) FROM tasks").fetchone()[0]
        gates = ds.gate_counts("inventory")["inventory"]
    assert (d.worlds, d.toolsets, d.schemas, d.archetypes) == (worlds, 1, 0, 0)
    assert d.max_worlds_per_toolset == worlds and d.shipped == 12 == gates["shipped"]
    assert d.candidates == sum(gates.values()) and 0 < d.yield_ <= 1


def test_bench_env_family_rows_time_a_read_call_from_a_reference_turn_and_a_reset(tmp_path):
    from toolgym.bench.env import family_rows

    step, reset = family_rows("inventory", 5, 40, tmp_path)
    assert step.name == "inventory d5 read step" and "find_item" in step.note  # the reference's first turn reads
    assert reset.name == "inventory d5 reset"
    assert 0 < step.median_us <= step.p90_us and 0 < reset.median_us <= reset.p90_us


@pytest.mark.slow  # ~6 s: synthesizes 24 sql tasks and times 280 steps
def test_bench_env_sql_rows_time_a_join_group_by_cached_and_uncached(tmp_path):
    from toolgym.bench.env import family_rows

    step, uncached, reset = family_rows("sql", 3, 40, tmp_path)
    assert step.name == "sql d3 read step" and "run_sql, a join + group-by" in step.note
    rows = int(step.note.split(" rows in ")[0].rsplit(" ", 1)[1].replace(",", ""))
    assert rows >= 40  # the database is at least SkyRL's baseline's size (40 rows)
    assert uncached.name == "sql d3 read step, uncached" and "join + group-by" in uncached.note
    assert reset.name == "sql d3 reset"
    assert step.median_us < uncached.median_us  # a cache hit against a DuckDB plan and run (~10x apart at least)


def test_the_sql_step_compared_with_skyrl_is_a_join_and_a_group_by():
    from toolgym.bench.env import sql_join_group
    from toolgym.envs import markup as mk

    def call(name, query):
        return mk.parse_action(mk.render_action([(name, {"query": query})])).tool_calls[0]

    grouped = "SELECT p.region, count(*) FROM orders f JOIN shops p ON f.shop_id = p.id GROUP BY p.region"
    assert sql_join_group(call("run_sql", grouped))
    assert not sql_join_group(call("run_sql", "SELECT region, count(*) FROM shops GROUP BY region"))
    assert not sql_join_group(call("run_sql", "SELECT * FROM orders f JOIN shops p ON f.shop_id = p.id"))
    assert not sql_join_group(call("describe_table", grouped))


def test_the_sql_targets_line_checks_the_cached_row_and_prints_the_uncached_ratio():
    from toolgym.bench.env import SKYRL_MISSING, BenchRow, sql_target_lines

    skyrl = BenchRow("skyrl-gym sql step", 700.0, 800.0)
    step, uncached = BenchRow("sql d3 read step", 28.0, 30.0), BenchRow("sql d3 read step, uncached", 875.0, 900.0)
    (line,) = sql_target_lines([step, uncached, skyrl])
    assert "target ≥ 5x" in line and "cached 25.0x, met" in line and "uncached 0.80x" in line
    (line,) = sql_target_lines([BenchRow("sql d5 read step", 200.0, 210.0), skyrl])
    assert "cached 3.5x, MISSED" in line and "uncached" not in line
    (line,) = sql_target_lines([step, uncached, SKYRL_MISSING])
    assert "not compared" in line


def test_hardness_rows_carry_the_domains_heuristic_share(tmp_path):
    out = tmp_path / "dom.duckdb"
    synthesize(SynthConfig(family="domains", count=20, workers=1, random_tries=2), out)
    rows = hardness(out, samples_per_task=5, tasks_per_difficulty=1, heuristic_tasks=3)
    assert [r.difficulty for r in rows] == [1, 2, 3, 4, 5]
    for r in rows:
        assert r.heuristic_tasks == min(r.tasks, 3) and r.heuristic is not None and 0 <= r.heuristic <= 1
    assert rows[0].heuristic == 1.0  # a lookup: one find, one row (the falling share: tests/test_domains_heuristic.py)


def test_every_synthesis_target_names_a_registered_family():
    from toolgym.bench.synth import SYNTH_TARGETS
    from toolgym.synth import FAMILIES

    assert set(SYNTH_TARGETS) <= set(FAMILIES) and all(v > 0 for v in SYNTH_TARGETS.values())
