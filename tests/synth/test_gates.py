"""Gate agents speak valid markup, and the gates drop tasks a lenient verifier would ship."""

import random

from toolgym.envs import markup as mk
from toolgym.envs.agents import NullAgent, RandomAgent, SubmitAgent, sample_value
from toolgym.envs.rollout import ProgramPolicy, run_episode
from toolgym.envs.sources import MemorySource
from toolgym.envs.toolenv import make_env
from toolgym.envs.tools import Toolset
from toolgym.synth import get_family
from toolgym.synth.candidate import build_task
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
