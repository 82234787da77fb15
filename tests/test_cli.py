"""The CLI, through Typer's CliRunner and as a real subprocess: each command works, and bad input is one line.

Every usage error, Click's own (a bad option value, a missing or unknown option) and toolgym's, is
one ``error:`` line on stderr with exit code 2; the registry-wide tests walk the whole command tree.
"""

import inspect
import json
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from toolgym.cli import app
from toolgym.data.dataset import Dataset
from toolgym.spec import SPLITS

runner = CliRunner()


def run(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def cli(*args, input=None, timeout=300):
    """The CLI as a user runs it: a real process, stdin fed from ``input``."""
    return subprocess.run(
        [sys.executable, "-m", "toolgym.cli", *map(str, args)],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def error_line(result):
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def proc_error_line(proc):
    """The one ``error:`` line of a failed CLI process (stderr), with nothing on stdout."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert not proc.stdout.strip(), proc.stdout
    return lines[0]


def test_families():
    r = run("families")
    assert r.exit_code == 0 and "toolgym/TripPlanning-v1" in r.output


def test_synth_show_export_eval(tmp_path):
    ds = tmp_path / "d.duckdb"
    r = run("synth", "--count", 6, "--difficulty", "2-3", "--workers", 1, "--out", ds)
    assert r.exit_code == 0, r.output
    assert "shipped 6 tasks" in r.output
    with Dataset(ds, read_only=True) as d:
        tid = d.task_ids()[0]
    r = run("show", tid, "--dataset", ds)
    assert r.exit_code == 0 and "reference trajectory" in r.output and "get_all_cities" in r.output
    r = run("show", "--dataset", ds)
    assert r.exit_code == 0 and "quality gates" in r.output and "seed" in r.output
    r = run("export", ds, "--out", tmp_path / "x")
    assert r.exit_code == 0 and "wrote 6 rows" in r.output
    assert sum(len(f.read_text().splitlines()) for f in (tmp_path / "x").glob("*.jsonl")) == 6
    r = run("eval", "--dataset", ds, "--policy", "reference", "-n", 2, "-k", 1, "-k", 2, "--out", tmp_path / "e1")
    assert r.exit_code == 0, r.output
    assert "pass@1" in r.output and "1.000" in r.output
    r = run("eval", "--dataset", ds, "--policy", "random", "-n", 2, "--out", tmp_path / "e2")
    assert r.exit_code == 0 and "0.000" in r.output


def test_show_and_eval_without_a_dataset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # eval writes runs/eval/<policy>-<settings hash> here
    r = run("show", "trip-fly-s3-d1")
    assert r.exit_code == 0 and "Requirements" in r.output
    r = run("eval", "--policy", "null", "--limit", 2, "-n", 1, "--difficulty", "1")
    assert r.exit_code == 0 and "0.000" in r.output


def test_play_a_task_by_hand():
    r = run("play", "trip-fly-s3-d1", input='get_all_cities\nget_hotel_info name=Nowhere\nsubmit {"answer": []}\n')
    assert r.exit_code == 0, r.output
    assert '"cities"' in r.output and "no hotel named" in r.output and "episode over: reward 0.0" in r.output
    r = run("play", "trip-fly-s3-d1", input="quit\n")
    assert r.exit_code == 0 and "stopped" in r.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("synth", "--count", 0), "count"),
        (("synth", "--difficulty", "0-9"), "difficulty range"),
        (("synth", "--difficulty", "hard"), "difficulty must look like"),
        (("synth", "--family", "trp"), "did you mean trip"),
        (("show", "nope"), "not an on-the-fly task id"),
        (("show",), "give a task id, or -d/--dataset"),
        (
            ("show", "trip-s0-w000001-t0"),
            "not an on-the-fly task id (<family>-fly-s<seed>-d<difficulty>); pass -d/--dataset",
        ),
        (("eval", "-n", 0), "Invalid value for '-n' / '--samples'"),
        (("eval", "-k", 0), "Invalid value for '-k'"),
        (("eval", "--limit", 0), "Invalid value for '--limit': Input should be greater than or equal to 1"),
        (("eval", "--limit", -1, "-d", "missing.duckdb"), "Invalid value for '--limit'"),
        (("synth", "--tasks-per-world", 0), "--tasks-per-world: Input should be greater than or equal to 1"),
        (("synth", "--count", 2, "--seed", 2**63, "--out", "big.duckdb"), "Invalid value for '--seed'"),
        (("synth", "--count", 2**63, "--out", "big.duckdb"), "--count: Input should be less than 9223372036854775808"),
        (("synth", "--count", 2, "--out", "/proc/nope/x.duckdb"), "--out /proc/nope/x.duckdb: cannot create files in"),
        (("export", "d.duckdb", "--out", "/proc/nope/hf"), "--out /proc/nope/hf: cannot create files in /proc"),
        (("eval", "--policy", "oracle"), "unknown policy"),
        (("eval", "-n", 2, "-k", 5), "every -k must be at most -n/--samples (2), got [5]"),
        (("export", "missing.duckdb", "--out", "x"), "does not exist"),
        (("export", "missing.duckdb", "--out", "x.parquet"), "export writes a directory"),
        (("eval", "--split", "validation"), "unknown split 'validation' (did you mean val?)"),
        (("tasks", "-d", "missing.duckdb", "--split", "tset"), "unknown split 'tset' (did you mean test?)"),
        (("export", "missing.duckdb", "--out", "x.csv", "--format", "csv"), "format must be jsonl or parquet"),
        # counts far beyond any run are bounded at the CLI (they were TypeErrors deep in the run)
        (("eval", "-n", 10**20), "Invalid value for '-n' / '--samples': Input should be less than or equal to"),
        (("eval", "--limit", 10**20), "Invalid value for '--limit'"),
        (("eval", "--max-turns", 10**20), "Invalid value for '--max-turns'"),
        (("synth", "--solvable-by", "random", "--k", 10**20), "Invalid value for '--k'"),
        (("synth", "--solvable-by", "random", "--k", 1), "Invalid value for '--k': Input should be greater than"),
        (("synth", "--k", 4), "--k 4: policy options need --solvable-by POLICY"),
        (("train", "sft", "-d", "x.duckdb", "--action-prompts", -1), "Invalid value for '--action-prompts'"),
        (("train", "lm", "--corpus-bytes", 0), "Invalid value for '--corpus-bytes'"),
        (("train", "lm", "--copy-cue", 9), "Invalid value for '--copy-cue'"),
        (("train", "lm", "--model", "big"), "--model must be default or micro, not 'big'"),
        (("bench", "eval", "--device", "tpu"), "--device: Input should be 'cpu', 'cuda' or 'auto'"),
    ],
)
def test_bad_arguments_are_one_line_with_exit_code_2(args, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert needle in error_line(run(*args))
    assert list(tmp_path.iterdir()) == []  # a run that fails validation leaves no file behind


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("synth", "--count", 2, "--out", "/proc/nope/x.duckdb"), "--out /proc/nope/x.duckdb: cannot create"),
        (("export", "D", "--out", "/proc/nope/hf"), "--out /proc/nope/hf: cannot create files in /proc"),
        (("synth", "--count", 2, "--seed", 2**63, "--out", "big.duckdb"), "Invalid value for '--seed'"),
        (("eval", "-n", 0), "Invalid value for '-n' / '--samples'"),
    ],
)
def test_bad_paths_and_numbers_in_a_real_process_are_one_line(args, needle, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "toolgym.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert needle in proc_error_line(proc) and list(tmp_path.iterdir()) == []


def test_an_os_error_about_a_path_names_the_path_and_the_reason(tmp_path):
    """The fallback for what no up-front check foresaw: an OSError on (or on the way to) a path parameter."""
    from toolgym.cli.errors import OneLineErrors, cli_errors

    mini = typer.Typer(cls=OneLineErrors)

    @mini.command()
    @cli_errors
    def write(out: typing.Annotated[Path, typer.Option("--out")], other: bool = False) -> None:
        (out / "deeper" / "f.txt").write_text("x")  # FileNotFoundError on a path below --out

    @mini.command()
    @cli_errors
    def crash() -> None:
        raise FileNotFoundError(2, "No such file or directory", "/elsewhere")  # no parameter's path: a bug

    line = error_line(runner.invoke(mini, ["write", "--out", str(tmp_path / "nope")]))
    assert line == f"error: --out {tmp_path / 'nope'}: No such file or directory ({tmp_path / 'nope/deeper/f.txt'})"
    assert isinstance(runner.invoke(mini, ["crash"]).exception, FileNotFoundError)


def test_corrupt_dataset_is_named(tmp_path):
    bad = tmp_path / "bad.duckdb"
    bad.write_text("garbage" * 1000)
    assert "not a readable toolgym dataset" in error_line(run("show", "x", "--dataset", bad))


def test_synth_refuses_a_dataset_built_with_other_settings(tmp_path):
    ds = tmp_path / "d.duckdb"
    assert run("synth", "--count", 2, "--workers", 1, "--out", ds).exit_code == 0
    assert "different settings (seed)" in error_line(
        run("synth", "--count", 2, "--seed", 1, "--workers", 1, "--out", ds)
    )
    r = run("synth", "--count", 2, "--workers", 1, "--out", ds)
    assert r.exit_code == 0 and "already complete: it holds 2 trip tasks" in r.output and "nothing to do" in r.output
    assert "resumed" not in r.output and "candidate" not in r.output


def test_synth_runs_on_any_executor_of_the_table_and_resumes_on_another(tmp_path):
    ds = tmp_path / "d.duckdb"
    line = error_line(run("synth", "--count", 2, "--executor", "serail", "--out", ds))
    assert "unknown executor 'serail'; did you mean serial" in line and "known: serial, local" in line
    assert not ds.exists()
    line = error_line(run("synth", "--count", 2, "--workers", 2, "--executor", "serial", "--out", ds))
    assert "the serial executor runs one worker, got workers=2" in line
    assert not ds.exists()
    assert run("synth", "--count", 2, "--workers", 1, "--executor", "serial", "--out", ds).exit_code == 0
    r = run("synth", "--count", 4, "--workers", 2, "--executor", "local", "--out", ds)
    assert r.exit_code == 0 and "resumed: 2 were already there" in r.output, r.output


def test_unknown_command_is_a_usage_error():
    assert "No such command 'sinth'" in error_line(run("sinth"))


def test_export_rows_are_json(tmp_path, trip_dataset):
    out = tmp_path / "rows"
    assert run("export", trip_dataset, "--out", out, "--split", "train").exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["train.jsonl"]
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert rows and {r["split"] for r in rows} == {"train"}


# --------------------------------------------------------------------------- the whole command tree
def leaf_commands(cmd=None, path=()):
    """(path, click command) for every command and sub-command of the app."""
    cmd = typer.main.get_command(app) if cmd is None else cmd
    subs = getattr(cmd, "commands", None)
    if subs is None:
        yield path, cmd
        return
    for name, sub in subs.items():
        yield from leaf_commands(sub, (*path, name))


def is_number(cmd, param) -> bool:
    """Whether an option takes an int or float, read from the command function's annotation."""
    hint = typing.get_type_hints(inspect.unwrap(cmd.callback), include_extras=True)[param.name]
    base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
    inner = typing.get_args(base) if isinstance(base, types.UnionType) or typing.get_origin(base) is list else (base,)
    return any(t in (int, float) for t in inner)


def bad_option_inputs():
    """For every option of every command: arguments that misuse it, and what the error must name."""
    cases = []
    for path, cmd in leaf_commands():
        cases.append((path, ("--no-such-option",), "No such option: --no-such-option"))
        for p in cmd.params:
            if p.param_type_name != "option" or p.opts[0] == "--help":
                continue
            opt = p.opts[0]
            if p.is_flag:
                cases.append((path, (f"{opt}=bogus",), f"Option '{opt}' does not take a value"))
            elif is_number(cmd, p):
                cases.append((path, (opt, "abc"), f"Invalid value for '{opt}'"))
            else:
                cases.append((path, (opt,), f"Option '{opt}' requires an argument"))
    return cases


BAD_OPTIONS = bad_option_inputs()


def path_params():
    """(path, command, parameter) for every parameter typed as a file system path."""
    for path, cmd in leaf_commands():
        for p in cmd.params:
            hint = typing.get_type_hints(inspect.unwrap(cmd.callback), include_extras=True)[p.name]
            base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
            if Path in (typing.get_args(base) or (base,)):
                yield path, cmd, p


PATH_PARAMS = list(path_params())
SEED_OPTIONS = [(path, p.opts[0]) for path, cmd in leaf_commands() for p in cmd.params if p.name == "seed"]


def fill_required(cmd, dataset, skip):
    """Real values for a command's required parameters other than ``skip``."""
    args = []
    for p in cmd.params:
        if p.required and p.name != skip:
            value = dataset if p.name == "dataset" else ("x" if p.name == "task_id" else "out-dir")
            args += [value] if p.param_type_name == "argument" else [p.opts[0], value]
    return args


@pytest.mark.parametrize(
    ("path", "cmd", "param"), PATH_PARAMS, ids=[" ".join(c[0]) + " " + c[2].name for c in PATH_PARAMS]
)
def test_every_path_parameter_that_cannot_be_used_is_one_line_naming_it(
    path, cmd, param, ledger_splits, tmp_path, monkeypatch
):
    """A path below /proc/nope can be neither read nor created: one error line that names it, no file left."""
    monkeypatch.chdir(tmp_path)
    bad = "/proc/nope/x"
    given = [bad] if param.param_type_name == "argument" else [param.opts[0], bad]
    line = error_line(run(*path, *fill_required(cmd, ledger_splits, param.name), *given))
    assert bad in line or "/proc/nope" in line, line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("path", "opt"), SEED_OPTIONS, ids=[" ".join(c[0]) for c in SEED_OPTIONS])
@pytest.mark.parametrize("seed", [-1, 2**63])
def test_every_seed_option_is_range_checked(path, opt, seed, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = error_line(run(*path, opt, seed))
    assert f"Invalid value for '{opt}'" in line, line
    assert list(tmp_path.iterdir()) == []


def test_the_command_tree_is_walked_whole():
    assert {("synth",), ("export",), ("train", "lm"), ("bench", "model")} <= {c[0] for c in PATH_PARAMS}
    assert {("synth",), ("eval",), ("train", "lm")} <= {c[0] for c in SEED_OPTIONS}
    paths = {path for path, _ in leaf_commands()}
    assert {("synth",), ("tasks",), ("export",), ("bench", "env"), ("train", "lm")} <= paths
    assert len(BAD_OPTIONS) > 50 and any(c[1][0] == "--count" and c[1][1:] == ("abc",) for c in BAD_OPTIONS)


@pytest.mark.parametrize(("path", "args", "needle"), BAD_OPTIONS, ids=[" ".join(c[0] + c[1]) for c in BAD_OPTIONS])
def test_every_usage_error_of_every_command_is_one_line(path, args, needle):
    r = run(*path, *args)
    line = error_line(r)
    assert needle in line, line
    assert not r.stdout.strip()  # on stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("synth", "--count", "abc"), "Invalid value for '--count'"),
        (("export", "d.duckdb"), "Missing option '--out'"),
        (("show", "--bogus"), "No such option: --bogus"),
        (("bench", "env", "--steps"), "Option '--steps' requires an argument"),
        (("sinth",), "No such command 'sinth'"),
    ],
)
def test_usage_errors_of_the_real_process_are_one_line_on_stderr(args, needle):
    assert needle in proc_error_line(cli(*args))


