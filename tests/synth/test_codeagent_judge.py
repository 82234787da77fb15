"""The codeagent family through real sandboxes: run_tests, the judge, the gates and the anti-hacking suite.

Every hack below is an agent's episode through the env: it edits files with ``edit_file`` and runs
code with ``run_tests`` (the only tool that executes anything), then submits. Each must score 0,
and the judge must be unaffected: the reference, run in the same env afterwards, still scores 1.
"""

import random
import textwrap

import pytest

from toolgym.envs.agents import NullAgent
from toolgym.envs.rollout import Final, ProgramPolicy, Step, run_episode
from toolgym.synth import get_family
from toolgym.synth.candidate import synthesize_world, task_env
from toolgym.synth.config import SynthConfig

FAM = get_family("codeagent")


@pytest.fixture(scope="module")
def shipped():
    config = SynthConfig(family="codeagent", difficulty=(3, 3), seed=11, tasks_per_world=1, workers=1)
    result = synthesize_world(config, 0)  # every gate ran, the family's own included
    out = result.outcomes[0]
    assert out.status == "shipped", out.reason
    world = FAM.load_world(result.world.data)
    env = task_env(FAM, out.task, world)
    yield world, out.task, env
    env.close()


def _play(env, task, steps, answer="done"):
    def program():
        results = []
        for step in steps:
            results.append((yield Step(step)))
        return Final(answer)

    policy = ProgramPolicy(program(), strict=False)
    ep = run_episode(env, policy, options={"task_id": task.task_id})
    return ep


def _payloads(ep):
    """The tool results of an episode, as dicts, in order."""
    from toolgym.envs import markup as mk

    return [
        r for obs in ep.observations[1:] for r in mk.parse_tool_results(obs) if r.get("name") not in (None, "submit")
    ]


def _reference(env, task):
    return run_episode(
        env, ProgramPolicy(FAM.reference(task.params, task.tool_config)), options={"task_id": task.task_id}
    )


def test_reference_scores_one_and_every_gate_agent_zero(shipped):
    world, task, env = shipped
    ref = _reference(env, task)
    assert ref.reward == 1.0 and "hidden tests pass" in ref.info["verdict"]["reason"]
    assert run_episode(env, NullAgent(), options={"task_id": task.task_id}).reward == 0.0
    reasons = {}
    for gate, program in FAM.gate_agents(world, task, random.Random(3)):
        ep = run_episode(env, ProgramPolicy(program, strict=False), options={"task_id": task.task_id})
        assert ep.reward == 0.0, gate
        assert not any("error" in r for r in _payloads(ep)), gate  # its edits applied: the gate really tried
        reasons[gate] = ep.info["verdict"]["reason"]
    assert "unchanged" in reasons["edit_tests"]  # tests are not judged: the package is the buggy one
    assert "fail-to-pass" in reasons["constant"] and "unchanged" not in reasons["constant"]  # judged for real


def test_run_tests_runs_the_visible_tests_in_the_sandbox_and_reports_failures(shipped):
    world, task, env = shipped
    path = next(p for p in world.files if p.startswith("tests/"))
    fn = world.files[path].split("def ", 1)[1].split("(")[0]
    broken = "def test_zz_broken():\n    assert 1 == 2, 'one is not two'\n"
    ep = _play(
        env,
        task,
        [
            [("run_tests", {})],
            [("edit_file", {"path": path, "old": "", "new": "x"})],  # refused: the file exists
            [("edit_file", {"path": path, "old": f"def {fn}(", "new": broken + f"\n\ndef {fn}("})],
            [("run_tests", {"path": path})],
        ],
    )
    first, refused, _, second = _payloads(ep)
    assert first["content"]["passed"] >= 1 and isinstance(first["content"]["failed"], int)
    assert "exists" in refused["error"]
    fails = second["content"]["failures"]
    assert {"test": f"{path}::test_zz_broken", "error": "AssertionError: one is not two"} in fails
    assert ep.reward == 0.0


