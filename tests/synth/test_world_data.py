"""A world is data: what synthesis refuses in a world before and after its candidates.

* ``world.to_json()`` must be JSON that round-trips exactly (no set, object, non-string key,
  NaN or infinity): refused with the family and the value named, at synthesis, in
  :func:`toolgym.envs.runtime.fresh_world` and in the dataset write.
* A world must not change while its candidates run: the episodes of a read-only toolset share
  it, so a mutating tool marked read leaks state between episodes.
"""

from __future__ import annotations

import datetime
import math
import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.data.dataset import Batch, Dataset
from toolgym.envs.runtime import fresh_world
from toolgym.envs.tools import as_tool, tool
from toolgym.errors import ReferenceSolutionError, WorldDataError
from toolgym.spec import WorldSpec, check_world_data, dump_world_data, world_data_problem
from toolgym.synth import get_family, register_family, unregister_family
from toolgym.synth.candidate import synthesize_on_the_fly, synthesize_world
from toolgym.synth.config import SynthConfig

ToyLedger = type(get_family("ledger"))
Ledger = type(ToyLedger().make_world(0, 1))


@tool("read")  # mislabelled: it writes
def deposit(world: Any, amount: int) -> int:
    """Add money.

    Args:
        amount: How much to add (positive).
    """
    world.data["balance"] += amount
    world.data["log"].append(amount)
    return world.data["balance"]


class MislabelledLedger(ToyLedger):  # type: ignore[misc, valid-type]
    """The ledger with its write tool marked read; its state check fails from the 2nd episode on."""

    id = "mislabelled"
    env_name = "MislabelledLedger"

    def tools(self, tool_config: dict[str, Any]) -> list:
        return [*ToyLedger.tools(self, tool_config)[::2], as_tool(deposit)]


class SilentMislabelledLedger(MislabelledLedger):
    """The same with only the answer checked: every gate passes, the leak is silent."""

    id = "silentmislabelled"
    env_name = "SilentMislabelledLedger"

    def make_task(self, world: Any, difficulty: int, rng: random.Random) -> Any:
        draft = super().make_task(world, difficulty, rng)
        return draft.model_copy(update={"verifier_spec": draft.verifier_spec["checks"][1]})


class TaskMutatesLedger(ToyLedger):  # type: ignore[misc, valid-type]
    """Correct tool marks, but make_task writes into the world it is given."""

    id = "taskmutates"
    env_name = "TaskMutatesLedger"

    def make_task(self, world: Any, difficulty: int, rng: random.Random) -> Any:
        draft = super().make_task(world, difficulty, rng)
        world.data["log"].append(0)
        return draft


class BadJsonLedger(ToyLedger):  # type: ignore[misc, valid-type]
    """A ledger whose world data holds ``BAD`` (set per test) under ``"extra"``."""

    id = "badjson"
    env_name = "BadJsonLedger"
    bad: Any = None

    def make_world(self, seed: int, difficulty: int) -> Any:
        world = super().make_world(seed, difficulty)
        world.data["extra"] = self.bad
        return world


def _config(family: str) -> SynthConfig:
    return SynthConfig(family=family, count=8, difficulty=(1, 1), workers=1, executor="serial")


def _registered(cls: Any) -> str:
    register_family(cls.id, cls)
    return str(cls.id)


@pytest.mark.parametrize("cls", [MislabelledLedger, SilentMislabelledLedger])
def test_a_mutating_tool_marked_read_is_refused_at_synthesis(cls):
    name = _registered(cls)
    try:
        for run in (lambda: synthesize_world(_config(name), 0), lambda: synthesize_on_the_fly(get_family(name), 0, 1)):
            with pytest.raises(ReferenceSolutionError) as err:
                run()
            assert f"family {name!r}" in str(err.value)
            assert 'a tool marked read changed the world; mark it @tool("write")' in str(err.value)
    finally:
        unregister_family(name)


def test_a_world_changed_outside_the_tools_is_refused_with_its_own_reason():
    name = _registered(TaskMutatesLedger)
    try:
        with pytest.raises(ReferenceSolutionError, match="'taskmutates'.*make_task.*must not modify the world"):
            synthesize_world(_config(name), 0)
    finally:
        unregister_family(name)


def test_a_correct_family_keeps_its_world_and_ships():
    res = synthesize_world(_config("ledger"), 0)
    assert any(out.status == "shipped" for out in res.outcomes)


