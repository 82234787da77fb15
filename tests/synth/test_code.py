"""Code interpreter: worlds, expected answers against a literal reading of the files, verifiers,
tools on the real sandbox (state, errors, timeouts, lifecycle, pickling), and gate answers."""

import collections
import csv
import io
import itertools
import json
import math
import os
import pickle
import random
from decimal import Decimal
from pathlib import Path

import pytest

from toolgym.envs import markup as mk
from toolgym.envs.agents import empty_value
from toolgym.envs.rollout import ProgramPolicy, run_episode
from toolgym.envs.sources import MemorySource
from toolgym.envs.toolenv import make_env
from toolgym.envs.tools import Toolset
from toolgym.synth import get_family
from toolgym.synth.candidate import build_task
from toolgym.synth.code import tasks
from toolgym.synth.code import tools as code_tools
from toolgym.synth.code.world import SIZES, CodeWorld, generate
from toolgym.verifiers.verdict import verify

FAM = get_family("code")
# (kind, difficulty) pairs that cover every kind and every answer type.
KINDS = [
    ("stat", 1), ("stat", 4), ("count", 2), ("argmax", 1), ("argmax", 3), ("compare", 3), ("compare", 4),
    ("simulate", 3), ("simulate", 4), ("simulate", 5), ("pairs", 2), ("pairs", 5), ("numbers", 1),
]  # fmt: skip


def task_of(kind, difficulty, seed=0, **tool_config):
    """A task of one kind (and its world), as the pipeline builds it."""
    for s in range(seed, seed + 40):
        world = FAM.make_world(1000 + s, difficulty)
        draft = tasks.make_task(world, difficulty, random.Random(s), only=[kind])
        if draft is not None:
            draft.tool_config.update(tool_config)
            return build_task(FAM, "w", f"t-{kind}-{s}", difficulty, "train", draft), world
    raise AssertionError(f"no {kind} task at difficulty {difficulty}")


# ---------------------------------------------------------------------------------------- worlds


def test_worlds_are_pure_functions_of_seed_and_difficulty():
    for d in range(1, 6):
        a, b = generate(7, d), generate(7, d)
        assert a == b
        restored = CodeWorld(json.loads(json.dumps(a)))  # what a dataset stores and reloads
        assert restored.files == CodeWorld(a).files
        assert generate(8, d) != a


def test_sizes_files_and_themes_grow_and_vary():
    lines = []
    for d in range(1, 6):
        w = FAM.make_world(3, d)
        assert len(w.files) == len(SIZES[d]) == {1: 2, 2: 3}.get(d, 4)
        assert len(w.rows["F"]) == SIZES[d]["F"]
        lines.append(len(w.files[w.file_of["F"]].splitlines()))
    assert lines == sorted(lines) and lines[-1] > 1000
    themes = {generate(s, 2)["theme"] for s in range(40)}
    assert themes == {"shop", "sensors", "library", "bikes"}
    names = [r[w.name_of("E")] for w in map(lambda s: FAM.make_world(s, 2), range(3)) for r in w.rows["E"]]
    assert len(set(names)) == len(names)  # generated, never a short fixed list


MONTHS = {m: i + 1 for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split())}
TO_BASE = {"cents": Decimal("0.01"), "m": Decimal("0.001"), "cm": Decimal(10)}  # the prompt's conversions


def literal_date(text):
    """Any of the messy files' date formats, as ISO (by hand: no strptime)."""
    parts = text.replace(",", "").replace("/", "-").split()
    if len(parts) == 1:
        return parts[0]
    day, mon, year = (parts[0], parts[1], parts[2]) if parts[0].isdigit() else (parts[1], parts[0], parts[2])
    return f"{int(year):04d}-{MONTHS[mon]:02d}-{int(day):02d}"


