"""The code family's run_python is limited by CPU time, with a wall-clock backstop (issue 14).

That the kernel measures the budget in CPU time, also beside CPU hogs, is shown on the sandbox
itself (tests/sandbox/test_sandbox_cpu_budget.py); here: the family asks for it.
"""

from __future__ import annotations

from toolgym.envs.tools import Toolset
from toolgym.sandbox import Limits
from toolgym.synth.code import tools as code_tools


def test_call_limits_are_a_cpu_budget_and_a_wall_backstop_of_four_times_plus_five_seconds():
    assert code_tools.call_limits(10.0) == Limits(cpu_s=10.0, wall_s=45.0)
    assert code_tools.call_limits(1.5) == Limits(cpu_s=1.5, wall_s=11.0)
    assert code_tools.call_limits(1.5).cpu_budget_s == 1.5


def test_an_episode_sandbox_runs_with_the_tasks_cpu_budget():
    ts = Toolset(code_tools.toolset({"answer": "number"}))
    assert "10 s of CPU time" in ts.tools["run_python"].description
    ctx = code_tools.CodeContext({"a.csv": "x\n1\n"}, timeout_s=1.5)
    try:
        ok, out = ts.call(ctx, "run_python", {"code": "open('a.csv').read()"})
        assert ok and out["status"] == "ok" and out["stdout"] == "'x\\n1\\n'\n", out
        assert ctx.session is not None and ctx.session.limits == code_tools.call_limits(1.5)
    finally:
        ctx.close()
