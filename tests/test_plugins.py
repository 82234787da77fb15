"""A family from outside the package, installed as a plugin, through the real ``toolgym`` command.

Each test builds a tiny plugin distribution in a tmp dir: a module with a family and a
``.dist-info`` whose ``entry_points.txt`` lists it in the ``toolgym.families`` group (what
``pip install`` of a pyproject with ``[project.entry-points."toolgym.families"]`` leaves behind),
put on ``PYTHONPATH`` so :mod:`importlib.metadata` finds it. Then the CLI runs in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import toolgym

BANK = '''
import random

from toolgym.envs.rollout import Step
from toolgym.envs.strict import Integer
from toolgym.envs.tools import ToolError, as_tool, tool
from toolgym.spec import TaskDraft
from toolgym.synth.family import Family

NAMES = ["alice", "bob", "carol", "dave", "erin", "frank"]


class Bank:
    def __init__(self, data):
        self.data = data

    def to_json(self):
        return self.data


@tool("read")
def get_balance(world: Bank, account: str) -> int:
    """Balance of an account.

    Args:
        account: Account name.
    """
    if account not in world.data["accounts"]:
        raise ToolError(f"no account {account!r}")
    return world.data["accounts"][account]


@tool("write")
def transfer(world: Bank, src: str, dst: str, amount: int) -> dict:
    """Move money between two accounts.

    Args:
        src: From.
        dst: To.
        amount: Positive amount, at most the balance of src.
    """
    acc = world.data["accounts"]
    if src not in acc or dst not in acc or not 0 < amount <= acc[src]:
        raise ToolError("bad transfer")
    acc[src] -= amount
    acc[dst] += amount
    return {"src": acc[src], "dst": acc[dst]}


@tool("read")
def submit(world: Bank, answer: Integer) -> str:
    """Submit the final balance of the target account.

    Args:
        answer: The balance.
    """
    return "submitted"


class BankFamily(Family):
    id = "bank"
    env_name = "Bank"
    version = 0
    summary = "a toy bank (plugin)"

    def make_world(self, seed, difficulty):
        rng = random.Random(seed)
        return Bank({"accounts": {n: rng.randrange(50, 200) for n in NAMES}})

    def load_world(self, data):
        return Bank(data)

    def make_task(self, world, difficulty, rng):
        moves = [[*rng.sample(NAMES, 2), rng.randrange(1, 20)] for _ in range(difficulty + 1)]
        target = rng.choice(NAMES)
        acc = dict(world.data["accounts"])
        for s, d, a in moves:
            acc[s] -= a
            acc[d] += a
        return TaskDraft(
            prompt=f"Make these transfers (from, to, amount): {moves}. Then submit the balance of {target}.",
            params={"moves": moves, "target": target},
            verifier_spec={"kind": "all", "checks": [{"kind": "state", "fields": ["accounts"]},
                                                     {"kind": "numeric", "expected": acc[target]}]},
            tool_config={},
        )

    def tools(self, tool_config):
        return [as_tool(f) for f in (get_balance, transfer, submit)]

    def reference(self, params, tool_config):
        yield Step([("transfer", {"src": s, "dst": d, "amount": a}) for s, d, a in params["moves"]], "Transfers.")
        (r,) = yield Step([("get_balance", {"account": params["target"]})], "Reading the balance.")
        return r["content"]

    def random_answer(self, world, task, rng):
        return rng.randrange(0, 400)

    def bluff_answer(self, task, rng):
        return 100

    def perturb(self, world, task, answer, rng):
        return [answer + 1, answer - 1]
'''


def plugin_dir(tmp_path: Path, entries: dict[str, str], name: str = "bank_plugin") -> Path:
    """A directory holding ``bank_plugin.py`` and one distribution listing ``entries`` (name -> value)."""
    root = tmp_path / "site"
    root.mkdir(exist_ok=True)
    (root / "bank_plugin.py").write_text(BANK)
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entries.items())
    (info / "entry_points.txt").write_text(f"[toolgym.families]\n{lines}")
    return root


def toolgym_cli(site: Path, *args: object) -> subprocess.CompletedProcess[str]:
    """``python -m toolgym.cli ARGS`` with the plugin directory (and this toolgym) on the path."""
    here = str(Path(toolgym.__file__).resolve().parent.parent)  # where `import toolgym` finds it
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", ""), here) if p)
    env = {**os.environ, "PYTHONPATH": path}
    cmd = [sys.executable, "-m", "toolgym.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


def test_a_plugin_family_synthesizes_shows_and_evaluates_through_the_cli(tmp_path):
    site = plugin_dir(tmp_path, {"bank": "bank_plugin:BankFamily"})
    out = tmp_path / "bank.duckdb"
    synth = toolgym_cli(
        site, "synth", "--family", "bank", "--count", "3", "--difficulty", "1-2", "--executor", "serial",
        "--workers", "1", "--out", out,
    )  # fmt: skip
    assert synth.returncode == 0, synth.stderr
    assert "warning" not in synth.stderr
    listed = toolgym_cli(site, "tasks", "-d", out)
    assert listed.returncode == 0, listed.stderr
    ids = [line.split("\t")[0] for line in listed.stdout.splitlines()]
    assert len(ids) == 3 and all(i.startswith("bank") for i in ids), listed.stdout
    shown = toolgym_cli(site, "show", ids[0], "-d", out)
    assert shown.returncode == 0, shown.stderr
    assert "transfer" in shown.stdout and "Make these transfers" in shown.stdout
    evaluated = toolgym_cli(site, "eval", "--policy", "reference", "-d", out, "-n", "1")
    assert evaluated.returncode == 0, evaluated.stderr
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in evaluated.stdout.splitlines() if "│" in line]
    assert ["bank", "all", "3", "1.000 ± 0.000", "1.000"] in rows, evaluated.stdout  # every task passes


def test_a_broken_plugin_is_one_warning_and_the_rest_still_works(tmp_path):
    site = plugin_dir(
        tmp_path,
        {
            "bank": "bank_plugin:BankFamily",
            "ghost": "no_such_plugin_module:Family",  # cannot be imported
            "vault": "bank_plugin:BankFamily",  # its class says id = "bank"
        },
    )
    listed = toolgym_cli(site, "families")
    assert listed.returncode == 0, listed.stderr
    assert "bank" in listed.stdout and "toolgym/Bank-v0" in listed.stdout and "trip" in listed.stdout
    warnings = listed.stderr.strip().splitlines()
    assert len(warnings) == 2 and all(w.startswith("warning: plugin family ") for w in warnings), listed.stderr
    ghost, vault = sorted(warnings)
    assert "'ghost'" in ghost and "ModuleNotFoundError" in ghost and "no_such_plugin_module" in ghost
    assert "'vault'" in vault and "BankFamily.id is 'bank'" in vault
    used = toolgym_cli(site, "synth", "--family", "ghost", "--count", "1", "--out", tmp_path / "g.duckdb")
    last = used.stderr.strip().splitlines()[-1]  # using it names the plugin and why, not just "unknown family"
    assert used.returncode == 2 and last.startswith("error: plugin family 'ghost' (no_such_plugin_module:Family)")
    assert not (tmp_path / "g.duckdb").exists()


def test_import_toolgym_loads_no_plugin(tmp_path):
    site = plugin_dir(tmp_path, {"bank": "bank_plugin:BankFamily"})
    code = textwrap.dedent(
        """
        import sys, toolgym, gymnasium
        assert "bank_plugin" not in sys.modules and "bank" not in toolgym.FAMILIES
        from toolgym.synth import load_plugins
        assert load_plugins() == {} and load_plugins() == {}  # a second call skips what is registered
        assert type(toolgym.family("bank")).__module__ == "bank_plugin"
        assert "toolgym/Bank-v0" in gymnasium.registry
        """
    )
    here = str(Path(toolgym.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", ""), here])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr


def test_a_plugin_family_resolves_on_first_use_without_load_plugins(tmp_path):
    """Unpickling an env in a fresh interpreter (a spawned vector-env worker does this) finds the plugin."""
    site = plugin_dir(tmp_path, {"bank": "bank_plugin:BankFamily"})
    here = str(Path(toolgym.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", ""), here])}
    make = textwrap.dedent(
        """
        import pickle, sys
        from toolgym.envs.toolenv import make_env
        env = make_env("bank")  # no load_plugins(): toolgym.family("bank") finds the installed plugin
        obs, info = env.reset(seed=3)
        env.step('<tool_call>{"name":"get_balance","arguments":{"account":"alice"}}</tool_call>')
        sys.stdout.buffer.write(pickle.dumps(env))
        """
    )
    made = subprocess.run([sys.executable, "-c", make], capture_output=True, timeout=60, env=env)
    assert made.returncode == 0, made.stderr.decode()
    use = textwrap.dedent(
        """
        import pickle, sys, toolgym
        assert "bank" not in toolgym.FAMILIES
        env = pickle.loads(sys.stdin.buffer.read())  # a fresh interpreter, mid-episode
        obs, reward, terminated, truncated, info = env.step("no call")
        assert not terminated and "bank" in toolgym.FAMILIES, obs
        print(info["task_id"])
        """
    )
    used = subprocess.run([sys.executable, "-c", use], input=made.stdout, capture_output=True, timeout=60, env=env)
    assert used.returncode == 0, used.stderr.decode()
    assert used.stdout.decode().startswith("bank-fly-"), used.stdout
    (tmp_path / "b").mkdir()
    broken = plugin_dir(tmp_path / "b", {"ghost": "no_such_plugin_module:Family"})
    env["PYTHONPATH"] = os.pathsep.join([str(broken), here])
    code = "import toolgym\ntry:\n    toolgym.family('ghost')\nexcept Exception as e:\n    print(type(e).__name__, e)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.stdout.startswith("ConfigError plugin family 'ghost' (no_such_plugin_module:Family) failed to import")
