"""Code interpreter, made real (issue 14): messy files whose rules the prompt states, numpy and
pandas in the sandbox, the naive one-shot baseline, ties, and the exact random-pass chance."""

import contextlib
import csv
import io
import json
import pickle
import random
from pathlib import Path

import pytest

from toolgym.bench.synth import argument_chars, heuristic_reward
from toolgym.envs.rollout import ProgramPolicy, run_episode
from toolgym.envs.sources import MemorySource
from toolgym.envs.toolenv import make_env
from toolgym.envs.tools import Toolset
from toolgym.sandbox import pylibs
from toolgym.synth import get_family
from toolgym.synth.candidate import build_task, synthesize_world
from toolgym.synth.code import queries as qy
from toolgym.synth.code import tasks
from toolgym.synth.code.tools import CodeContext
from toolgym.synth.config import SynthConfig
from toolgym.verifiers.verdict import verify

FAM = get_family("code")


def raw_rows(world, role):
    """A table's file as its rows, uncleaned (repeats and all)."""
    text = world.files[world.file_of[role]]
    return json.loads(text) if text.startswith("[") else list(csv.DictReader(io.StringIO(text)))


def task_of(kind, difficulty, seed=0):
    for s in range(seed, seed + 40):
        world = FAM.make_world(2000 + s, difficulty)
        draft = tasks.make_task(world, difficulty, random.Random(s), only=[kind])
        if draft is not None:
            return build_task(FAM, "w", f"t-{kind}-{s}", difficulty, "train", draft), world
    raise AssertionError(f"no {kind} task at difficulty {difficulty}")


def test_mess_grows_with_difficulty_and_the_prompt_warns_of_it():
    """d1 files are clean; from d2 cells go missing and rows repeat, from d3 dates vary, from d4
    a column carries mixed units; every prompt from d2 states the rules in general terms."""
    for d in range(1, 6):
        world = FAM.make_world(21, d)
        raw = raw_rows(world, "F")
        blanks = sum(v in ("", None) for r in raw for v in r.values())
        repeats = len(raw) - len({tuple(r.items()) for r in raw})
        iso = sum(len(r["date"]) == 10 and r["date"][4] == "-" for r in raw)
        units = sum(any(isinstance(v, str) and v.endswith((" cents", " m", " cm")) for v in r.values()) for r in raw)
        assert (blanks > 0, repeats > 0, iso < len(raw), units > 0) == (d >= 2, d >= 2, d >= 3, d >= 4), d
        assert len(raw) - repeats == len(world.rows["F"])  # a repeat is the same row: the truth has it once
        if "L" in world.rows:  # the event log repeats events from 4
            log = raw_rows(world, "L")
            assert (len(log) > len(world.rows["L"])) == (d >= 4) and len({tuple(r.items()) for r in log}) == len(
                world.rows["L"]
            )
        draft = tasks.make_task(world, d, random.Random(1), only=["count"])
        assert ("may be messy" in draft.prompt) == (d >= 2) and ("tie" in draft.prompt) == (d >= 3)


def test_ties_go_to_the_name_that_sorts_first():
    assert qy.ranked({"b": 3.0, "a": 3.0, "c": 1.0}, "max")[0][0] == "a"
    assert qy.ranked({"b": 1.0, "a": 1.0, "c": 3.0}, "min")[0][0] == "a"


def test_the_reference_grows_with_difficulty_and_the_naive_baseline_falls():
    """Reference calls and source length rise from d1 to d5 on the same kind; the naive one-shot
    analysis solves the clean d1 task and fails the messy d5 one (duplicates alone change a count)."""
    calls, chars, naive = [], [], []
    for d in (1, 5):
        task, world = task_of("count" if d > 1 else "stat", d)
        env = make_env("code", source=MemorySource([(task, world)]))
        ep = run_episode(env, ProgramPolicy(FAM.reference(task.params, task.tool_config)))
        assert ep.reward == 1.0, ep.info.get("verdict")
        calls.append(ep.tool_calls)
        chars.append(argument_chars(ep.actions))
        naive.append(heuristic_reward(FAM, task, world))
        env.close()
    assert calls[1] >= calls[0] + 4 and chars[1] > 2 * chars[0], (calls, chars)
    assert naive == [1.0, 0.0]


