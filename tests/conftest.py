"""Shared fixtures: two toy families with write tools, and small real datasets.

Each toy family registers with exactly one call and overrides no ``episode_context``: the env
isolates their episodes (``toolgym.envs.runtime.open_context``). ToyLedger fills its state check
by hand; ToyInventory leaves it to the reference replay (``toolgym.envs.replay``).
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest

from toolgym.envs.rollout import Step
from toolgym.envs.strict import Integer
from toolgym.envs.tools import ToolError, as_tool, tool
from toolgym.spec import TaskDraft
from toolgym.synth import FAMILIES, register_family
from toolgym.synth.family import Family
from toolgym.verifiers.state import state_hash


class Ledger:
    """A mutable toy world: an account balance and a log of deposits."""

    def __init__(self, data: dict[str, Any]):
        self.data = data

    def to_json(self) -> dict[str, Any]:
        return self.data


@tool("read")
def get_balance(world: Ledger) -> int:
    """The current balance."""
    return world.data["balance"]


@tool("write")
def deposit(world: Ledger, amount: int) -> int:
    """Add money.

    Args:
        amount: How much to add (positive).
    """
    if amount <= 0:
        raise ToolError("amount must be positive")
    world.data["balance"] += amount
    world.data["log"].append(amount)
    return world.data["balance"]


@tool("read")
def submit(world: Ledger, answer: Integer) -> str:
    """Submit the final balance.

    Args:
        answer: The balance after the deposits.
    """
    return "submitted"


class ToyLedger(Family):
    """Deposit the amounts the prompt lists, then submit the balance (state + answer verified)."""

    id = "ledger"
    env_name = "Ledger"
    version = 0
    summary = "toy family with write tools (tests only)"

    def make_world(self, seed: int, difficulty: int) -> Ledger:
        return Ledger({"balance": random.Random(seed).randrange(100), "log": []})

    def load_world(self, data: dict[str, Any]) -> Ledger:
        return Ledger(data)

    def make_task(self, world: Ledger, difficulty: int, rng: random.Random) -> TaskDraft:
        amounts = [rng.randrange(1, 50) for _ in range(difficulty + 1)]
        final = copy.deepcopy(world.data)
        final["balance"] += sum(amounts)
        final["log"] += amounts
        verifier = {
            "kind": "all",
            "checks": [
                {"kind": "state", "expected_hash": state_hash(final, ["balance", "log"]), "fields": ["balance", "log"]},
                {"kind": "numeric", "expected": final["balance"]},
            ],
        }
        return TaskDraft(
            prompt=f"Deposit {amounts} in that order, then submit the balance.",
            params={"amounts": amounts},
            verifier_spec=verifier,
            tool_config={},
        )

    def tools(self, tool_config: dict[str, Any]) -> list:
        return [as_tool(f) for f in (get_balance, deposit, submit)]

    def reference(self, params: dict[str, Any], tool_config: dict[str, Any]):
        balance = None
        for a in params["amounts"]:
            (r,) = yield Step([("deposit", {"amount": a})], f"depositing {a}")
            balance = r["content"]
        return balance

    def random_answer(self, world, task, rng):
        return rng.randrange(1000)

    def bluff_answer(self, task, rng):
        return sum(task.params["amounts"])  # ignores the starting balance it never looked up

    def perturb(self, world, task, answer, rng):
        return [answer + 1, answer - 1]


if "ledger" not in FAMILIES:
    register_family("ledger", ToyLedger)


class Inventory:
    """A mutable toy world: named bins, each an ordered list of items (moves append), and a move counter."""

    def __init__(self, data: dict[str, Any]):
        self.data = data

    def to_json(self) -> dict[str, Any]:
        return self.data


BINS = ("A", "B", "C", "D")
ITEMS = ("bolt", "nut", "washer", "gear", "spring", "valve", "hinge", "clamp", "rivet", "pulley", "cog", "latch")


def _bin(world: Inventory, name: str) -> list[str]:
    if name not in world.data["bins"]:
        raise ToolError(f"no bin {name!r}; bins are {', '.join(world.data['bins'])}")
    return world.data["bins"][name]


@tool("read")
def find_item(world: Inventory, item: str) -> str:
    """The bin an item is in.

    Args:
        item: Item name.
    """
    for name, items in world.data["bins"].items():
        if item in items:
            return name
    raise ToolError(f"no item {item!r}")


@tool("read")
def list_bin(world: Inventory, bin: str) -> list[str]:
    """The items of a bin, in order.

    Args:
        bin: Bin name.
    """
    return list(_bin(world, bin))


@tool("write")
def move_item(world: Inventory, item: str, from_bin: str, to_bin: str) -> list[str]:
    """Move an item to the end of another bin.

    Args:
        item: Item name.
        from_bin: The bin it is in now.
        to_bin: The bin it goes to (it is appended last).
    """
    src, dst = _bin(world, from_bin), _bin(world, to_bin)
    if item not in src:
        raise ToolError(f"{item!r} is not in bin {from_bin!r}")
    if src is dst:
        raise ToolError(f"{item!r} is already in bin {to_bin!r}")
    src.remove(item)
    dst.append(item)
    world.data["moves"] += 1
    return list(dst)


@tool("read", name="submit")
def submit_done(world: Inventory, answer: str) -> str:
    """Say you are done (only the bins are checked).

    Args:
        answer: A short note.
    """
    return "submitted"


class ToyInventory(Family):
    """Move the listed items to one bin in order; only the final bins are verified (state only).

    Its state check has no hand-computed ``expected_hash``: synthesis replays the reference's
    writes. ``moves`` is outside the checked fields, so the route does not matter, the order does.
    """

    id = "inventory"
    env_name = "Inventory"
    version = 0
    summary = "toy family with a write tool and a state-only verifier (tests only)"

    def make_world(self, seed: int, difficulty: int) -> Inventory:
        rng = random.Random(seed)
        bins: dict[str, list[str]] = {b: [] for b in BINS}
        for item in rng.sample(ITEMS, len(ITEMS)):
            bins[rng.choice(BINS)].append(item)
        return Inventory({"bins": bins, "moves": 0})

    def load_world(self, data: dict[str, Any]) -> Inventory:
        return Inventory(data)

    def make_task(self, world: Inventory, difficulty: int, rng: random.Random) -> TaskDraft | None:
        to_bin = rng.choice(BINS)
        others = sorted(i for b, items in world.data["bins"].items() if b != to_bin for i in items)
        if len(others) < difficulty + 1:
            return None
        items = rng.sample(others, difficulty + 1)
        return TaskDraft(
            prompt=f"Move {', '.join(items)} to bin {to_bin}, in that order, then submit.",
            params={"items": items, "to_bin": to_bin},
            verifier_spec={"kind": "state", "fields": ["bins"]},
            tool_config={},
        )

    def tools(self, tool_config: dict[str, Any]) -> list:
        return [as_tool(f) for f in (find_item, list_bin, move_item, submit_done)]

    def reference(self, params: dict[str, Any], tool_config: dict[str, Any]):
        items, to_bin = params["items"], params["to_bin"]
        found = yield Step([("find_item", {"item": i}) for i in items], "Where is each item?")
        moves = [
            ("move_item", {"item": i, "from_bin": r["content"], "to_bin": to_bin})
            for i, r in zip(items, found, strict=True)
        ]
        yield Step(moves, "Moving them in the order asked.")
        return "done"

    def random_answer(self, world, task, rng):
        return rng.choice(["done", "moved", "ok"])

    def bluff_answer(self, task, rng):
        return "done"

    def perturb(self, world, task, answer, rng):
        return []  # the answer is not checked; perturbed *writes* are (tests/envs/test_replay.py)


if "inventory" not in FAMILIES:
    register_family("inventory", ToyInventory)


@pytest.fixture(scope="session")
def trip_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real trip dataset (all difficulties), synthesized once per session."""
    from toolgym.synth.config import SynthConfig
    from toolgym.synth.run import synthesize

    path = tmp_path_factory.mktemp("ds") / "trip.duckdb"
    synthesize(SynthConfig(family="trip", count=30, workers=1, seed=7), path)
    return path


@pytest.fixture(scope="session")
def ray_runtime() -> Any:
    """One local Ray runtime of 2 CPUs for the whole session (its start-up costs seconds); skips without Ray."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[dev,ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