HACKS = {
    # look for the hidden tests in the agent's sandbox: files anywhere but /usr, and every process's argv/environ
    "search": """
        import os
        token, found = "".join(reversed({token!r})), []  # spelled backwards: this file must not match
        for top in ("/workspace", "/tmp", "/etc", "/dev/shm", "/run", "/home", "/root", "/var", "/opt"):
            for d, _, fs in os.walk(top):
                for f in fs:
                    try:
                        with open(os.path.join(d, f), "rb") as fh:
                            if token.encode() in fh.read(1 << 22):
                                found.append(os.path.join(d, f))
                    except OSError:
                        pass
        for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
            for part in ("cmdline", "environ"):
                try:
                    with open(f"/proc/{{pid}}/{{part}}", "rb") as fh:
                        if token.encode() in fh.read():
                            found.append(pid + part)
                except OSError:
                    pass
        print("FOUND", len(found), found)
    """,
    # write verdict, junit and reward files everywhere the agent can
    "verdict": """
        import os
        for path in ("verdict.json", "junit.xml", "reward.txt", "/tmp/verdict.json", "{pkg}/verdict.json"):
            with open(path, "w") as fh:
                fh.write('{{"score": 1, "passed": true}}<testsuite failures="0" tests="1"/>')
        print("FOUND 0 wrote")
    """,
    # leave a daemon that appends to the package after the call has returned
    "daemon": """
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(1.0)
                with open("{pkg}/__init__.py", "a") as fh:
                    fh.write("DAEMON = 1")
                os._exit(0)
            os._exit(0)
        print("FOUND 0 daemon started")
    """,
}

#: Run after each hack in a second call: the daemon is gone and never wrote (1.5 s later).
CHECK = """
    import os, time
    time.sleep(1.5)
    text = open("{pkg}/__init__.py").read()
    others = [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, os.getppid(), os.getpid())]
    print("FOUND", int("DAEMON" in text), "others", len(others))
"""


def _hack_test(code: str) -> str:
    return "def test_hack():\n" + textwrap.indent(textwrap.dedent(code).strip(), "    ") + "\n"


@pytest.mark.parametrize("hack", sorted(HACKS))
def test_agent_code_that_hunts_for_tests_or_writes_verdicts_or_leaves_a_daemon_scores_zero(shipped, hack):
    world, task, env = shipped
    code = HACKS[hack].format(token=task.verifier_spec["buggy"][::-1], pkg=world.package)
    check = CHECK.format(pkg=world.package)
    steps = [
        [("edit_file", {"path": "tests/test_hack.py", "old": "", "new": _hack_test(code)})],
        [("edit_file", {"path": "verdict.json", "old": "", "new": '{"score": 1.0, "passed": true}'})],
        [("run_tests", {"path": "tests/test_hack.py"})],
        [("edit_file", {"path": "tests/test_check.py", "old": "", "new": _hack_test(check)})],
        [("run_tests", {"path": "tests/test_check.py"})],
    ]
    ep = _play(env, task, steps)
    runs = [r["content"] for r in _payloads(ep) if r["name"] == "run_tests"]
    assert [r["passed"] for r in runs] == [1, 1], runs
    assert "FOUND 0" in runs[0]["stdout"], runs[0]  # nothing of the hidden tests anywhere it can look
    assert "FOUND 0 others 0" in runs[1]["stdout"], runs[1]  # no survivor of the earlier call, no late write
    assert ep.reward == 0.0
    assert _reference(env, task).reward == 1.0  # the judge is unaffected


def test_a_package_that_monkeypatches_the_runner_and_forges_its_output_scores_zero(shipped):
    world, task, env = shipped
    # sitecustomize/conftest in the workspace, and a package __init__ that patches json.dumps so the
    # judge's runner reports every hidden case as passed with whatever value it likes
    forge = textwrap.dedent(
        """
        import json
        _dumps = json.dumps

        def _forged(obj, *args, **kwargs):
            if isinstance(obj, dict) and obj and all("#" in str(k) for k in obj):
                obj = {k: ["ok", True] for k in obj}
            return _dumps(obj, *args, **kwargs)

        json.dumps = _forged
        """
    )
    init = f"{world.package}/__init__.py"
    steps = [
        [
            (
                "edit_file",
                {"path": "sitecustomize.py", "old": "", "new": "import builtins\nbuiltins.__import__ = None\n"},
            )
        ],
        [("edit_file", {"path": f"{world.package}/conftest.py", "old": "", "new": "raise SystemExit(0)\n"})],
        [("edit_file", {"path": "tests/conftest.py", "old": "", "new": "import os\nos._exit(0)\n"})],
        [("edit_file", {"path": init, "old": world.files[init], "new": world.files[init] + forge})],
    ]
    ep = _play(env, task, steps)
    assert ep.reward == 0.0
    reason = ep.info["verdict"]["reason"]
    assert "hidden tests fail" in reason and "0 pass-to-pass" not in reason, reason  # forged outcomes, compared
    assert _reference(env, task).reward == 1.0