def clean(rows):
    """The prompt's rules, applied literally: blanks are missing, exact repeats count once, dates to
    ISO, numbers with a unit to the column's majority unit (as Decimal)."""
    rows = [{k: (None if v == "" else v) for k, v in r.items()} for r in rows]
    unique = list({tuple(r.items()): r for r in rows}.values())
    for col in unique[0] if unique else ():
        values = [r[col] for r in unique if isinstance(r[col], str)]
        if col == "date":
            for r in unique:
                r[col] = literal_date(r[col])
        elif values and all(" " in v and v.replace(",", "").split()[0].replace(".", "").isdigit() for v in values):
            units = collections.Counter(v.split()[1] for v in values)
            base = units.most_common(1)[0][0]
            for r in unique:
                if r[col] is not None:
                    number, unit = r[col].replace(",", "").split()
                    r[col] = Decimal(number) * (1 if unit == base else TO_BASE[unit])
    return unique


def parse(world):
    """Every file as a list of dicts, read the way a user would and cleaned by the prompt's rules."""
    out = {}
    for name, text in world.files.items():
        rows = json.loads(text) if name.endswith(".json") else list(csv.DictReader(io.StringIO(text)))
        out[name] = clean(rows)
    return out


def test_files_hold_exactly_the_typed_rows():
    for d in (1, 3, 5):
        world = FAM.make_world(11, d)
        files = parse(world)
        for role, rows in world.rows.items():
            parsed = files[world.file_of[role]]
            assert len(parsed) == len(rows)
            for typed, read in zip(rows, parsed, strict=True):
                assert list(read) == list(typed)
                for k, v in typed.items():
                    if v is None or isinstance(v, str):
                        assert read[k] == v
                    else:  # "12.50" parses back to exactly round(x, 2); "1,250 cents" to 12.5
                        assert Decimal(str(read[k])) == Decimal(str(v))


# ------------------------------------------------------- expected answers vs a literal reading


def lit_value(by_key, schema, row, ref):
    if ref["t"] == "F":
        return row[ref["col"]]
    return by_key[ref["t"]][row[schema["F"]["fk"][ref["t"]]]][ref["col"]]


def lit_holds(by_key, schema, row, c):
    v = lit_value(by_key, schema, row, c["ref"])
    if v is None:  # a row lacking a value the question uses is left out
        return False
    if c["op"] == "months":
        return v[:7] in c["value"]
    if isinstance(c["value"], str):
        return (v == c["value"]) == (c["op"] == "eq")
    x, t = Decimal(str(v)), Decimal(str(c["value"]))
    return {"gt": x > t, "ge": x >= t, "lt": x < t, "le": x <= t}[c["op"]]


