"""SQL analyst: the sandbox's attack table, caps, sessions, the NULL layer, the table verifier, tasks."""

import os
import pickle
import random
import statistics
import threading

import pytest

from toolgym.envs import markup as mk
from toolgym.envs.sources import MemorySource
from toolgym.envs.toolenv import make_env
from toolgym.envs.tools import Toolset
from toolgym.errors import WorldDataError
from toolgym.synth import get_family
from toolgym.synth.candidate import synthesize_world
from toolgym.synth.config import SynthConfig
from toolgym.synth.domains.world import DomainWorld
from toolgym.synth.sql import engine
from toolgym.synth.sql.tools import SqlSession, toolset
from toolgym.synth.sql.world import LAYER, NULL_SHARE, load, make_world
from toolgym.verifiers.verdict import verify

FAM = get_family("sql")


@pytest.fixture(scope="module")
def world():
    return make_world(7, 3)


@pytest.fixture
def session(world):
    s = SqlSession(world, time_cap_s=0.5)
    yield s
    s.close()


def call(session, name, **args):
    ts = Toolset(list(toolset("table", ("text", "integer"))))
    return ts.call(session, name, args)


def fact(world):
    return next(t for t in world.tables.values() if t.refs and t.noun)


# ------------------------------------------------------------------ the attack table
ATTACKS = [
    ("SELECT * FROM read_csv('/etc/passwd')", "disabled by configuration"),
    ("SELECT * FROM read_text('/etc/hostname')", "disabled by configuration"),
    ("SELECT * FROM glob('/etc/*')", "disabled by configuration"),
    ("COPY (SELECT 42) TO '/tmp/toolgym_sql_attack.csv'", "disabled by configuration"),
    ("ATTACH '/tmp/toolgym_sql_attack.duckdb' AS x", "disabled by configuration"),
    ("INSTALL httpfs", "disabled by configuration"),
    ("LOAD httpfs", "disabled through configuration"),
    ("SELECT * FROM read_csv('https://example.com/x.csv')", "disabled by configuration"),
    ("EXPORT DATABASE '/tmp/toolgym_sql_attack_dir'", "disabled by configuration"),
    ("SET memory_limit = '100GB'", "configuration has been locked"),
    ("PRAGMA memory_limit = '100GB'", "configuration has been locked"),
    ("SET enable_external_access = true", "configuration has been locked"),
    ("SET lock_configuration = false", "configuration has been locked"),
    ("RESET threads", "configuration has been locked"),
    ("SET threads = 16", "configuration has been locked"),
    ("CREATE TABLE x AS SELECT 1", "read-only"),
    ("DROP TABLE {t}", "read-only"),
    ("DELETE FROM {t}", "read-only"),
    ("UPDATE {t} SET id = 'x'", "read-only"),
    ("INSERT INTO {t} (id) VALUES ('x')", "read-only"),
    ("CREATE MACRO m(a) AS a", "read-only"),
    ("SELECT count(*) FROM {t} a, {t} b, {t} c, {t} d", "time cap"),  # a cross-join bomb on the data
    ("SELECT list(repeat('x', 1000)) FROM range(10000000)", "memory cap"),
    ("SELECT string_agg(repeat('x', 1000), ',') FROM range(3000000)", "memory cap"),
]


@pytest.mark.parametrize(("sql", "error"), ATTACKS, ids=[a[0][:40] for a in ATTACKS])
def test_each_attack_is_an_error_observation_and_the_next_query_runs(world, session, sql, error):
    t = fact(world)
    if error == "memory cap":  # the memory cap must stop it, not the time cap of a machine under load
        session.time_cap_s = 60.0
    before = call(session, "run_sql", query=f'SELECT count(*) FROM "{t.name}"')
    ok, msg = call(session, "run_sql", query=sql.format(t=f'"{t.name}"'))
    assert not ok and error in msg, msg
    ok, after = call(session, "run_sql", query=f'SELECT count(*) FROM "{t.name}"')
    assert ok and after == before[1] and after["rows"] == [[t.rows]]
    for path in ("/tmp/toolgym_sql_attack.csv", "/tmp/toolgym_sql_attack.duckdb", "/tmp/toolgym_sql_attack_dir"):
        assert not os.path.exists(path)


