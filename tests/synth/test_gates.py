"""Gate agents speak valid markup, and the gates drop tasks a lenient verifier would ship."""

import random
from typing import Literal

import pytest

from toolgym.envs import markup as mk
from toolgym.envs.agents import NullAgent, RandomAgent, SubmitAgent, VandalAgent, sample_value
from toolgym.envs.rollout import ProgramPolicy, Step, run_episode
from toolgym.envs.sources import MemorySource
from toolgym.envs.toolenv import make_env
from toolgym.envs.tools import ToolError, Toolset, as_tool, tool
from toolgym.spec import TaskDraft
from toolgym.synth import get_family, register_family, unregister_family
from toolgym.synth.candidate import build_task, checks_whole_state, evaluate_candidate
from toolgym.synth.config import SynthConfig
from toolgym.synth.family import Family
from toolgym.synth.gates import run_gates


def trip_task(seed=1, difficulty=2):
    fam = get_family("trip")
    world = fam.make_world(seed, difficulty)
    task = build_task(fam, "w", "t", difficulty, "train", fam.make_task(world, difficulty, random.Random(seed)))
    return fam, world, task


def test_random_arguments_are_schema_valid():
    fam, world, task = trip_task()
    ts = Toolset(fam.tools(task.tool_config))
    rng = random.Random(0)
    pool = ["x", world.cities[0]]
    for t in ts.tools.values():
        for _ in range(30):
            args = sample_value(t.schema["function"]["parameters"], rng, pool)
            assert not isinstance(ts.validate(t.name, args), str), (t.name, args)


def test_gate_agents_produce_parseable_actions():
    fam, world, task = trip_task()
    env = make_env("trip", source=MemorySource([(task, world)]))
    for agent in (NullAgent(), RandomAgent(random.Random(1), None), SubmitAgent([])):
        obs, info = env.reset()
        for _ in range(5):
            action = agent.act(obs, info)
            parsed = mk.parse_action(action)
            assert not parsed.errors or action == mk.END, action
            obs, r, term, trunc, info = env.step(action)
            if term or trunc:
                break


def test_gates_drop_a_task_whose_verifier_is_lenient():
    fam, world, task = trip_task()
    env_ok = make_env("trip", source=MemorySource([(task, world)]))
    agent = ProgramPolicy(fam.reference(task.params, task.tool_config))
    ref = run_episode(env_ok, agent)
    rng = random.Random(0)
    kwargs = dict(
        random_answers=[fam.random_answer(world, task, rng) for _ in range(4)],
        bluff_answers=[fam.bluff_answer(task, rng)],
        perturbed_answers=fam.perturb(world, task, agent.answer, rng),
        rng=rng,
    )
    report = run_gates(lambda a: run_episode(env_ok, a), ref, **kwargs)
    assert report.shipped and report.scores["null"] == [0.0] and report.scores["perturbed"] == [0.0] * 6

    # The same task with a verifier that only checks the structure: every plausible plan passes.
    lenient = task.model_copy(
        update={
            "verifier_spec": {
                "kind": "itinerary",
                "constraints": [
                    c for c in task.params["constraints"] if c["kind"] in ("days", "start_city", "in_city")
                ],
            }
        }
    )
    env_bad = make_env("trip", source=MemorySource([(lenient, world)]))
    ref_bad = run_episode(env_bad, ProgramPolicy(fam.reference(task.params, task.tool_config)))
    report = run_gates(lambda a: run_episode(env_bad, a), ref_bad, **{**kwargs, "perturbed_answers": []})
    assert report.failed == "random"

    # A verifier that accepts an empty answer is caught by the null agent.
    empty_ok = task.model_copy(update={"verifier_spec": {"kind": "json", "expected": []}})
    env_empty = make_env("trip", source=MemorySource([(empty_ok, world)]))
    fake_ref = run_episode(env_empty, SubmitAgent([]))
    report = run_gates(lambda a: run_episode(env_empty, a), fake_ref, **kwargs)
    assert report.failed == "null"


def test_failed_reference_is_reported_with_its_reason():
    fam, world, task = trip_task()
    env = make_env("trip", source=MemorySource([(task, world)]))
    bad = run_episode(env, SubmitAgent([]))
    report = run_gates(lambda a: run_episode(env, a), bad, [], [], [], random.Random(0))
    assert report.failed == "reference" and "non-empty list" in report.reason


# --------------------------------------------------------------------------- the vandal gate


class Counters:
    """Two counters; a task asks to raise one of them."""

    def __init__(self, data):
        self.data = data

    def to_json(self):
        return self.data


@tool("read")
def get_counter(world: Counters, name: Literal["a", "b"]) -> int:
    """A counter's value.

    Args:
        name: Which counter.
    """
    return world.data[name]