def literal(world, params):
    """A third implementation: Decimal arithmetic on the parsed files, written from the prompt's rules."""
    q, schema, files = params["query"], params["schema"], parse(world)
    by_key = {t: {r[s["key"]]: r for r in files[s["file"]]} for t, s in schema.items() if t in ("E", "A")}
    kind = q["kind"]
    if kind == "numbers":
        ok = {
            "mod": lambda n, a, r: n % a == r,
            "digit_sum_mod": lambda n, b: sum(map(int, str(n))) % b == 0,
            "has_digit": lambda n, d: str(d) in str(n),
            "no_digit": lambda n, d: str(d) not in str(n),
            "popcount": lambda n, k: f"{n:b}".count("1") == k,
            "coprime": lambda n, m: all(n % p for p in range(2, m + 1) if m % p == 0),
            "not_square": lambda n: int(n**0.5 + 0.5) ** 2 != n,
        }
        return sum(all(ok[p[0]](n, *p[1:]) for p in q["preds"]) for n in range(q["lo"], q["hi"] + 1))
    if kind == "pairs":
        ents = [r for r in files[schema["E"]["file"]] if q["min_col"] is None or
                Decimal(str(r[q["min_col"]])) >= Decimal(str(q["min_value"]))]  # fmt: skip
        return sum(
            len({r[q["cat"]] for r in g}) == q["size"]
            and max(Decimal(str(r[q["num"]])) for r in g) - min(Decimal(str(r[q["num"]])) for r in g)
            <= Decimal(str(q["max_spread"]))
            for g in itertools.combinations(ents, q["size"])
        )
    if kind == "simulate":
        e, log = schema["E"], schema["L"]
        level = {r[e["key"]]: int(r[e["level"]]) for r in files[e["file"]]}
        name = {r[e["key"]]: r[e["name"]] for r in files[e["file"]]}
        rejected, empty_at = dict.fromkeys(level, 0), {}
        for ev in sorted(files[log["file"]], key=lambda r: r["ts"]):
            if q["until"] and ev["ts"] >= q["until"] + "T24":
                continue
            k, n = ev[log["fk"]["E"]], int(ev[log["qty"]])
            if ev["event"] == log["add"]:
                level[k] += n
            elif n <= level[k]:
                level[k] -= n
                if level[k] == 0 and k not in empty_at:
                    empty_at[k] = ev["ts"]
            else:
                rejected[k] += 1
        if q["ask"] == "rejected":
            return sum(rejected.values())
        if q["ask"] == "record":
            worst = min(rejected, key=lambda k: (-rejected[k], name[k]))  # ties: the first name
            return {"name": name[worst], "count": rejected[worst]}
        if q["ask"] == "emptied":
            return sorted(name[k] for k in empty_at)
        return next(ts for k, ts in empty_at.items() if name[k] == q["item"])
    refs = (q.get("measure") or {"refs": []})["refs"]
    rows = [
        r
        for r in files[schema["F"]["file"]]
        if all(lit_holds(by_key, schema, r, c) for c in q["where"])
        and all(lit_value(by_key, schema, r, ref) is not None for ref in refs)
    ]

    def m(r):
        return math.prod((Decimal(str(lit_value(by_key, schema, r, ref))) for ref in refs), start=Decimal(1))

    if kind == "count":
        return {"count": len(rows), "total": float(sum(map(m, rows)))}
    if kind == "stat":
        vals = sorted(m(r) for r in rows)
        mid = len(vals) // 2
        median = vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2
        stats = {"sum": sum(vals), "mean": sum(vals) / len(vals), "max": vals[-1], "min": vals[0], "median": median}
        return float(stats[q["stat"]])
    groups = {}
    for r in rows:
        groups.setdefault(str(lit_value(by_key, schema, r, q["group"])), []).append(r)
    if kind == "compare" and q["mode"] == "periods":

        def period(g, months):
            hits = [m(r) if q["measure"] else 1 for r in g if r["date"][:7] in months]
            return sum(hits, Decimal(0))

        return sorted(k for k, g in groups.items() if period(g, q["a"]["value"]) > period(g, q["b"]["value"]))
    if kind == "compare":
        overall = sum(map(m, rows)) / len(rows)
        return sorted(k for k, g in groups.items() if sum(map(m, g)) / len(g) > overall)
    score = {
        "sum": lambda g: sum(map(m, g)),
        "count": lambda g: Decimal(len(g)),
        "mean": lambda g: sum(map(m, g)) / len(g),
    }[q["agg"]]
    sign = -1 if q["best"] == "max" else 1
    best = min(groups, key=lambda k: (sign * score(groups[k]), k))  # ties: the name that sorts first
    if q["group"]["t"] == "F":
        return best
    return {"name": best, "value": float(score(groups[best]))}


@pytest.mark.parametrize(("kind", "difficulty"), KINDS)
def test_expected_answer_equals_a_literal_reading_of_the_files(kind, difficulty):
    for seed in (0, 50):
        task, world = task_of(kind, difficulty, seed)
        want = task.verifier_spec["expected"]
        got = literal(world, task.params)
        if isinstance(want, float):
            assert got == pytest.approx(want, abs=1e-6), task.prompt
        elif isinstance(want, dict) and "value" in want:
            assert got["name"] == want["name"] and got["value"] == pytest.approx(want["value"], abs=1e-6)
        elif isinstance(want, dict) and "total" in want:
            assert got["count"] == want["count"] and got["total"] == pytest.approx(want["total"], abs=1e-6)
        else:
            assert got == want, task.prompt


@pytest.mark.parametrize(("kind", "difficulty"), KINDS)
def test_prompts_are_rendered_and_say_what_to_submit(kind, difficulty):
    task, _ = task_of(kind, difficulty)
    text, answer = task.prompt, task.params["answer"]
    assert "{" not in text.replace('{"name"', "").replace('{"count"', "")  # no template left over
    assert "}" not in text.replace(">}", "")
    record = '{"count": <' if kind == "count" else '{"name": <'
    assert {"number": "within 0.01", "integer": "exact integer", "string": "exactly as written",
            "names": "any order", "record": record}[answer] in text  # fmt: skip
    if task.params["schema"]:  # easy tasks list the files they need; harder ones leave finding them to the policy
        assert (": `" in text.splitlines()[0]) == (difficulty <= 2)