def test_an_attack_through_the_env_is_an_error_observation():
    task, world = tasks_of(1)[0]
    env = make_env("sql", source=MemorySource([(task, world)]), messages=False)
    env.reset(options={"task_id": task.task_id})
    obs, reward, term, trunc, info = env.step(mk.render_action([("run_sql", {"query": "COPY (SELECT 1) TO '/tmp/z'"})]))
    assert "disabled by configuration" in obs and not term and reward == 0.0
    obs, *_ = env.step(mk.render_action([("run_sql", {"query": "SELECT 41 + 1 AS answer"})]))
    assert '"rows":[[42]]' in obs.replace(" ", "")
    env.close()


def test_the_time_cap_interrupts_and_the_watchdog_spares_quick_queries(session):
    for _ in range(50):  # deadlines of finished queries never hit a later one
        assert call(session, "run_sql", query="SELECT 1")[0]
    ok, msg = call(session, "run_sql", query="SELECT count(*) FROM range(1000000) a, range(1000000) b")
    assert not ok and "0.5 s time cap" in msg


def test_results_are_compact_and_marked_when_truncated(session):
    ok, out = call(session, "run_sql", query="SELECT range AS n, DATE '2026-01-01' + range::INT AS day FROM range(120)")
    assert ok and out["columns"] == ["n", "day"] and len(out["rows"]) == engine.ROW_CAP
    assert out["truncated"] is True and out["row_count"] == f"> {engine.ROW_CAP}" and "LIMIT" in out["note"]
    assert out["rows"][1] == [1, "2026-01-02"]
    ok, out = call(session, "run_sql", query="SELECT 1.5::DECIMAL(4,2) AS d, NULL AS z, 'nan'::DOUBLE AS f")
    assert ok and out == {"columns": ["d", "z", "f"], "rows": [[1.5, None, None]], "row_count": 1}


def test_sessions_do_not_share_what_they_create_and_a_copy_says_so(world):
    a, b = SqlSession(world), SqlSession(world)
    assert call(a, "run_sql", query="CREATE TEMP TABLE mine AS SELECT 1 AS x")[0]
    assert call(a, "run_sql", query="SELECT x FROM mine")[1]["rows"] == [[1]]
    ok, msg = call(b, "run_sql", query="SELECT x FROM mine")
    assert not ok and "does not exist" in msg
    clone = pickle.loads(pickle.dumps(a))
    ok, out = call(clone, "run_sql", query="SELECT 2 AS y")
    assert ok and "copied" in out["note"]
    assert "note" not in call(clone, "run_sql", query="SELECT 2 AS y")[1]
    a.close(), b.close(), clone.close()


# ------------------------------------------------------------------ the result cache
@pytest.mark.parametrize(
    ("sql", "cached"),
    [
        ('SELECT p.x, COUNT(*) FROM "a" f JOIN "b" p ON f.k = p.id GROUP BY 1;', True),
        ("WITH m AS (SELECT date_trunc('month', d) AS m FROM t) SELECT m, count(*) FROM m GROUP BY 1", True),
        ("SELECT random()", False),
        ('SELECT "RANDOM"() AS r', False),
        ("SELECT * FROM t USING SAMPLE 5", False),
        ("SELECT current_date", False),
        ("SELECT age(d) FROM t", False),  # age of one argument counts from now
        ("SELECT getvariable('x')", False),
        ("SELECT * FROM query('SELECT 1')", False),
        ("SELECT * FROM duckdb_memory()", False),
        ("SELECT * FROM range(10)", False),
        ("SELECT 1; SELECT 2", False),
        ("CREATE TEMP TABLE x AS SELECT 1", False),
        ("SET VARIABLE x = 1", False),
        ("-- a comment first\nSELECT 1", False),
    ],
)
def test_which_queries_are_cacheable(sql, cached):
    assert engine.cacheable(sql) is cached


