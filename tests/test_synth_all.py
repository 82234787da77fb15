"""Registry-wide: for every family, several seeds and difficulties, every shipped task has a
reference that scores 1 and gates (null, random, bluff, perturbed) that all score 0."""

import random

import pytest

from toolgym.envs.agents import NullAgent, RandomAgent, SubmitAgent
from toolgym.envs.rollout import ProgramPolicy, run_episode
from toolgym.envs.sources import MemorySource
from toolgym.envs.toolenv import make_env
from toolgym.synth import FAMILIES, get_family
from toolgym.synth.candidate import synthesize_world
from toolgym.synth.config import SynthConfig

# Default tier: two representatives per family, the easiest and the hardest difficulty (one world
# each), so every family's reference and gates run on every commit; the other four cases of each
# family (d3, and the second world of d1 and d5) are the slow tier. The same machinery (synthesize,
# then replay reference and gates) is what every case exercises; the family's own test file covers
# each of its task kinds' gates per difficulty (e.g. tests/synth/test_code.py).
FAST = {(1, 0), (5, 1)}
CASES = [
    pytest.param(f, d, w, marks=() if (d, w) in FAST else pytest.mark.slow)
    for f in FAMILIES
    for d in (1, 3, 5)
    for w in (0, 1)
]


@pytest.mark.parametrize(("family_id", "difficulty", "w"), CASES)
def test_reference_scores_one_and_every_gate_zero(family_id, difficulty, w):
    fam = get_family(family_id)
    config = SynthConfig(family=family_id, difficulty=(difficulty, difficulty), seed=5, tasks_per_world=3, workers=1)
    result = synthesize_world(config, w)  # raises ReferenceSolutionError if a reference fails
    shipped = [o for o in result.outcomes if o.status == "shipped"]
    assert shipped, [(o.status, o.reason) for o in result.outcomes]
    world = fam.load_world(result.world.data)
    for out in shipped:
        task = out.task
        env = make_env(family_id, source=MemorySource([(task, world)]))
        ref = ProgramPolicy(fam.reference(task.params, task.tool_config))
        assert run_episode(env, ref).reward == 1.0
        rng = random.Random(w)
        assert run_episode(env, NullAgent()).reward == 0.0
        chance = fam.random_pass(world, task)  # exact where the family knows it: then no sampling luck
        if chance is not None:
            assert chance <= config.random_pass_max[difficulty - 1]
        for _ in range(4):
            if chance is None:
                assert run_episode(env, RandomAgent(rng, fam.random_answer(world, task, rng))).reward == 0.0
            assert run_episode(env, SubmitAgent(fam.bluff_answer(task, rng))).reward == 0.0
        for broken in fam.perturb(world, task, ref.answer, rng):
            assert run_episode(env, SubmitAgent(broken)).reward == 0.0
        assert out.trajectory.reward == 1.0 and out.trajectory.tool_calls > 0


@pytest.mark.parametrize("family_id", list(FAMILIES))
def test_worlds_and_tasks_are_pure_functions_of_the_seed(family_id):
    config = SynthConfig(family=family_id, difficulty=(2, 2), seed=9, tasks_per_world=2, workers=1)
    a, b = synthesize_world(config, 3), synthesize_world(config, 3)
    assert a.world == b.world
    assert [(o.status, o.task) for o in a.outcomes] == [(o.status, o.task) for o in b.outcomes]
    assert synthesize_world(config.model_copy(update={"seed": 10}), 3).world.data != a.world.data