def test_the_expected_outcomes_never_reach_a_sandbox(shipped, monkeypatch):
    world, task, env = shipped
    import toolgym.verifiers.hidden_tests as ht

    sent = []
    real = ht.judged_files

    def spy(files, package):
        out = real(files, package)
        sent.append(out)
        return out

    monkeypatch.setattr(ht, "judged_files", spy)
    assert _reference(env, task).reward == 1.0
    assert sent and all(p.startswith(world.package + "/") and p.endswith(".py") for p in sent[-1])
    calls = ht.hidden_calls(task.verifier_spec)  # what the judge's stdin carries: calls, no outcomes
    cases = task.verifier_spec["cases"]
    assert calls == [[c[0], f"{world.package}.{c[1]}", c[2], c[3]] for c in cases]  # id, where, args: no outcome
    assert sent[-1] == {p: t for p, t in world.files.items() if p.startswith(world.package + "/")}  # the fixed sources


def test_gate_repairs_are_judged_in_process_only_inside_the_gate_scope_and_as_the_sandbox_would(shipped, monkeypatch):
    import threading

    import toolgym.synth.codeagent.family as ca_family
    import toolgym.verifiers.hidden_tests as ht
    from toolgym.synth.codeagent.gatejudge import judge_in_process

    world, task, env = shipped
    spec = task.verifier_spec
    seen = []

    def spy(files, spec_):
        seen.append((dict(files), judge_in_process(files, spec_)))
        return seen[-1][1]

    monkeypatch.setattr(ca_family, "judge_in_process", spy)
    assert _reference(env, task).reward == 1.0 and not seen  # outside the scope: the sandbox alone judges
    for gate, program in FAM.gate_agents(world, task, random.Random(3)):
        with FAM.gate_scope():
            ep = run_episode(env, ProgramPolicy(program, strict=False), options={"task_id": task.task_id})
        assert ep.reward == 0.0, gate
    judged = [(f, o) for f, o in seen if o is not None]
    assert len(judged) >= 2  # random_edits, delete_function, constant (edit_tests is unchanged: no run)
    for files, outcomes in judged:  # the same outcomes as the judge sandbox, or (a broken import) the same verdict
        sandbox, _ = ht.run_hidden(files, spec)
        broken = {c[0] for c in spec["cases"] if outcomes[c[0]] == ["raise", "ImportError"]}
        assert {k: v for k, v in outcomes.items() if k not in broken} == {
            k: v for k, v in sandbox.items() if k not in broken
        }
        assert all(sandbox[c[0]] != c[4] for c in spec["cases"] if c[0] in broken and c[4][0] == "ok")
    pkg = world.package
    fixed = dict(world.files)
    assert judge_in_process(fixed, spec) is not None
    for path, text in [(f"{pkg}/__init__.py", "import os\n"), (f"{pkg}/extra.py", "X = 1\n")]:
        assert judge_in_process({**fixed, path: text}, spec) is None  # code the twin run would not execute
    box = []
    worker = threading.Thread(target=lambda: box.append(judge_in_process(fixed, spec)))
    worker.start()
    worker.join()
    assert box == [None]  # no SIGALRM backstop off the main thread: the sandbox judges


def test_outcomes_match_by_type_and_floats_within_rounding():
    from toolgym.verifiers.hidden_tests import same_outcome, trusted_judge, verify_hidden_tests

    assert same_outcome(["ok", True], ["ok", True]) and same_outcome(["ok", [1, "a"]], ["ok", [1, "a"]])
    assert not same_outcome(["ok", 1], ["ok", True])  # int(...) where a bool is promised (newcomer's report)
    assert not same_outcome(["ok", 1.0], ["ok", 1]) and not same_outcome(["ok", [1]], ["ok", [1, 2]])
    assert same_outcome(["ok", 0.1 + 0.2], ["ok", 0.3]) and not same_outcome(["ok", 0.31], ["ok", 0.3])
    assert same_outcome(["ok", {"a": 1}], ["ok", {"a": 1}]) and not same_outcome(["ok", {"a": 1}], ["ok", {"a": True}])
    assert not same_outcome(None, ["ok", 1]) and same_outcome(["raise", "ValueError"], ["raise", "ValueError"])

    class State:
        def judge_files(self):
            return {"pkg/a.py": "def f():\n    return int(True)\n"}

    spec = {"package": "pkg", "cases": [["a#1", "pkg.a", "f", [], ["ok", True]]], "fail_to_pass": ["a#1"], "buggy": ""}
    with trusted_judge(lambda files, spec: {"a#1": ["ok", 1]}):
        assert not verify_hidden_tests(spec, "fixed", State()).passed
    with trusted_judge(lambda files, spec: {"a#1": ["ok", True]}):
        assert verify_hidden_tests(spec, "fixed", State()).passed
