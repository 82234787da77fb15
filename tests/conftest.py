"""Shared fixtures: a toy family with mutable state, and small real datasets."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest

from toolgym.envs.rollout import Step
from toolgym.envs.strict import Integer
from toolgym.envs.tools import as_tool, tool
from toolgym.spec import TaskDraft, TaskSpec
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
        from toolgym.envs.tools import ToolError

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
            verifier=verifier,
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

    def episode_context(self, world: Ledger, task: TaskSpec) -> Ledger:
        return Ledger(copy.deepcopy(world.data))  # episodes never share mutable state

    def random_answer(self, world, task, rng):
        return rng.randrange(1000)

    def bluff_answer(self, task, rng):
        return sum(task.params["amounts"])  # ignores the starting balance it never looked up

    def perturb(self, world, task, answer, rng):
        return [answer + 1, answer - 1]


if "ledger" not in FAMILIES:
    register_family("ledger", ToyLedger)


@pytest.fixture(scope="session")
def trip_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real trip dataset (all difficulties), synthesized once per session."""
    from toolgym.synth.config import SynthConfig
    from toolgym.synth.run import synthesize

    path = tmp_path_factory.mktemp("ds") / "trip.duckdb"
    synthesize(SynthConfig(family="trip", count=30, workers=1, seed=7), path)
    return path