def split_options():
    for path, cmd in leaf_commands():
        for p in cmd.params:
            if p.name == "split":
                yield path, cmd


@pytest.mark.parametrize(
    ("path", "cmd"), list(split_options()), ids=lambda x: " ".join(x) if isinstance(x, tuple) else ""
)
def test_every_split_option_rejects_an_unknown_split(path, cmd, ledger_splits, tmp_path):
    """Wherever the CLI takes --split, 'tset' is an unknown split that lists the valid ones."""
    args = list(path)
    for p in cmd.params:  # fill the required parameters with real values
        if p.required:
            value = ledger_splits if p.name == "dataset" else tmp_path / p.name
            args += [value] if p.param_type_name == "argument" else [p.opts[0], value]
    line = error_line(run(*args, "--split", "tset"))
    assert "unknown split 'tset' (did you mean test?)" in line and "splits are train, val, test" in line


def test_unknown_split_in_a_real_process():
    assert "unknown split 'tset'" in proc_error_line(cli("eval", "--split", "tset", "--limit", 1))


# --------------------------------------------------------------------------- datasets with every split
@pytest.fixture(scope="module")
def ledger_splits(tmp_path_factory) -> Path:
    """A small real dataset of the toy ledger family with tasks in train, val and test."""
    from toolgym.synth.config import SynthConfig
    from toolgym.synth.run import synthesize

    path = tmp_path_factory.mktemp("splits") / "ledger.duckdb"
    synthesize(SynthConfig(family="ledger", count=36, workers=1, seed=0, split_fractions=(0.34, 0.33, 0.33)), path)
    with Dataset(path, read_only=True) as ds:
        assert {r["split"] for r in ds.summary()["tasks"]} == set(SPLITS), "fixture must hold every split"
    return path


