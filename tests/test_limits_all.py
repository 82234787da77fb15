"""Registry-wide: every family's prompt states the env's limits, and every family's reference
solution fits every limit with at least 25% to spare at every difficulty."""

import pytest

from toolgym.envs import limits as lim
from toolgym.envs import markup as mk
from toolgym.envs.sources import MemorySource
from toolgym.envs.toolenv import NAMES_RULE, EnvConfig, make_env
from toolgym.synth import FAMILIES, get_family
from toolgym.synth.candidate import synthesize_world
from toolgym.synth.config import SynthConfig

WORLDS = {"trip": 4, "code": 1}  # trip's call counts vary most between worlds; code makes <= 5 calls


def shipped(family_id, difficulty, worlds):
    config = SynthConfig(family=family_id, difficulty=(difficulty, difficulty), seed=21, tasks_per_world=2, workers=1)
    for w in range(worlds):
        result = synthesize_world(config, w)
        for out in result.outcomes:
            if out.task is not None:
                yield out, get_family(family_id).load_world(result.world.data)


@pytest.mark.parametrize("family_id", list(FAMILIES))
def test_every_prompt_states_every_limit_and_the_name_rule(family_id):
    out, world = next(shipped(family_id, 1, 4))  # the first world that ships a task
    custom = {
        "max_turns": 30,
        "max_tool_calls_per_turn": 20,
        "max_action_chars": 20_000,
        "max_observation_chars": 500_000,
    }
    for kwargs in ({}, custom):
        env = make_env(family_id, source=MemorySource([(out.task, world)]), **kwargs)
        obs, info = env.reset()
        c = env.config
        system = info["messages"][0]["content"]
        assert system in obs
        assert f"at most {c.max_turns:,} turns" in system
        assert f"at most {c.max_tool_calls_per_turn:,} tool calls per turn" in system
        assert f"at most {c.max_action_chars:,} characters per assistant message" in system
        assert f"at most {c.max_observation_chars:,} characters in all" in system
        assert f"when {lim.WARN_TURNS} or fewer remain the results say so" in system
        rule = get_family(family_id).names_rule  # the family's (the shared NAMES_RULE by default)
        assert rule in system and ("Unicode NFC normalization" in rule)
        assert (rule == NAMES_RULE) == (family_id != "search")  # search states its alias check
        env.close()


# Default tier: d1 and d5 of every family (a reference's turns, calls and text grow with the
# difficulty, so d5 is the binding case); d2-d4 run in the slow tier.
CASES = [pytest.param(f, d, marks=() if d in (1, 5) else pytest.mark.slow) for f in FAMILIES for d in range(1, 6)]


@pytest.mark.parametrize(("family_id", "difficulty"), CASES)
def test_every_reference_fits_every_limit_with_margin(family_id, difficulty):
    c = EnvConfig(family=family_id)
    room = 1 - lim.REFERENCE_MARGIN
    n = 0
    for out, _ in shipped(family_id, difficulty, WORLDS.get(family_id, 2)):
        tr = out.trajectory
        n += 1
        assert tr.turns <= room * c.max_turns, (out.task.task_id, tr.turns)
        assert max(len(mk.parse_action(a).tool_calls) for a in tr.actions) <= room * c.max_tool_calls_per_turn
        assert max(map(len, tr.actions)) <= room * c.max_action_chars
        assert max(map(len, tr.observations)) <= room * c.max_observation_chars
        assert not any('"name":null' in o for o in tr.observations[1:])  # no error, no turns-left notice
    assert n > 0