def test_every_statistic_matches_a_literal_reading():
    seen = set()
    for seed in range(80):
        if len(seen) == 5:
            break
        task, world = task_of("stat", 2 + seed % 4, seed)
        how = task.params["query"]["stat"]
        if how in seen:
            continue
        seen.add(how)
        assert literal(world, task.params) == pytest.approx(task.verifier_spec["expected"], abs=1e-6), task.prompt
    assert seen == {"sum", "mean", "median", "max", "min"}


# ----------------------------------------------------------------------------------- verifiers


RECORD = {"name": "Ab Cd", "value": 10.456}
# Strict types: no numeric strings, no booleans, integers without a decimal point; names by the
# name rule (NFC, trimmed, case-sensitive).
FORMS = [
    (
        "number",
        12.3456,
        [12.35, 12.3456, 12.34, 12.3546],
        [12.33, 12.36, 12.3557, [12.35], "12.35 or 13", "12.35", True],
    ),
    ("integer", 42, [42], [41, 43, 42.5, [42], "42 rows", "42", 42.0, True]),
    ("integer", 1, [1], [True, 1.0, "1"]),
    ("integer", 0, [0], [False, 0.0, None]),
    ("string", "2025-03-04", ["2025-03-04", " 2025-03-04 "], ["2025-03-05", "2025-03-04, 2025-03-05", ""]),
    (
        "names",
        ["Ab Cd", "Ef", "Gh"],
        [["Gh", "Ab Cd", "Ef"], ["Ef", "Gh", "Ab Cd", "Ef"], ["Ab Cd ", "\tEf", "Gh"]],
        [
            ["Ab Cd", "Ef"],
            ["Ab Cd", "Ef", "Gh", "Ij"],
            "Ab Cd, Ef, Gh",
            [],
            ["ef", "gh", "ab cd"],
            ["Ab  Cd", "Ef", "Gh"],
        ],
    ),
    (
        "names",
        ["Caf\u00e9 R\u00f6m"],
        [["Cafe\u0301 Ro\u0308m"], [" Caf\u00e9 R\u00f6m"]],
        [["Cafe Rom"], ["caf\u00e9 r\u00f6m"]],
    ),
    (
        "record",
        RECORD,
        [{**RECORD, "value": 10.46}, {"value": 10.456, "name": " Ab Cd"}],
        [
            {**RECORD, "name": "Ef"},
            {**RECORD, "value": 10.47},
            {"name": "Ab Cd"},
            {**RECORD, "count": 1},
            {**RECORD, "name": "ab cd"},
            {**RECORD, "value": "10.456"},
        ],
    ),
    ("record", {"name": "Ab", "count": 1}, [{"name": "Ab", "count": 1}], [{"name": "Ab", "count": True}]),
]


@pytest.mark.parametrize(("answer", "expected", "good", "bad"), FORMS)
def test_verifier_accepts_every_correct_form_and_rejects_near_misses(answer, expected, good, bad):
    spec = tasks.verifier_spec(answer, expected)
    for g in good:
        assert verify(spec, g).passed, g
    for b in bad:
        assert not verify(spec, b).passed, b


def run_actions(env, answers):
    """Reset, then submit each answer in turn (returns (reward, terminated) of each)."""
    env.reset(options={"task_id": env.source.items[0][0].task_id})
    out = []
    for a in answers:
        _, reward, term, _, info = env.step(mk.render_action([("submit", {"answer": a})]))
        out.append((reward, term, info["errors"]))
    return out