def test_the_cache_serves_pristine_sessions_only_and_never_what_a_session_made(world):
    t = fact(world).name
    count = f'SELECT count(*) AS n FROM "{t}"'
    a, b, c = SqlSession(world), SqlSession(world), SqlSession(world)
    results = world.database().results
    assert call(a, "run_sql", query=count)[1]["rows"] == [[fact(world).rows]]
    assert results.get((count, engine.ROW_CAP, a.time_cap_s)) is not None and a.pristine
    # b shadows the world's table with a temporary one of its own: it must see its table, and the
    # cache must neither serve b the world's count nor keep b's for the others
    assert call(b, "run_sql", query=f'CREATE TEMP TABLE "{t}" AS SELECT 1 AS x')[0] and not b.pristine
    assert call(b, "run_sql", query=count)[1]["rows"] == [[1]]
    assert call(c, "run_sql", query=count)[1]["rows"] == [[fact(world).rows]]
    hit = call(c, "run_sql", query=count)[1]
    hit["rows"][0][0] = -1  # a hit is a copy: changing it changes nothing stored
    assert call(a, "run_sql", query=count)[1]["rows"] == [[fact(world).rows]]
    r1, r2 = (call(a, "run_sql", query="SELECT random() AS r")[1]["rows"] for _ in range(2))
    assert r1 != r2 and not a.pristine  # a volatile query runs each time, and ends a's use of the cache
    a.close(), b.close(), c.close()


def test_tables_describe_and_unknown_names(world, session):
    ok, listing = call(session, "list_tables")
    assert ok and {t["name"] for t in listing["tables"]} == set(world.tables)
    t = fact(world)
    ok, desc = call(session, "describe_table", table=t.name)
    refs = {c["name"]: c["references"] for c in desc["columns"] if "references" in c}
    assert ok and refs == {c.name: f"{c.ref}.id" for c in t.refs}
    ok, msg = call(session, "describe_table", table=t.name[:-1] + "x")
    assert not ok and "list_tables" in msg


# ------------------------------------------------------------------ the world
def test_the_null_layer_blanks_measures_of_fact_tables_and_leaves_the_domain_rows(world):
    fresh = DomainWorld(world.domain.data)
    blanked = 0
    for name, t in world.tables.items():
        if t.entity not in world.domain.entities:
            continue
        assert list(world.domain.rows[t.entity].values()) == list(fresh.rows[t.entity].values())
        cols = world.columns(name)
        for c in t.columns:
            if (
                c.kind in ("money", "int", "rating", "duration", "percent")
                and t.refs
                and not world._optional(t.entity, c.attr)
            ):
                share = sum(v is None for v in cols[c.name]) / len(cols[c.name])
                assert share <= 3 * NULL_SHARE
                blanked += share > 0
    assert blanked


def test_worlds_round_trip_and_other_layers_are_refused(world):
    again = load(world.to_json())
    assert again.tables == world.tables and again.columns(fact(world).name) == world.columns(fact(world).name)
    copy = pickle.loads(pickle.dumps(world))
    assert copy.to_json() == world.to_json() and copy._db is None
    with pytest.raises(WorldDataError, match="layer"):
        load({**world.to_json(), "layer": LAYER + 1})
    for seed in range(6):  # every world has a table to analyse (redrawn from a derived seed if not)
        w = make_world(seed, 1)
        assert any(t.refs and {"date", "datetime"} & {c.kind for c in t.columns} for t in w.tables.values())


# ------------------------------------------------------------------ the verifier
def spec(expected, ordered=False, shape="table"):
    return {"kind": "table", "expected": expected, "ordered": ordered, "shape": shape, "rel_tol": 1e-6, "abs_tol": 0.01}


@pytest.mark.parametrize(
    ("answer", "passed"),
    [
        ([["a", 2, 10.5], ["b", 1, 3.25]], True),
        ([["b", 1, 3.25], ["a", 2, 10.5]], True),  # rows in any order
        ([[2, "a", 10.5], [1, "b", 3.25]], True),  # columns in any order
        ([["a", 2, 10.504], ["b", 1, 3.245]], True),  # rounded to 2 decimals
        ([["a", 2, 10.52], ["b", 1, 3.25]], False),
        ([["a", 2, 10.5]], False),
        ([["a", 2, 10.5], ["b", 1, 3.25], ["b", 1, 3.25]], False),
        ([["a", 2, 10.5, 0], ["b", 1, 3.25, 0]], False),
        ([["a", 1, 10.5], ["b", 2, 3.25]], False),  # the same column values, other rows
        ([["A", 2, 10.5], ["b", 1, 3.25]], False),
        ([["a", True, 10.5], ["b", 1, 3.25]], False),
        ([["a", "2", 10.5], ["b", 1, 3.25]], False),
        ("a 2 10.5", False),
    ],
)
def test_the_table_verifier(answer, passed):
    assert verify(spec([["a", 2, 10.5], ["b", 1, 3.25]]), answer, None).passed is passed