@tool("write")
def add_to_counter(world: Counters, name: Literal["a", "b"], by: int) -> int:
    """Add to a counter.

    Args:
        name: Which counter.
        by: How much (1 to 9).
    """
    if not 1 <= by <= 9:
        raise ToolError("by must be 1 to 9")
    world.data[name] += by
    return world.data[name]


@tool("read", name="submit")
def submit_counters(world: Counters, answer: str) -> str:
    """Say you are done.

    Args:
        answer: A short note.
    """
    return "submitted"


class ToyCounters(Family):
    """Raise counter a by 2; the state check looks at ``fields`` (a class attribute the tests set)."""

    id = "counters"
    env_name = "Counters"
    version = 0
    summary = "toy family for the vandal gate (tests only)"
    fields: list[str] | None = None

    def make_world(self, seed, difficulty):
        return Counters({"a": seed % 5, "b": 0})

    def load_world(self, data):
        return Counters(data)

    def make_task(self, world, difficulty, rng):
        spec = {"kind": "state"} if self.fields is None else {"kind": "state", "fields": self.fields}
        return TaskDraft(prompt="Add 2 to counter a, then submit.", params={}, verifier_spec=spec, tool_config={})

    def tools(self, tool_config):
        return [as_tool(f) for f in (get_counter, add_to_counter, submit_counters)]

    def reference(self, params, tool_config):
        yield Step([("add_to_counter", {"name": "a", "by": 2})], "Raise a.")
        return "done"

    def random_answer(self, world, task, rng):
        return "done"

    def bluff_answer(self, task, rng):
        return "done"

    def perturb(self, world, task, answer, rng):
        return []


@pytest.fixture
def counters():
    register_family("counters", ToyCounters)
    try:
        yield get_family("counters")
    finally:
        unregister_family("counters")


@pytest.mark.parametrize(("fields", "status"), [(None, "shipped"), (["a"], "vandal")])
def test_the_vandal_gate_drops_a_task_whose_state_check_misses_collateral_writes(counters, fields, status):
    """A check on counter a alone lets a vandal's write to b score 1: that task must not ship."""
    ToyCounters.fields = fields
    try:
        config = SynthConfig(family="counters", vandal_tries=6, random_tries=0, bluff_tries=0)
        world = counters.make_world(3, 1)
        task = build_task(counters, "w", "t", 1, "train", counters.make_task(world, 1, random.Random(0)))
        outcome = evaluate_candidate(counters, task, world, random.Random(0), config)
    finally:
        ToyCounters.fields = None
    assert outcome.status == status, outcome.reason


def test_a_vandal_replays_the_reference_then_writes_at_random_then_submits_its_answer(counters):
    world = counters.make_world(3, 1)
    task = build_task(counters, "w", "t", 1, "train", counters.make_task(world, 1, random.Random(0)))
    replay = [mk.render_action([("add_to_counter", {"name": "a", "by": 2})])]
    agent = VandalAgent(random.Random(4), "done", replay, ["add_to_counter"])
    env = make_env("counters", source=MemorySource([(task, world)]))
    obs, info = env.reset()
    actions = []
    while True:
        actions.append(agent.act(obs, info))
        obs, _, term, trunc, info = env.step(actions[-1])
        if term or trunc:
            break
    calls = [[c.name for c in mk.parse_action(a).tool_calls] for a in actions]
    assert actions[0] == replay[0] and calls[-1] == ["submit"]
    assert {"get_counter"} >= set(calls[1]) and {"add_to_counter"} >= set(calls[2])
    assert mk.parse_action(actions[-1]).tool_calls[0].arguments == {"answer": "done"}


def test_random_integers_respect_float_bounds():
    """A JSON schema may bound an integer with floats (1.0, 9.5): samples are integers inside them."""
    rng = random.Random(0)
    values = {sample_value({"type": "integer", "minimum": 1.0, "maximum": 9.5}, rng, []) for _ in range(200)}
    assert values == set(range(1, 10)) and all(type(v) is int for v in values)


def test_a_pass_implies_the_whole_state_only_for_state_checks_without_fields():
    """The vandal gate skips its replay only where a passing verdict already proves no damage."""
    answer = {"kind": "exact", "expected": 1}
    assert checks_whole_state({"kind": "state"})
    assert checks_whole_state({"kind": "all", "checks": [answer, {"kind": "state"}]})
    assert not checks_whole_state({"kind": "state", "fields": ["a"]})
    assert not checks_whole_state({"kind": "all", "checks": [answer, {"kind": "state", "fields": ["a"]}]})
    assert not checks_whole_state(answer)
