"""SQL analyst: value bombs that escape DuckDB's own caps are stopped by the worker process."""

import os
import pickle
import time

import pytest

from toolgym.envs.tools import Toolset
from toolgym.synth.sql import engine, worker
from toolgym.synth.sql.tools import RESTART_NOTE, SqlSession, toolset
from toolgym.synth.sql.world import make_world

CAP_S = 0.5
#: Seconds past cap + grace a killed query may still take on a loaded machine (SIGKILL and reap).
SLACK_S = 3.0


@pytest.fixture(scope="module")
def world():
    return make_world(11, 2)


def call(session, query):
    return Toolset(list(toolset("scalar", ("integer",)))).call(session, "run_sql", {"query": query})


def peak_rss_mb() -> float:
    """This process's peak resident memory since the last reset (MB)."""
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["VmHWM"].split()[0]) / 1024


def reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:  # "5" resets the peak (Linux >= 4.0)
        f.write("5")


BOMBS = [
    "SELECT list(range(100000000)) AS l",  # one 800 MB list: DuckDB's memory limit does not see it
    "SELECT repeat('ab', 100000000) AS s",  # one 200 MB string
    "SELECT string_agg(repeat('x', 100000), ',') AS s FROM range(20000)",  # one 2 GB aggregate value
    "SELECT list(range(10000000)) AS l",  # fits the worker's memory; no interrupt is checked: killed
]


@pytest.mark.parametrize("sql", BOMBS, ids=[b[:40] for b in BOMBS])
def test_a_value_bomb_is_an_error_within_the_deadline_and_the_host_is_unaffected(world, sql):
    s = SqlSession(world, time_cap_s=CAP_S)
    assert call(s, "SELECT 41 + 1 AS n") == (True, {"columns": ["n"], "rows": [[42]], "row_count": 1})
    reset_peak_rss()
    before = peak_rss_mb()
    start = time.monotonic()
    ok, msg = call(s, sql)
    took = time.monotonic() - start
    assert not ok and ("time cap" in msg or "memory cap" in msg or "out of memory" in msg), msg
    assert took < CAP_S + worker.GRACE_S + SLACK_S, took
    assert peak_rss_mb() - before < 100  # the value was never in this process
    s.time_cap_s = 30.0  # a loaded machine's fresh worker is slow; this checks memory, not time
    ok, out = call(s, "SELECT len(range(1000000)) AS n")  # a worker that kept the bomb's memory fails this
    assert ok and out["rows"] == [[1000000]], out
    s.close()


def test_a_kill_says_the_session_restarted_and_other_sessions_are_told_once(world, monkeypatch):
    worker.worker().kill()  # a fresh worker: one that ran bombs before may fail the list for memory at once
    a, b = SqlSession(world, time_cap_s=CAP_S), SqlSession(world)
    assert call(b, "CREATE TEMP TABLE mine AS SELECT 7 AS x")[0]
    pid = worker.worker()._proc.pid
    # the parent's deadline 0.1 s, before the worker's own interrupt at the cap: a kill, however fast the machine
    monkeypatch.setattr(worker, "GRACE_S", 0.1 - CAP_S)
    ok, msg = call(a, "SELECT list(range(10000000)) AS l")
    monkeypatch.setattr(worker, "GRACE_S", 1.0)
    assert not ok and "killed" in msg and "temporary tables" in msg, msg
    assert worker.worker()._proc.pid != pid  # the next worker is already starting
    ok, out = call(b, "SELECT 1 AS n")
    assert ok and out["note"] == RESTART_NOTE and out["rows"] == [[1]]
    assert "note" not in call(b, "SELECT 1 AS n")[1]
    ok, msg = call(b, "SELECT x FROM mine")
    assert not ok and "does not exist" in msg
    assert "note" not in call(a, "SELECT 1 AS n")[1]  # a was told in its error
    a.close(), b.close()


def test_cache_hits_never_reach_the_worker_and_the_worker_runs_under_its_memory_limit(world):
    s = SqlSession(world)
    t = next(iter(world.tables.values()))
    q = f'SELECT count(*) AS n FROM "{t.name}"'
    assert call(s, q)[1]["rows"] == [[t.rows]]
    w = worker.worker()
    w.kill(respawn=False)  # no worker at all: a hit must not need one
    assert call(SqlSession(world), q)[1]["rows"] == [[t.rows]] and w._proc is None
    assert call(s, "SELECT 1 AS n")[0]  # a miss starts one
    with open(f"/proc/{w._proc.pid}/limits") as f:
        limit = next(line for line in f if line.startswith("Max address space"))
    assert str(worker.WORKER_MEMORY) in limit
    s.close()


def test_sessions_pickle_without_the_worker_and_trusted_sql_stays_in_process(world):
    s = SqlSession(world)
    assert call(s, "SELECT 1 AS n")[0]
    assert isinstance(s.cursor(), engine.RemoteSession)
    clone = pickle.loads(pickle.dumps(s))
    assert clone._cursor is None and call(clone, "SELECT 3 AS n")[1]["rows"] == [[3]]
    local = SqlSession(world, isolated=False)
    assert call(local, "SELECT 4 AS n")[1]["rows"] == [[4]] and not isinstance(local.cursor(), engine.RemoteSession)
    assert world.database().con.execute("SELECT 5").fetchone() == (5,)
    s.close(), clone.close(), local.close()
    assert os.getpid() == worker.worker().pid


def test_synthesis_episodes_query_in_process_and_every_env_outside_is_isolated():
    from toolgym.synth import get_family
    from toolgym.synth.family import trusted_episodes
    from toolgym.synth.sql.tools import SqlSession

    fam = get_family("sql")
    world = make_world(11, 2)
    assert SqlSession.__init__.__defaults__[-1] is None  # isolated unless told or trusted
    with fam.synthesis_scope():
        inside = SqlSession(world)
    assert inside.isolated is False and SqlSession(world).isolated is True
    with trusted_episodes():
        assert SqlSession(world, isolated=True).isolated is True  # an explicit choice wins