def test_order_counts_only_when_asked_and_shapes():
    ordered = spec([["x", 3], ["y", 2]], ordered=True)
    assert verify(ordered, [[3, "x"], [2, "y"]], None).passed
    assert not verify(ordered, [["y", 2], ["x", 3]], None).passed
    assert verify(spec([[7.5]], shape="scalar"), 7.5, None).passed
    assert not verify(spec([[7.5]], shape="scalar"), [7.5], None).passed
    assert verify(spec([["k", 4]], shape="row"), [4, "k"], None).passed
    assert not verify(spec([["k", 4]], shape="row"), [["k", 4]], None).passed
    dup = spec([["a", 1], ["a", 1], ["b", 1]])
    assert not verify(dup, [["a", 1], ["b", 1], ["b", 1]], None).passed


# ------------------------------------------------------------------ tasks
def tasks_of(difficulty, worlds=1, per_world=4):
    out = []
    for w in range(worlds):
        config = SynthConfig(
            family="sql", difficulty=(difficulty, difficulty), seed=2, tasks_per_world=per_world, workers=1
        )
        res = synthesize_world(config, w)
        world = FAM.load_world(res.world.data)
        out += [(o.task, world) for o in res.outcomes if o.status == "shipped"]
    return out


def test_reference_calls_grow_with_difficulty_and_plausible_bluffs_score_zero():
    calls = {}
    for d in (1, 3, 5):
        shipped = []
        for w in range(2):
            config = SynthConfig(family="sql", difficulty=(d, d), seed=4, tasks_per_world=3, workers=1)
            res = synthesize_world(config, w)
            shipped += [o for o in res.outcomes if o.status == "shipped"]
        assert shipped
        calls[d] = statistics.median(o.trajectory.tool_calls for o in shipped)
        rng = random.Random(d)
        for o in shipped:  # the right shape, every number within 5% of the truth: still 0
            spec_ = o.task.verifier_spec
            near = [
                [v if isinstance(v, str) else type(v)(v * rng.uniform(1.02, 1.05) + 1) for v in r]
                for r in spec_["expected"]
            ]
            answer = near[0][0] if spec_["shape"] == "scalar" else near[0] if spec_["shape"] == "row" else near
            assert not verify(spec_, answer, None).passed
    assert calls[1] < calls[3] < calls[5], calls


def test_every_archetype_is_drawn_at_difficulty_1_and_four_are_left_out_above():
    """Difficulty 1 needs a table ``filter`` reads; from 2 the world check is the harder kinds' need.

    ``conference``, ``course_registration``, ``restaurant_chain`` and ``school`` never meet the
    latter (world.analysable); that rule once applied at difficulty 1 too and left them out there.
    """
    from toolgym.synth.domains.family import pick_archetype
    from toolgym.synth.domains.world import archetype, archetype_ids, generate
    from toolgym.synth.sql.world import SqlWorld, analysable

    for arch in archetype_ids():
        assert analysable(SqlWorld(DomainWorld(generate(archetype(arch), 0, 1))), 1), arch
    for arch in ("conference", "course_registration", "restaurant_chain", "school"):
        seed = next(s for s in range(10_000) if pick_archetype(s) == arch)
        world = make_world(seed, 1)
        assert FAM.world_archetype(world) == arch and not analysable(world, 2)
        draft = FAM.make_task(world, 1, random.Random(0))
        assert draft is not None and draft.meta["kind"] in ("filter", "total")


def test_every_kind_ships_and_its_query_has_what_it_claims():
    kinds = {}
    for d in (2, 3, 4, 5):
        config = SynthConfig(family="sql", difficulty=(d, d), seed=8, tasks_per_world=6, workers=1)
        for o in (o for w in range(2) for o in synthesize_world(config, w).outcomes):
            if o.status == "shipped":
                kinds[o.task.meta["kind"]] = o.trajectory.actions[-2]
    assert {"group", "top1", "join_group", "top", "top_per_group", "monthly"} <= set(kinds), sorted(kinds)
    assert "JOIN" in kinds["join_group"] and "GROUP BY" in kinds["join_group"]
    assert "ROW_NUMBER() OVER" in kinds["top_per_group"] and "OVER (ORDER BY" in kinds["monthly"]