def test_submit_schema_refuses_the_wrong_type_and_the_episode_goes_on():
    task, world = task_of("numbers", 2)
    env = make_env("code", source=MemorySource([(task, world)]))
    n = task.verifier_spec["expected"]
    env.reset(options={"task_id": task.task_id})
    for bad, why in [(n + 0.5, "valid integer"), (str(n), "valid integer"), (float(n), f"{n}, not {float(n)}")]:
        obs, reward, term, _, _ = env.step(mk.render_action([("submit", {"answer": bad})]))
        assert (reward, term) == (0.0, False) and why in obs, obs  # an error observation; the episode goes on
    obs, reward, term, _, _ = env.step(mk.render_action([("submit", {"answer": True})]))
    assert (reward, term) == (0.0, False) and "a boolean is not a number" in obs
    assert env.step(mk.render_action([("submit", {"answer": n})]))[1:3] == (1.0, True)
    task, world = task_of("argmax", 3)
    env = make_env("code", source=MemorySource([(task, world)]))
    ((r, t, _),) = run_actions(env, [{"name": task.verifier_spec["expected"]["name"], "value": "lots"}])
    assert (r, t) == (0.0, False)


# --------------------------------------------------------------------------------------- tools


@pytest.fixture()
def tool_ctx():
    task, world = task_of("stat", 4, timeout_s=1.5)
    ctx = FAM.episode_context(world, task)
    yield Toolset(FAM.tools(task.tool_config)), ctx, world, task
    FAM.close_context(ctx)


def call(ts, ctx, name, **args):
    ok, result = ts.call(ctx, name, args)
    return result if ok else {"error": result}


def test_read_file_pages_by_lines_and_names_missing_files(tool_ctx):
    ts, ctx, world, _ = tool_ctx
    name = world.file_of["F"]
    lines = world.files[name].splitlines()
    first = call(ts, ctx, "read_file", path=name)
    assert first["text"].splitlines() == lines[:50] and first["pages"] == math.ceil(len(lines) / 50)
    last = call(ts, ctx, "read_file", path=f"/workspace/{name}", page=first["pages"])
    assert last["text"].splitlines() == lines[(first["pages"] - 1) * 50 :]
    past = call(ts, ctx, "read_file", path=name, page=first["pages"] + 1)["error"]
    assert past == f"page {first['pages'] + 1} does not exist; {name!r} has {first['pages']} pages of 50 lines"
    small = code_tools.CodeContext({"a.csv": "x\n"})
    assert call(ts, small, "read_file", path="a.csv", page=9)["error"] == (
        "page 9 does not exist; 'a.csv' has 1 page of 50 lines"
    )
    assert name in call(ts, ctx, "read_file", path="nope.csv")["error"]  # the error lists the real files
    assert "error" in call(ts, ctx, "read_file", path="../etc/passwd")
    assert "error" in call(ts, ctx, "read_file", path=name, page=0)
    listed = {f["name"]: f for f in call(ts, ctx, "list_files")["files"]}
    assert set(listed) == set(world.files) and listed[name]["lines"] == len(lines)
    assert ctx.session is None  # reading files never opens the sandbox


def test_run_python_keeps_state_reports_errors_and_sees_the_workspace(tool_ctx):
    ts, ctx, world, _ = tool_ctx
    assert call(ts, ctx, "run_python", code="x = 41")["status"] == "ok"
    assert ctx.session is not None  # opened on the first run_python
    assert call(ts, ctx, "run_python", code="x + 1")["stdout"] == "42\n"
    err = call(ts, ctx, "run_python", code="1 / 0")
    assert err["status"] == "error" and "ZeroDivisionError" in err["stderr"]
    assert call(ts, ctx, "run_python", code="x")["stdout"] == "41\n"  # an exception keeps the state
    assert "empty" in call(ts, ctx, "run_python", code="  \n")["error"]
    flood = call(ts, ctx, "run_python", code="print('a' * 20000)")
    assert flood["status"] == "ok" and len(flood["stdout"]) < 4200 and "characters cut" in flood["stdout"]
    name = world.file_of["F"]
    count = call(ts, ctx, "run_python", code=f"print(sum(1 for _ in open({name!r})))")
    assert int(count["stdout"]) == len(world.files[name].splitlines())
    call(ts, ctx, "run_python", code="open('notes.txt', 'w').write('a\\nb\\n')")
    assert "notes.txt" in {f["name"] for f in call(ts, ctx, "list_files")["files"]}
    assert call(ts, ctx, "read_file", path="notes.txt")["text"] == "a\nb"


