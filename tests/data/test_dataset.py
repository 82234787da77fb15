"""The dataset store: deterministic rows, transactional resume after SIGKILL, corrupt files named."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from toolgym.data.dataset import Dataset
from toolgym.data.export import HF_SPLITS, export
from toolgym.errors import ConfigError, DatasetError
from toolgym.spec import SPLITS, check_split
from toolgym.synth.config import SynthConfig
from toolgym.synth.run import synthesize

TABLES = {
    "worlds": "world_id",
    "toolsets": "toolset_id",
    "tasks": "task_id",
    "trajectories": "task_id",
    "candidates": "family, world_index, task_index",
    "manifest": "family",
}


def dump(path: Path) -> dict:
    con = duckdb.connect(str(path), read_only=True)
    out = {t: con.execute(f"SELECT * FROM {t} ORDER BY {k}").fetchall() for t, k in TABLES.items()}
    con.close()
    return out


def test_same_seed_and_config_give_identical_rows_whatever_the_workers(trip_dataset, tmp_path):
    # The 1-worker run is the session's trip dataset (conftest.py: count 30, seed 7, 1 worker),
    # synthesized once for every test that reads one.
    a, b, c = trip_dataset, tmp_path / "b.duckdb", tmp_path / "c.duckdb"
    synthesize(SynthConfig(family="trip", count=30, seed=7, workers=2), b)
    assert dump(a) == dump(b)
    synthesize(SynthConfig(family="trip", count=30, seed=8, workers=1), c)
    assert dump(c)["tasks"] != dump(a)["tasks"]
    with Dataset(a, read_only=True) as ds:
        assert len(ds.task_ids()) == 30
        splits = {ds.task(t).split for t in ds.task_ids()}
        assert splits <= {"train", "val", "test"}


def test_splits_are_by_world(trip_dataset):
    con = duckdb.connect(str(trip_dataset), read_only=True)
    rows = con.execute("SELECT world_id, count(DISTINCT split) FROM tasks GROUP BY world_id").fetchall()
    assert rows and all(n == 1 for _, n in rows)
    mismatched = con.execute("SELECT count(*) FROM tasks t JOIN worlds w USING (world_id) WHERE t.split != w.split")
    assert mismatched.fetchone()[0] == 0


def test_growing_a_run_equals_running_it_at_once(trip_dataset, tmp_path):
    # Run at once: the session's trip dataset (conftest.py: count 30, seed 7, 1 worker).
    a, b = tmp_path / "a.duckdb", trip_dataset
    synthesize(SynthConfig(family="trip", count=10, seed=7, workers=1), a)
    synthesize(SynthConfig(family="trip", count=30, seed=7, workers=1), a)
    assert dump(a) == dump(b)
    with pytest.raises(ConfigError, match="different settings"):
        synthesize(SynthConfig(family="trip", count=21, seed=9, workers=1), a)


def children(pid: int) -> list[int]:
    """The pids of a process's children (from /proc: Linux)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_resume_after_sigkill_of_a_real_synth_process(tmp_path):
    """Kill -9 mid-run: the file holds the last committed batch, the workers die too, a rerun resumes."""
    exe = shutil.which("toolgym") or pytest.skip("toolgym console script not installed")
    killed, whole = tmp_path / "killed.duckdb", tmp_path / "whole.duckdb"
    args = ["--count", "400", "--seed", "1", "--workers", "2", "--difficulty", "1-5"]
    proc = subprocess.Popen([exe, "synth", *args, "--out", str(killed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wal = killed.with_name(killed.name + ".wal")
    deadline = time.time() + 120
    while not wal.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert proc.poll() is None, "synth finished before it could be interrupted; raise --count"
    workers = children(proc.pid)
    assert len(workers) == 2, workers
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # A worker still importing when its parent dies sets PR_SET_PDEATHSIG only in its initializer,
    # which then sees the parent gone and exits: on a loaded 2-core machine that import alone took
    # over 10 s (the old deadline, a flake). A leak is a worker that never exits, so allow 60 s.
    deadline = time.time() + 60
    while any(Path(f"/proc/{w}").exists() for w in workers) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{w}").exists() for w in workers), "the workers outlived their killed parent"
    with Dataset(killed, read_only=True) as ds:  # the file opens cleanly: last committed batch
        partial = len(ds.task_ids())
    assert 0 <= partial < 400
    out = subprocess.run([exe, "synth", *args, "--out", str(killed)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "resumed" in out.stdout or partial == 0
    synthesize(SynthConfig(family="trip", count=400, seed=1, workers=2, difficulty=(1, 5)), whole)
    assert dump(killed) == dump(whole)


def test_corrupt_and_foreign_files_are_named(tmp_path):
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(DatasetError, match="not a readable toolgym dataset"):
        Dataset(junk, read_only=True)
    foreign = tmp_path / "foreign.duckdb"
    duckdb.connect(str(foreign)).execute("CREATE TABLE t (x INT)").close()
    with pytest.raises(DatasetError, match="not a toolgym dataset"):
        Dataset(foreign, read_only=True)
    with pytest.raises(DatasetError, match="does not exist"):
        Dataset(tmp_path / "missing.duckdb", read_only=True)


@pytest.mark.parametrize("kwargs", [{}, {"read_only": True}, {"read_only": False}])
@pytest.mark.parametrize("name", ["typo.duckdb", "no/such/dir/typo.duckdb"])
def test_opening_a_missing_path_without_create_creates_nothing(tmp_path, kwargs, name):
    path = tmp_path / name
    with pytest.raises(DatasetError, match=re.escape(f"no dataset at {path}: the file does not exist")):
        Dataset(path, **kwargs)
    assert list(tmp_path.iterdir()) == []  # neither the file nor its directory was made
    with Dataset(path, create=True) as ds:  # create=True is how an empty dataset is started
        assert ds.task_ids() == []
    assert path.is_file()


def test_gate_counts_and_manifest(trip_dataset):
    with Dataset(trip_dataset, read_only=True) as ds:
        counts = ds.gate_counts()["trip"]
        assert counts["shipped"] == 30 and sum(counts.values()) >= 30
        m = ds.manifest("trip")
        assert m["config"]["seed"] == 7 and m["family_version"] == 1 and m["toolgym_version"]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_export_loads_in_hugging_face_datasets(trip_dataset, tmp_path, fmt):
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "trip"
    counts = export(trip_dataset, out, fmt)
    with Dataset(trip_dataset, read_only=True) as ds:
        want = {HF_SPLITS[r["split"]]: 0 for r in ds.summary()["tasks"]}
        for r in ds.summary()["tasks"]:
            want[HF_SPLITS[r["split"]]] += r["count"]
    assert counts == want and sum(counts.values()) == 30
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{name}.{fmt}" for name in want)
    hf = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    assert {name: hf[name].num_rows for name in hf} == want
    row = hf[next(iter(want))][0]
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["reference"][0]["role"] == "assistant" and row["reference"][0]["tool_calls"]
    assert row["reference"][-1]["role"] == "tool"
    tools = json.loads(row["tools"])
    assert any(t["function"]["name"] == "submit" for t in tools)
    assert json.loads(row["verifier"])["kind"] == "itinerary"
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_export_of_an_empty_or_unknown_split_is_an_error(tmp_path):
    ds = tmp_path / "held.duckdb"
    synthesize(SynthConfig(family="ledger", count=4, workers=1, holdout=True), ds)  # every world in test
    with pytest.raises(ConfigError, match="no tasks in split 'train'"):
        export(ds, tmp_path / "x", "jsonl", split="train")
    with pytest.raises(ConfigError, match=r"unknown split 'nope'; splits are train, val, test"):
        export(ds, tmp_path / "x", "jsonl", split="nope")
    assert not (tmp_path / "x").exists() and not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    assert export(ds, tmp_path / "x", "jsonl") == {"test": 4}


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ("tset", "unknown split 'tset' (did you mean test?); splits are train, val, test"),
        ("validation", "unknown split 'validation' (did you mean val?)"),
        ("Train", "unknown split 'Train'"),
        ("", "unknown split ''"),
    ],
)
def test_unknown_splits_are_refused_by_name(trip_dataset, split, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_split(split)
    with Dataset(trip_dataset, read_only=True) as ds:
        with pytest.raises(ConfigError, match=re.escape(message)):
            ds.task_ids(split=split)
        with pytest.raises(ConfigError, match=re.escape(message)):
            next(ds.rows(split=split))
        for known in SPLITS:
            assert check_split(known) == known and all(ds.task(t).split == known for t in ds.task_ids(split=known))


@pytest.mark.parametrize("holder_read_only", [False, True], ids=["writer-holds", "reader-holds"])
def test_a_dataset_held_by_another_process_is_reported_locked(trip_dataset, tmp_path, holder_read_only):
    """A real second process holds the file (read-write, or read-only like an env): openers that
    conflict get one message that is true either way, naming the PID; readers may share."""
    path = tmp_path / "held.duckdb"
    shutil.copy(trip_dataset, path)
    code = (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == 'ro'); "
        "print('ready', flush=True); time.sleep(120)"
    )
    mode = "ro" if holder_read_only else "rw"
    holder = subprocess.Popen([sys.executable, "-c", code, str(path), mode], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        conflicting = [{}, {"create": True}] + ([] if holder_read_only else [{"read_only": True}])
        for kwargs in conflicting:
            with pytest.raises(DatasetError) as info:
                Dataset(path, **kwargs)
            message = str(info.value)
            assert message.startswith(f"{path} is locked by process {holder.pid}, which has it open (")
            assert "a reader such as an env" in message and "one writer or many readers at a time" in message
            assert "not a readable" not in message
        if holder_read_only:  # readers share the file with a reader
            with Dataset(path, read_only=True) as ds:
                assert len(ds.task_ids()) == 30
    finally:
        holder.kill()
        holder.wait()
    with Dataset(path, read_only=True) as ds:
        assert len(ds.task_ids()) == 30


def test_synth_runs_in_a_subprocess_with_the_module_cli(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "toolgym.cli",
            "synth",
            "--count",
            "3",
            "--workers",
            "1",
            "--out",
            str(tmp_path / "m.duckdb"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and "shipped 3 tasks" in out.stdout


def test_distinctness_counts_toolsets_by_interface_and_worlds_per_toolset(trip_dataset):
    """Recomputed here from the stored schemas: distinct (name, parameters) interfaces and their worlds."""
    con = duckdb.connect(str(trip_dataset), read_only=True)
    rows = con.execute(
        "SELECT t.world_id, s.tools FROM tasks t JOIN toolsets s USING (toolset_id) WHERE t.family = 'trip'"
    ).fetchall()
    con.close()
    by_interface: dict[str, set[str]] = {}
    for world_id, tools in rows:
        key = json.dumps(sorted((f["function"]["name"], f["function"]["parameters"]) for f in json.loads(tools)))
        by_interface.setdefault(key, set()).add(world_id)
    with Dataset(trip_dataset, read_only=True) as ds:
        got = ds.distinctness("trip")
    assert got == {
        "worlds": len({w for w, _ in rows}),
        "toolsets": len(by_interface),
        "schemas": 0,  # trip has no world schema
        "archetypes": 0,  # nor archetypes
        "max_worlds_per_toolset": max(len(ws) for ws in by_interface.values()),
    }
    assert got["toolsets"] > 1  # trip adds weather and a distractor on some tasks


def test_tools_hash_ignores_descriptions_and_order_but_not_parameters():
    from toolgym.data.dataset import tools_hash

    def fn(name, desc, params):
        return {"type": "function", "function": {"name": name, "description": desc, "parameters": params}}

    by_id = {"type": "object", "properties": {"id": {"type": "string"}}}
    by_key = {"type": "object", "properties": {"key": {"type": "string"}}}
    a = [fn("get", "Get one.", by_id), fn("submit", "", {})]
    b = [fn("submit", "Done.", {}), fn("get", "Fetch it.", dict(by_id))]
    c = [fn("get", "Get one.", by_key), fn("submit", "", {})]
    assert tools_hash(a) == tools_hash(b) != tools_hash(c)


def test_a_writable_dataset_checkpoints_rarely_and_a_read_only_one_leaves_the_setting(tmp_path):
    """Checkpoints rewrite the key indices whole (slow on big datasets): writers defer them (CHECKPOINT_THRESHOLD)."""
    path = tmp_path / "d.duckdb"
    with Dataset(path, create=True) as ds:
        (got,) = ds.con.execute("SELECT current_setting('checkpoint_threshold')").fetchone()
        assert got == "953.6 MiB", got  # 1GB as DuckDB prints it
    with Dataset(path, read_only=True) as ds:
        (got,) = ds.con.execute("SELECT current_setting('checkpoint_threshold')").fetchone()
        assert got != "953.6 MiB", got