# ------------------------------------------------------------------ datasets, copies, forks
def test_a_dataset_round_trip_replays_every_reference_and_a_copy_mid_episode_goes_on(tmp_path):
    import gymnasium as gym

    from toolgym.data.dataset import Dataset
    from toolgym.envs.rollout import ProgramPolicy, run_episode
    from toolgym.synth.run import synthesize

    path = tmp_path / "sql.duckdb"
    synthesize(SynthConfig(family="sql", count=6, difficulty=(2, 4), seed=1, tasks_per_world=3, workers=1), path)
    env = gym.make("toolgym/SQLAnalyst-v0", dataset=path)
    with Dataset(path, read_only=True) as ds:
        ids = ds.task_ids()
        tasks = [ds.task(t) for t in ids]
    assert len(ids) == 6
    for task in tasks:  # worlds regenerated from their stored inputs
        ref = ProgramPolicy(FAM.reference(task.params, task.tool_config))
        assert run_episode(env, ref, options={"task_id": task.task_id}).reward == 1.0
    env.reset(options={"task_id": ids[0]})
    query = mk.render_action([("run_sql", {"query": "SELECT 6 * 7 AS n"})])
    first = env.step(query)[0]
    clone = pickle.loads(pickle.dumps(env))
    obs = clone.step(query)[0]
    assert '"rows":[[42]]' in obs.replace(" ", "") and "copied" in obs and "copied" not in first
    assert "copied" not in env.step(query)[0]
    clone.close(), env.close()


def test_a_dataset_source_keeps_its_worlds_within_a_byte_budget(tmp_path, monkeypatch):
    """32 kept sql worlds held ~300 MB (a DuckDB instance each): the source evicts by world_bytes too."""
    from toolgym.data import source as data_source
    from toolgym.synth import fly
    from toolgym.synth.run import synthesize

    assert data_source.DATASET_BYTES == fly.FLY_BYTES  # one budget for both sources
    path = tmp_path / "sql.duckdb"
    synthesize(
        SynthConfig(family="sql", count=3, difficulty=(1, 1), tasks_per_world=1, workers=1, random_tries=2), path
    )
    first = data_source.DatasetSource(FAM, path, None, None)
    ids = first.task_ids
    weight = FAM.world_bytes(first.get(ids[0])[1])
    assert 7 * 2**20 <= weight <= 12 * 2**20  # a DuckDB instance and its rows (family.py, measured)
    monkeypatch.setattr(data_source, "DATASET_BYTES", int(2.2 * weight))
    source = data_source.DatasetSource(FAM, path, None, None)
    worlds = [source.get(t)[0].world_id for t in ids]
    held = source._worlds
    assert len(set(worlds)) == 3 and len(held) == 2 and sum(held.weights.values()) <= 2.2 * weight
    assert list(held)[-1] == worlds[-1]  # the newest stays
    assert pickle.loads(pickle.dumps(source))._worlds.budget == int(2.2 * weight)


def test_a_forked_process_builds_its_own_database(world):
    import multiprocessing

    parent = SqlSession(world)  # open, with a live connection: the child inherits both (a fork copies memory)
    assert call(parent, "run_sql", query="SELECT 1 AS x")[0]
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_count_in_child, args=(parent, fact(world).name, queue))
    held, release = threading.Event(), threading.Event()

    def hold() -> None:  # the race, made sure: another thread (as the watchdog's) holds its lock at the fork
        with engine.WATCHDOG._cond:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(30)
    proc.start()
    release.set()
    holder.join()
    try:
        child = queue.get(timeout=60)
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
    assert proc.exitcode == 0 and child[0] != os.getpid() and child[1] == [[fact(world).rows]]
    assert child[2] != world.database().path  # its own database, not the parent's
    assert call(parent, "run_sql", query="SELECT 2 AS x")[1]["rows"] == [[2]]
    parent.close()


def _count_in_child(session, table, queue):
    rows = engine.run_query(session.cursor(), f'SELECT count(*) FROM "{table}"')["rows"]
    path = session.world.database().path
    session.close()  # closes the child's own connection; the inherited one is left alone
    queue.put((os.getpid(), rows, path))