# Every kind of non-regular entry the policy's code can plant, with the link text if a link.
ODD_ENTRIES = {
    "l2.csv": "DATA",  # a link to a data file (the tester's repro)
    "dangling": "nope.csv",
    "to_dir": "sub",
    "passwd": "/etc/passwd",  # outside the workspace
    "up": "../../../../etc/hostname",
    "loop": "loop",
    "sub/inner": "/etc/passwd",
    "pipe": None,
}


def test_links_and_special_files_never_break_listing_nor_leak(tool_ctx):
    ts, ctx, world, _ = tool_ctx
    name = world.file_of["F"]
    plant = ["import os", "os.mkdir('sub')", "os.mkfifo('pipe')"]
    plant += [f"os.symlink({t.replace('DATA', name)!r}, {n!r})" for n, t in ODD_ENTRIES.items() if t]
    assert call(ts, ctx, "run_python", code="\n".join(plant))["status"] == "ok"
    listed = call(ts, ctx, "list_files")
    assert "error" not in listed, listed
    entries = {e["name"]: e for e in listed["files"]}
    assert entries["l2.csv"] == {"name": "l2.csv", "link": name}  # a link is listed as one, not followed
    assert entries["passwd"] == {"name": "passwd", "link": "/etc/passwd"}
    assert entries["sub/"] == {"name": "sub/"} and entries["pipe"] == {"name": "pipe"}
    assert entries[name]["lines"] == len(world.files[name].splitlines())
    secrets = [ln for ln in Path("/etc/passwd").read_text().splitlines() if ln][:1]
    for path, target in ODD_ENTRIES.items():
        err = call(ts, ctx, "read_file", path=path)
        assert set(err) == {"error"}, (path, err)  # a clear ToolError, never "read_file failed: ..."
        assert "failed" not in err["error"] and not any(s in err["error"] for s in secrets)
        if target is not None:
            assert "symbolic link" in err["error"] and "does not follow links" in err["error"], err
    assert call(ts, ctx, "read_file", path="l2.csv")["error"].startswith(f"'l2.csv' is a symbolic link to {name!r}")
    assert "is a directory" in call(ts, ctx, "read_file", path="sub")["error"]
    assert "not a regular file" in call(ts, ctx, "read_file", path="pipe")["error"]
    assert call(ts, ctx, "read_file", path=name)["text"].splitlines() == world.files[name].splitlines()[:50]


def test_timeout_restarts_the_interpreter(tool_ctx):
    ts, ctx, _, _ = tool_ctx
    call(ts, ctx, "run_python", code="y = 1")
    out = call(ts, ctx, "run_python", code="while True:\n    pass")
    assert out["status"] == "timeout" and "variables are gone" in out["note"]
    assert call(ts, ctx, "run_python", code="y")["status"] == "error"  # NameError: state was lost
    assert call(ts, ctx, "run_python", code="print(2 + 2)")["stdout"] == "4\n"  # and it works again