def sql(path, query, *args):
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(query, list(args)).fetchall()
    finally:
        con.close()


def test_tasks_lists_ids_with_every_filter(ledger_splits):
    for split in SPLITS:
        for d in range(1, 6):
            proc = cli("tasks", "-d", ledger_splits, "--family", "ledger", "--split", split, "--difficulty", d)
            want = sql(
                ledger_splits,
                "SELECT task_id, family, split, difficulty FROM tasks "
                "WHERE split = ? AND difficulty = ? ORDER BY ordinal",
                split,
                d,
            )
            if not want:
                assert "has no tasks matching" in proc_error_line(proc)
                continue
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout.splitlines() == ["\t".join(map(str, row)) for row in want]
    every = [r[0] for r in sql(ledger_splits, "SELECT task_id FROM tasks ORDER BY ordinal")]
    proc = cli("tasks", "-d", ledger_splits, "--limit", 5)
    assert [line.split("\t")[0] for line in proc.stdout.splitlines()] == every[:5]
    assert f"5 of {len(every)} matching tasks shown" in proc.stderr
    assert "did you mean ledger?" in proc_error_line(cli("tasks", "-d", ledger_splits, "--family", "ledgr"))


def test_show_of_a_dataset_points_at_the_listing(ledger_splits):
    r = run("show", "-d", ledger_splits)
    assert r.exit_code == 0 and f"toolgym tasks -d {ledger_splits}" in r.output


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_export_loads_in_hugging_face_as_train_validation_test(ledger_splits, tmp_path, fmt):
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "hf"
    proc = cli("export", ledger_splits, "--out", out, "--format", fmt)
    assert proc.returncode == 0, proc.stderr
    counts = dict(sql(ledger_splits, "SELECT split, count(*) FROM tasks GROUP BY split"))
    hf = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    assert set(hf) == {"train", "validation", "test"}
    for name, split in (("train", "train"), ("validation", "val"), ("test", "test")):
        assert hf[name].num_rows == counts[split] and set(hf[name]["split"]) == {split}
        assert f"{name}.{fmt} {counts[split]}" in proc.stdout
    ids = sorted(i for name in hf for i in hf[name]["task_id"])
    assert ids == sorted(r[0] for r in sql(ledger_splits, "SELECT task_id FROM tasks"))
    # one split only: the directory is replaced as a whole, no stale split file is left behind
    assert cli("export", ledger_splits, "--out", out, "--format", fmt, "--split", "val").returncode == 0
    assert sorted(p.name for p in out.iterdir()) == [f"validation.{fmt}"]
    assert not list(tmp_path.glob(".hf.tmp*"))