def test_the_random_pass_bound_holds_against_sampling(world):
    from collections import Counter

    from toolgym.synth.sql import gates

    world.cache[("pool", "t", "c")] = ["a", "b", "c", "d", "e"]
    world.cache[("pool", "t", "x")] = [1.0, 2.0, 2.004, 7.5]
    rng = random.Random(0)
    cases = [  # (spec, expected column, exact chance)
        ({"from": ["t", "c"], "distinct": True}, ["b", "d"], 1 / 10),
        ({"from": ["t", "c"]}, ["b", "b"], 1 / 25),
        ({"from": ["t", "x"]}, [2.0, 7.5], 2 * 2 / 16),  # 2.004 is 2.0 within the tolerance
        ({"int": [0, 3]}, [1, 3, 3], 3 / 64),
    ]
    for spec, want, exact in cases:
        bound = gates._column_chance(world, spec, want, 0.01)
        assert bound == pytest.approx(exact)
        hits = sum(
            Counter(round(v, 1) if not isinstance(v, str) else v for v in gates.draw(world, spec, len(want), rng))
            == Counter(round(v, 1) if not isinstance(v, str) else v for v in want)
            for _ in range(6000)
        )
        assert hits / 6000 <= exact + 4 * (exact / 6000) ** 0.5 + 1e-3
        assert hits / 6000 >= exact - 4 * (exact / 6000) ** 0.5 - 1e-3
    # a sum of 3 draws: the first must fall in a 0.03-wide window given the others (2.0 and 2.004: 2 of 4)
    assert gates._column_chance(world, {"sum": ["t", "x", 3]}, [5.0], 0.01) == pytest.approx(0.5)
    sums = [gates.draw(world, {"sum": ["t", "x", 3]}, 1, rng)[0] for _ in range(6000)]
    assert 0.1 < sum(abs(v - 5.0) <= 0.01 for v in sums) / 6000 <= 0.5  # exact: 12 of 64 draws


def test_every_gate_answer_fits_the_submit_schema():
    """A schema error would not end a gate's episode: it would run to the turn limit and test the schema."""
    rng = random.Random(0)
    seen = 0
    for d in (1, 2, 3, 4, 5):
        for task, world in tasks_of(d, worlds=1, per_world=3):
            ts = Toolset(list(FAM.tools(task.tool_config)))
            expected = task.verifier_spec["expected"]
            shape = task.verifier_spec["shape"]
            ref = expected[0][0] if shape == "scalar" else expected[0] if shape == "row" else expected
            answers = [FAM.random_answer(world, task, rng) for _ in range(3)]
            answers += [FAM.bluff_answer(task, rng) for _ in range(3)] + FAM.perturb(world, task, ref, rng)
            for a in answers:
                checked = ts.validate("submit", {"answer": a})
                assert not isinstance(checked, str), (task.meta["kind"], a, checked)
                assert not verify(task.verifier_spec, a, None).passed
                seen += 1
    assert seen > 50


def test_the_indexed_pool_counts_what_the_verifier_would_take():
    """``_hits`` on a pool's index equals the plain count (numbers within the tolerance, texts canonical)."""
    from toolgym.synth.sql import gates
    from toolgym.verifiers.answers import as_number, canonical

    def plain(value, values, tol):
        x = as_number(value)
        if x is not None:
            return sum(1 for p in values if (y := as_number(p)) is not None and abs(x - y) <= tol + 1e-9 * abs(x))
        return sum(1 for p in values if not isinstance(p, int | float) and canonical(p) == canonical(value))

    rng = random.Random(3)
    for _ in range(300):
        values = [round(rng.uniform(-9, 9), rng.choice([0, 1, 2, 3])) for _ in range(rng.randint(0, 30))]
        values += [rng.choice(["North", "north ", "N-orth", "x"]) for _ in range(3)] + [rng.randint(-3, 3), True]
        index = gates._index(values)
        for v in [*values[:8], 2.0, 2.01, "north", True, 1e20]:
            for tol in (0.0, 0.005, 0.01):
                assert gates._hits(v, index, tol) == plain(v, values, tol), (v, tol)


def test_worlds_built_at_once_by_threads_each_get_their_own_tables():
    """One builder instance per process writes every world file: threads take turns, a failed build leaves it usable."""
    worlds = [make_world(s, 1) for s in (21, 22, 23, 24)]
    broken = make_world(25, 1)
    broken.columns = lambda name: (_ for _ in ()).throw(RuntimeError("boom"))  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="boom"):
        broken.database()
    errors: list[BaseException] = []

    def build(w):
        try:
            w.database()
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=build, args=(w,)) for w in worlds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all(w._db is not None for w in worlds), errors
    for w in worlds:
        for name, t in w.tables.items():
            assert w.database().con.execute(f'SELECT count(*) FROM "{name}"').fetchone() == (t.rows,)