class Opaque:
    pass


BAD_VALUES = [  # (value, what the message names)
    ({"x", "y"}, "a set"),
    (Opaque(), "tests.synth.test_world_data.Opaque"),
    (float("nan"), "nan; JSON has no NaN or infinity"),
    ([1.0, float("-inf")], "-inf; JSON has no NaN or infinity"),
    ({1: "a"}, "key 1 is an int"),
    (datetime.date(2024, 1, 1), "a datetime.date"),
    (2**64, "does not fit in 64 bits"),
]


@pytest.mark.parametrize(("bad", "named"), BAD_VALUES)
def test_world_data_that_is_not_json_is_refused_at_synthesis(bad, named):
    BadJsonLedger.bad = bad
    name = _registered(BadJsonLedger)
    try:
        with pytest.raises(WorldDataError, match="family 'badjson'") as err:
            synthesize_world(_config(name), 0)
        assert "data['extra']" in str(err.value) and named in str(err.value)
        assert isinstance(err.value, TypeError)  # what the encoder raised before, so callers keep working
    finally:
        unregister_family(name)


ENCODER_REFUSES = [b for b in BAD_VALUES if not isinstance(b[0], float | list | datetime.date)]  # orjson writes these


@pytest.mark.parametrize(("bad", "named"), ENCODER_REFUSES)
def test_fresh_world_and_the_dataset_write_name_the_family_and_the_value(bad, named, tmp_path):
    world = Ledger({"balance": 1, "log": [], "extra": bad})
    with pytest.raises(WorldDataError, match=f"family 'ledger'.*data\\['extra'\\].*{named[:8]}"):
        fresh_world(get_family("ledger"), world)
    spec = WorldSpec(
        world_id="w", family="ledger", family_version=0, seed=0, difficulty=1, split="train", data=world.data
    )
    with Dataset(tmp_path / "d.duckdb", create=True) as ds, pytest.raises(WorldDataError, match="family 'ledger'"):
        ds.write_batch(Batch(worlds=[spec]))


# Property: check_world_data accepts exactly the data world_data_problem finds nothing in, and then
# returns an equal, independent copy; any one bad leaf anywhere is refused, named by its path.
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)
_bad_leaf = st.sampled_from([{1, 2}, float("nan"), math.inf, Opaque(), b"bytes", datetime.time(1)])


def _insert(data: Any, bad: Any, path: list[int]) -> tuple[Any, bool]:
    """``data`` with ``bad`` put under some container along ``path``; whether it was placed."""
    if isinstance(data, dict) and data:
        keys = sorted(data)
        key = keys[path[0] % len(keys)] if path else keys[0]
        new, placed = _insert(data[key], bad, path[1:])
        return {**data, key: new}, placed
    if isinstance(data, list) and data:
        i = path[0] % len(data) if path else 0
        new, placed = _insert(data[i], bad, path[1:])
        return [*data[:i], new, *data[i + 1 :]], placed
    if isinstance(data, dict | list):
        return ({"bad": bad} if isinstance(data, dict) else [bad]), True
    return data, False


@settings(max_examples=300, deadline=None)
@given(data=st.dictionaries(st.text(max_size=4), _json, max_size=4))
def test_json_world_data_is_accepted_and_copied(data):
    assert world_data_problem(data) is None
    copy = check_world_data("fam", data)
    assert copy == data and orjson.loads(dump_world_data("fam", data)) == data
    if data:
        assert all(copy[k] is not data[k] for k in data if isinstance(data[k], dict | list))


@settings(max_examples=300, deadline=None)
@given(
    data=st.dictionaries(st.text(max_size=4), _json, min_size=1, max_size=4),
    bad=_bad_leaf,
    path=st.lists(st.integers(0, 10), max_size=6),
    as_key=st.booleans(),
)
def test_any_bad_leaf_is_refused_with_its_path(data, bad, path, as_key):
    if as_key:  # a non-string key instead of a bad value
        data, placed = _insert(data, {"ok": 1}, path)
        data = {**data, 7: "seven"}
    else:
        data, placed = _insert(data, bad, path)
        data = data if placed else {**data, "bad": bad}
    problem = world_data_problem(data)
    assert problem is not None and problem.startswith("data")
    with pytest.raises(WorldDataError, match="family 'fam'") as err:
        check_world_data("fam", data)
    assert problem in str(err.value)