def sandbox_processes(workspace: Path) -> list[int]:
    """Pids whose command line mentions the workspace (bwrap binds it at /workspace)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if str(workspace).encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def test_sandbox_opens_lazily_and_is_gone_at_episode_end():
    task, world = task_of("stat", 2)
    env = make_env("code", source=MemorySource([(task, world)]))
    for end in ("submit", "reset", "close"):
        env.reset(options={"task_id": task.task_id})
        env.step(mk.render_action([("list_files", {}), ("read_file", {"path": world.file_of["F"]})]))
        ctx = env._ctx
        assert ctx.session is None
        env.step(mk.render_action([("run_python", {"code": "import time; v = 1"})]))
        workspace = ctx.session.workspace.path
        assert workspace.exists() and sandbox_processes(workspace)
        if end == "submit":
            env.step(mk.render_action([("submit", {"answer": 1})]))
        elif end == "reset":
            env.reset(options={"task_id": task.task_id})
        else:
            env.close()
        assert ctx.session is None and not workspace.exists() and sandbox_processes(workspace) == []


def test_episodes_share_nothing_and_contexts_pickle(tool_ctx):
    ts, ctx, world, task = tool_ctx
    other = FAM.episode_context(world, task)
    try:
        assert pickle.loads(pickle.dumps(other)).files == world.files  # unopened: an exact copy
        call(ts, ctx, "run_python", code="secret = 7\nopen('mine.txt', 'w').write('x')")
        assert call(ts, other, "run_python", code="secret")["status"] == "error"
        assert "mine.txt" not in {f["name"] for f in call(ts, other, "list_files")["files"]}
        clone = pickle.loads(pickle.dumps(ctx))  # an open sandbox is not carried: a fresh one opens
        assert clone.session is None
        assert call(ts, clone, "run_python", code="secret")["status"] == "error"
        assert call(ts, ctx, "run_python", code="secret")["stdout"] == "7\n"  # the original keeps its own
        clone.close()
    finally:
        other.close()


# ------------------------------------------------------------------------- reference and gates


@pytest.mark.parametrize(("kind", "difficulty"), [k for k in KINDS if k[1] in (1, 2, 4, 5)])
def test_reference_runs_through_the_tools_and_every_gate_answer_scores_zero(kind, difficulty):
    task, world = task_of(kind, difficulty)
    env = make_env("code", source=MemorySource([(task, world)]))
    agent = ProgramPolicy(FAM.reference(task.params, task.tool_config))
    ep = run_episode(env, agent)
    assert ep.reward == 1.0, ep.info.get("verdict")
    calls = [c["function"]["name"] for m in ep.info["messages"] for c in m.get("tool_calls") or []]
    assert "run_python" in calls and "read_file" not in calls
    rng = random.Random(3)
    schema = next(t for t in task.tools if t["function"]["name"] == "submit")["function"]["parameters"]
    null = empty_value(schema["properties"]["answer"])
    wrong = [null, *(FAM.bluff_answer(task, rng) for _ in range(5)), *FAM.perturb(world, task, agent.answer, rng)]
    for answer in wrong:  # wrong by construction
        assert verify(task.verifier_spec, answer).score == 0.0, answer
    # Random answers are plausible draws from the data, so one can be right by luck; that is what
    # the pipeline's random gate catches (the task is then dropped). Here: each is a valid submit,
    # and luck stays rare.
    submit = Toolset(FAM.tools(task.tool_config))
    randoms = [FAM.random_answer(world, task, rng) for _ in range(20)]
    assert all(not isinstance(submit.validate("submit", {"answer": a}), str) for a in randoms)
    assert sum(verify(task.verifier_spec, a).score for a in randoms) <= 1
    if task.params["answer"] == "number":
        assert "within 0.01" in task.prompt


def test_a_copy_made_mid_episode_says_its_sandbox_restarted():
    """A live sandbox cannot be copied; the copy's next result says what was lost (never silent)."""
    import gymnasium as gym

    env = gym.make("toolgym/CodeInterpreter-v1", difficulty=1).unwrapped
    try:
        env.reset(seed=0)
        write = mk.render_action([("run_python", {"code": "x = 41; open('mine.txt', 'w').write('m')"})])
        env.step(write)
        copy = pickle.loads(pickle.dumps(env))
        try:
            run = mk.render_action([("run_python", {"code": "print(x + 1)"})])
            (result,) = mk.parse_tool_results(copy.step(run)[0])
            assert result["content"]["status"] == "error" and "copied or unpickled" in result["content"]["note"]
            (again,) = mk.parse_tool_results(copy.step(mk.render_action([("list_files", {})]))[0])
            assert "note" not in again["content"]  # said once
            (orig,) = mk.parse_tool_results(env.step(run)[0])
            assert orig["content"]["stdout"].strip() == "42" and "note" not in orig["content"]
        finally:
            copy.close()
        fresh = pickle.loads(pickle.dumps(gym.make("toolgym/CodeInterpreter-v1", difficulty=1).unwrapped))
        fresh.reset(seed=0)
        (listed,) = mk.parse_tool_results(fresh.step(mk.render_action([("list_files", {})]))[0])
        assert "note" not in listed["content"]  # nothing was live, nothing lost
        fresh.close()
    finally:
        env.close()