def test_the_result_cache_is_bounded_by_results_and_cells():
    cache = engine.ResultCache(size=3, cells=92)  # a one-row result weighs 2 (1 cell, 1 for its key)
    small = {"columns": ["a"], "rows": [[1]], "row_count": 1}
    for i in range(5):
        cache.put((f"q{i}", 50, 2.0), small)
    assert len(cache) == 3 and cache.get(("q0", 50, 2.0)) is None and cache.get(("q4", 50, 2.0)) == small
    wide = {"columns": ["a", "b"], "rows": [[i, i] for i in range(45)], "row_count": 45}
    cache.put(("wide", 50, 2.0), wide)  # weighs 91: the others go
    assert len(cache) == 1 and cache.get(("wide", 50, 2.0)) == wide
    cache.put(("huge", 50, 2.0), {"columns": ["a"], "rows": [[i] for i in range(200)], "row_count": 200})
    assert len(cache) == 0  # a result over the whole bound is not kept


def test_the_heuristic_solves_easy_tasks_and_its_share_falls_with_difficulty():
    """One query, dates as written, one table, no window (synth/sql/heuristic.py): d1 mostly, d5 never."""
    from toolgym.bench.synth import heuristic_reward
    from toolgym.synth.candidate import build_task
    from toolgym.synth.sql import heuristic

    shares = {}
    for d in (1, 3, 5):
        world, rewards = make_world(100, d), []
        for k in range(6):
            draft = FAM.make_task(world, d, random.Random(k))
            if draft is not None:
                task = build_task(FAM, "w", f"t{k}", d, "train", draft)
                rewards.append(heuristic_reward(FAM, task, world))
        shares[d] = statistics.mean(rewards)
    assert shares[1] >= 0.5 and shares[1] > shares[3] >= shares[5] == 0.0
    share_task = {"kind": "share", "shape": "table", "query": {"table": "t", "fk": "a", "measure": "m", "date": None}}
    assert "OVER" not in heuristic.query(share_task) and "JOIN" not in heuristic.query(share_task)


def test_a_world_never_ships_one_question_twice():
    """sql d2 worlds host few group-bys (39% of drafts repeated one before): repeats drop as ``duplicate``."""
    config = SynthConfig(family="sql", count=10, difficulty=(2, 2), tasks_per_world=12)
    res = synthesize_world(config, 0)
    shipped = [str(sorted(o.task.params.items())) for o in res.outcomes if o.task is not None]
    assert len(set(shipped)) == len(shipped) > 0
    assert any(o.status == "duplicate" for o in res.outcomes)


def test_sum_columns_have_a_random_pass_bound_above_the_sampled_chance():
    """The group/top1/monthly kinds' sum columns get a term (gates._spread_chance), so one try replaces eight."""
    from collections import Counter

    from toolgym.synth.candidate import build_task
    from toolgym.synth.sql import gates

    assert gates._widest_window([1.0, 1.01, 1.02, 5.0], 0.03) == 3 and gates._widest_window([2.0], 0.0) == 1
    world = make_world(100, 2)
    drafts = [FAM.make_task(world, 2, random.Random(k)) for k in range(12)]
    tasks = [build_task(FAM, "w", f"t{k}", 2, "train", d) for k, d in enumerate(drafts) if d is not None]
    bounded = [t for t in tasks if FAM.random_pass(world, t) is not None]
    assert any(t.meta["kind"] == "group" for t in bounded)  # had no bound before: a sum column had no term
    spec = next(s for t in tasks for s in t.meta["gate"] if "sum" in s)
    rng = random.Random(0)
    draws = Counter(gates.draw(world, {"sum": [*spec["sum"][:2], 3]}, 1, rng)[0] for _ in range(20_000))
    value, hits = draws.most_common(1)[0]
    bound = gates._spread_chance(world, {"sum": [*spec["sum"][:2], 3]}, [value], 0.01)
    assert bound is not None and hits / 20_000 <= 1.5 * bound + 0.002