def test_export_refuses_a_directory_with_other_files(ledger_splits, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    assert "holds other files (notes.txt)" in proc_error_line(cli("export", ledger_splits, "--out", tmp_path))
    assert (tmp_path / "notes.txt").read_text() == "mine"


# --------------------------------------------------------------------------- locks, resumes, hints
def test_a_dataset_locked_by_a_writer_is_named_locked(ledger_splits, tmp_path):
    """A real second process holds a write connection: every command says locked, and by which PID."""
    import shutil

    path = tmp_path / "locked.duckdb"
    shutil.copy(ledger_splits, path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); time.sleep(120)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        for args in (("show", "-d", path), ("tasks", "-d", path), ("export", path, "--out", tmp_path / "x")):
            line = proc_error_line(cli(*args))
            assert f"{path} is locked by process {holder.pid}" in line and "not a readable" not in line
        line = proc_error_line(cli("synth", "--count", 1, "--workers", 1, "--out", path))
        assert f"locked by process {holder.pid}" in line
    finally:
        holder.kill()
        holder.wait()
    assert cli("tasks", "-d", path, "--limit", 1).returncode == 0  # the lock goes with its holder


def test_a_dataset_open_in_a_reader_refuses_synth_naming_the_reader(ledger_splits, tmp_path):
    """An env (a read-only holder) has the file open: `synth --out` into it is refused by PID, and the
    message does not call the holder a writer; other readers still read it."""
    import shutil

    path = tmp_path / "read.duckdb"
    shutil.copy(ledger_splits, path)
    code = (
        "import sys, time; from toolgym.data.dataset import Dataset; d = Dataset(sys.argv[1], read_only=True); "
        "print('ready', flush=True); time.sleep(120)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        line = proc_error_line(cli("synth", "--count", 1, "--workers", 1, "--out", path))
        assert f"{path} is locked by process {holder.pid}, which has it open" in line
        assert "a reader such as an env" in line and "one writer or many readers" in line
        assert "another writer" not in line
        assert cli("tasks", "-d", path, "--limit", 1).returncode == 0  # readers share the file
    finally:
        holder.kill()
        holder.wait()


def test_rerunning_a_finished_synth_says_it_is_complete(tmp_path):
    out = tmp_path / "d.duckdb"
    first = cli("synth", "--count", 3, "--workers", 1, "--difficulty", 1, "--out", out)
    assert first.returncode == 0 and "shipped 3 tasks" in first.stdout
    again = cli("synth", "--count", 3, "--workers", 1, "--difficulty", 1, "--out", out)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"{out} is already complete: it holds 3 trip tasks (--count 3); nothing to do"
    grown = cli("synth", "--count", 5, "--workers", 1, "--difficulty", 1, "--out", out)
    assert "shipped 2 tasks" in grown.stdout and "resumed: 3 were already there" in grown.stdout


def pyproject():
    import tomllib

    return tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())


def test_every_extra_the_code_or_readme_names_exists():
    import re

    root = Path(__file__).resolve().parents[1]
    extras = pyproject()["project"]["optional-dependencies"]
    texts = [p.read_text() for p in root.rglob("*.py") if ".venv" not in p.parts and "tests" not in p.parts]
    named = {m for t in [*texts, (root / "README.md").read_text()] for m in re.findall(r"toolgym\[(\w+)\]", t)}
    assert "bench" in named and named <= set(extras), named - set(extras)


def test_the_bench_extra_installs_what_the_skyrl_baseline_imports():
    import ast
    import re

    root = Path(__file__).resolve().parents[1]
    tree = ast.parse((root / "bench" / "env.py").read_text())
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "_skyrl_step")
    modules = {n.module.split(".")[0] for n in ast.walk(fn) if isinstance(n, ast.ImportFrom)}
    wanted = {m.replace("_", "-") for m in modules}
    have = {
        re.split(r"[<>=!~; \[]", req, maxsplit=1)[0].lower()
        for req in pyproject()["project"]["optional-dependencies"]["bench"]
    }
    assert wanted and wanted <= have, wanted - have


def test_bench_env_prints_the_install_hint_with_its_extra():
    proc = cli("bench", "env", "--steps", 30)
    assert proc.returncode == 0, proc.stderr
    try:
        import skyrl_gym  # noqa: F401
    except ImportError:
        assert "pip install 'toolgym[bench]'" in proc.stdout
    else:
        assert "skyrl-gym sql step" in proc.stdout and "not installed" not in proc.stdout


def test_a_small_synth_run_spans_worlds_and_difficulties():
    from toolgym.cli.synth import default_tasks_per_world

    assert default_tasks_per_world("sql", 20, "1-5") == 1  # was 32: one world, one difficulty, one split
    assert default_tasks_per_world("sql", 6000, "1-5") == 32 and default_tasks_per_world("search", 1000, "3") == 64
    assert default_tasks_per_world("trip", 200, "1-2") == 4  # the family's own figure when the run is large
