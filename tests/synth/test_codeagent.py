"""The codeagent family: mutations and their undoing, the shipping rule, the issue text, the tools."""

import random

import pytest

from toolgym.envs.tools import ToolError
from toolgym.synth import get_family
from toolgym.synth.candidate import build_task
from toolgym.synth.codeagent import tasks
from toolgym.synth.codeagent.mutate import apply, fix_edits, mutations
from toolgym.synth.codeagent.package import public_functions, run_cases
from toolgym.synth.codeagent.tools import AgentContext, edit_file, read_file, search_code
from toolgym.verifiers.hidden_tests import judged_files, package_digest

FAM = get_family("codeagent")


def _task(seed: int, difficulty: int):
    world = FAM.make_world(seed, difficulty)
    rng = random.Random(seed)
    for k in range(4):
        draft = FAM.make_task(world, difficulty, rng)
        if draft is not None:
            return world, build_task(FAM, "w", f"codeagent-{seed}-{k}", difficulty, "train", draft)
    raise AssertionError("no task")


def test_every_operator_is_found_and_each_mutation_is_a_one_token_slip():
    world = FAM.make_world(0, 5)
    kinds = set()
    for mid in world.data["order"]:
        src = world.data["sources"][mid]
        muts = mutations(mid, src)
        assert muts, mid
        for m in muts:
            kinds.add(m.kind)
            out = apply(src, [m])
            assert out != src and src[m.start : m.end] == m.old
            if m.kind != "dropped_branch":  # a slip changes one line, the rest is byte-identical
                changed = [a for a, b in zip(src.splitlines(), out.splitlines(), strict=True) if a != b]
                assert len(changed) == 1, (m, changed)
    assert kinds == {"comparator", "operator", "off_by_one", "swapped_args", "dropped_branch", "wrong_default"}


@pytest.mark.parametrize("difficulty", [1, 3, 5])
def test_a_task_ships_only_bugs_the_hidden_cases_tell_apart_and_its_edits_undo_them(difficulty):
    world, task = _task(1, difficulty)
    d, spec = world.data, task.verifier_spec
    assert len(task.meta["bugs"]) == tasks.BUGS[difficulty]
    clean = run_cases(d["sources"], d["order"], d["hidden"])
    assert all(clean[c[0]] == c[4] for c in d["hidden"])  # every hidden case passes without the bugs
    bugs = [tasks.Mutation(**b) for b in task.meta["bugs"]]
    for bug in bugs:  # each bug alone fails at least two hidden cases (a special-cased input cannot pass)
        assert len(tasks._failing(world, [bug])) >= 2
    assert set(spec["fail_to_pass"]) == set(tasks._failing(world, bugs)) != set()
    # the buggy workspace is the clean one with the params' files; its digest is the spec's
    buggy = {**world.files, **task.params["files"]}
    assert package_digest(buggy, world.package) == spec["buggy"] != package_digest(world.files, world.package)
    current = dict(buggy)
    for e in task.params["edits"]:  # the reference's edits, in order: unique, and they restore the clean package
        assert current[e["path"]].count(e["old"]) == 1
        current[e["path"]] = current[e["path"]].replace(e["old"], e["new"])
    assert current == world.files
    assert fix_edits(d["sources"], bugs, {m: world.module_path(m) for m in d["order"]}) == task.params["edits"]


def test_the_issue_reports_symptoms_never_tests_or_locations():
    for difficulty in (1, 2, 3, 4, 5):
        world, task = _task(2, difficulty)
        issue = task.prompt.split("---")[1]
        assert ".py" not in issue and "assert" not in issue and "test_" not in issue and "line " not in issue
        for _, mid, fn, _ in task.params["symptoms"]:
            assert f"{world.package}.{mid}.{fn}(" in issue
        if difficulty < 4:  # the misleading (true) detail comes at 4 and 5 only
            assert "While digging" not in issue
        if difficulty == 1:  # reported at the buggy function itself
            assert [s[2] for s in task.params["symptoms"]] == [b["function"] for b in task.meta["bugs"]]
        if difficulty >= 3:  # further away: some symptom is reported in another module than its cause
            pairs = zip(task.meta["bugs"], task.params["symptoms"], strict=True)
            assert any(b["module"] != s[1] for b, s in pairs), task.params["symptoms"]


def test_visible_tests_are_plain_asserts_over_other_inputs_than_the_hidden_ones():
    world = FAM.make_world(4, 3)
    hidden = {(c[1], c[2], repr(c[3])) for c in world.data["hidden"]}
    assert not any((c[1], c[2], repr(c[3])) in hidden for c in world.data["visible"])
    for mid in world.data["order"]:
        text = world.files[f"tests/test_{mid}.py"]
        compile(text, "t.py", "exec")
        assert "assert result ==" in text and "import pytest" not in text
        assert set(public_functions(world.data["sources"][mid])) >= {c[2] for c in world.data["visible"] if c[1] == mid}


def test_edit_file_applies_one_unique_snippet_and_says_why_not_otherwise():
    ctx = AgentContext({"p/a.py": "x = 1\ny = 1\n", "tests/test_a.py": "def test_a():\n    pass\n"}, "p")
    with pytest.raises(ToolError, match="occurs 2 times.*nothing applied"):
        edit_file(ctx, "p/a.py", " = 1", " = 2")
    with pytest.raises(ToolError, match="not found.*closest line is 'x = 1'"):
        edit_file(ctx, "p/a.py", "x  = 1", "x = 2")
    with pytest.raises(ToolError, match="no file named 'p/b.py'.*p/a.py"):
        edit_file(ctx, "p/b.py", "x", "y")
    with pytest.raises(ToolError, match="the same"):
        edit_file(ctx, "p/a.py", "x = 1", "x = 1")
    with pytest.raises(ToolError, match="exists"):
        edit_file(ctx, "p/a.py", "", "z = 3")
    assert ctx.files["p/a.py"] == "x = 1\ny = 1\n"  # nothing applied by any of those
    assert edit_file(ctx, "p/a.py", "y = 1", "y = 2")["replaced_at_line"] == 2
    assert edit_file(ctx, "p/c.py", "", "z = 3\n")["created"] is True
    assert ctx.files["p/a.py"] == "x = 1\ny = 2\n" and ctx.files["p/c.py"] == "z = 3\n"
    assert [m["line"] for m in search_code(ctx, "= ")["matches"]] == [1, 2, 1]
    assert search_code(ctx, r"^y\s*=", regex=True)["total"] == 1
    assert read_file(ctx, "p/a.py")["text"] == "x = 1\ny = 2"
    # the judge copies the package's sources only: tests and conftest files never count
    ctx.files["p/conftest.py"] = "raise SystemExit"
    assert set(judged_files(ctx.files, "p")) == {"p/a.py", "p/c.py"}


def test_bug_kinds_are_balanced_not_as_common_as_their_sites():
    counts: dict[str, int] = {}
    for seed in range(30):
        world = FAM.make_world(seed, 1)
        draft = FAM.make_task(world, 1, random.Random(seed))
        if draft is not None:
            for kind in draft.meta["kinds"]:
                counts[kind] = counts.get(kind, 0) + 1
    total = sum(counts.values())
    assert total >= 25 and len(counts) >= 5, counts
    assert max(counts.values()) <= 0.35 * total, counts  # by sites: off-by-one and operator ~40% each