@pytest.mark.parametrize(("kind", "difficulty"), [("stat", 2), ("compare", 3), ("argmax", 4), ("count", 5)])
def test_random_pass_bounds_what_random_answers_score(kind, difficulty):
    task, world = task_of(kind, difficulty, seed=7)
    chance = FAM.random_pass(world, task)
    rng, n = random.Random(5), 3000
    hits = sum(verify(task.verifier_spec, FAM.random_answer(world, task, rng)).passed for _ in range(n))
    if chance is None:  # deferred to the sampled gate: only when the exact chance is above 0.1%
        assert task.params["answer"] in ("integer", "string") and hits >= 0
        return
    assert hits <= n * chance + 4 * (n * chance) ** 0.5 + 1, (hits, chance)


def test_numpy_and_pandas_are_importable_in_run_python():
    if pylibs.find() is None:
        pytest.skip("sandbox libraries not installed: python -m toolgym.sandbox.pylibs (.ci/run does)")
    ctx = CodeContext({"t.csv": "a,b\n1,x\n2,\n2,\n"})
    tools = Toolset(FAM.tools({"answer": "number"}))
    code = "import numpy as np, pandas as pd\ndf = pd.read_csv('t.csv')\n"
    code += "print(len(df.drop_duplicates()), int(df.b.isna().sum()), np.arange(4).sum())"
    try:
        ok, out = tools.call(ctx, "run_python", {"code": code})
    finally:
        ctx.close()
    assert ok and out["status"] == "ok" and out["stdout"] == "2 2 6\n", out


def test_sandbox_libraries_are_found_only_when_fully_installed(tmp_path, monkeypatch):
    """An interrupted install (no marker) is not used; a directory the slot uids cannot enter is named."""
    monkeypatch.setenv("TOOLGYM_SANDBOX_LIBS", str(tmp_path / "libs"))
    (tmp_path / "libs").mkdir()
    assert pylibs.find() is None
    (tmp_path / "libs" / pylibs.MARKER).write_text("numpy pandas\n")
    assert pylibs.find() == tmp_path / "libs"
    closed = tmp_path / "closed"
    (closed / "inner").mkdir(parents=True)
    closed.chmod(0o700)
    first = pylibs._traversable(closed / "inner")  # pytest's own 0700 base may come first
    assert first is not None and (first == closed or first in closed.parents)
    assert pylibs._traversable(Path("/usr/lib")) is None


def test_synthesis_episodes_take_turns_in_one_renewed_sandbox_and_no_other_episodes_do():
    """Inside synthesis_scope (the generator's own code) one warm sandbox serves every episode in
    turn, each seeing a fresh interpreter and only its own files; outside it, and while the warm
    one is busy, every context opens its own sandbox, closed when its episode ends."""
    with FAM.synthesis_scope():
        first = CodeContext({"t.csv": "a\n1\n"})
        assert first.python().run("x = 1; open('scratch.txt', 'w').write('y')").status.value == "ok"
        session = first.session
        busy = CodeContext({"t.csv": "a\n1\n"})  # while the warm sandbox is in use: one of its own
        assert busy.python() is not first.kernel and busy.warm is None
        busy.close()
        first.close()
        assert not session.closed  # an episode's end releases the warm sandbox
        second = CodeContext({"u.csv": "b\n2\n"})
        out = second.python().run("import os; print(sorted(os.listdir('.')), 'x' in globals())")
        assert second.session is session and out.text.strip() == "['u.csv'] False"
        assert pickle.loads(pickle.dumps(second)).warm is None
        second.close()
    outside = CodeContext({"t.csv": "a\n1\n"})
    try:
        assert outside.python() is not None and outside.session is not session and outside.warm is None
    finally:
        outside.close()
    assert not session.closed


def test_the_warm_sandbox_ships_exactly_the_rows_of_fresh_sandboxes(monkeypatch):
    """Determinism: synthesis with the warm sandbox stores the same tasks and trajectories
    (observations included) as synthesis that opens a fresh sandbox for every episode."""
    config = SynthConfig(family="code", count=6, difficulty=(2, 4), seed=5, tasks_per_world=2, workers=1)

    def rows():
        out = []
        for w in range(3):
            for o in synthesize_world(config, w).outcomes:
                out.append((o.status, o.task and o.task.model_dump(), o.trajectory and o.trajectory.model_dump()))
        return out

    warm = rows()
    monkeypatch.setattr(type(FAM), "synthesis_scope", lambda self: contextlib.nullcontext())
    fresh = rows()
    assert [r[0] for r in warm].count("shipped") >= 3
    assert warm == fresh
