"""Registry-wide: answer types are strict in every family's submit schema and in every verifier.

For every family, difficulty and answer shape (the shipped reference answers of a few worlds),
each variant that puts a value of the wrong JSON type in one place of the reference answer
(a boolean for a number or a string, a number for a boolean or a string, a string for a number)
is refused by the ``submit`` schema *and* scores 0 when the verifier is called directly (a
verifier made only of state checks does not consult the answer, so there the schema alone refuses).
"""

import random
from typing import Any

import pytest

from toolgym.envs import markup as mk
from toolgym.envs.replay import replay_writes
from toolgym.envs.sources import MemorySource
from toolgym.envs.toolenv import make_env
from toolgym.envs.tools import Toolset
from toolgym.synth import FAMILIES, get_family
from toolgym.synth.candidate import build_task, synthesize_world
from toolgym.synth.code import tasks as code_tasks
from toolgym.synth.code import tools as code_tools
from toolgym.synth.config import SynthConfig
from toolgym.verifiers.verdict import verify


def leaves(value: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    """Every scalar of a JSON value with its path."""
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in leaves(v, (*path, k))]
    if isinstance(value, list):
        return [x for i, v in enumerate(value) for x in leaves(v, (*path, i))]
    return [(path, value)]


def replace(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: replace(value[head], rest, new)}
    return [replace(v, rest, new) if i == head else v for i, v in enumerate(value)]


def wrong_types(value: Any) -> list[Any]:
    """Variants of ``value`` with one scalar replaced by a value of another JSON type."""
    out = []
    for path, leaf in leaves(value)[:24]:
        if isinstance(leaf, bool):
            subs = [int(leaf), float(leaf), str(leaf).lower()]
        elif isinstance(leaf, int | float):
            subs = [True, False, str(leaf)]  # the kind: a boolean is never a number
            if isinstance(leaf, int) and not isinstance(leaf, bool):
                subs.append(float(leaf) + 0.5)
        elif isinstance(leaf, str):
            subs = [True, 1]
        else:
            continue
        out += [replace(value, path, s) for s in subs]
    return out


def shipped_tasks(family_id: str):
    fam = get_family(family_id)
    for difficulty in (1, 2, 3, 4, 5):
        config = SynthConfig(family=family_id, difficulty=(difficulty, difficulty), seed=3, tasks_per_world=2)
        result = synthesize_world(config.model_copy(update={"workers": 1}), 0)
        world = fam.load_world(result.world.data)
        for out in result.outcomes:
            if out.status == "shipped":
                yield fam, world, out.task, out.trajectory.actions, out.trajectory.answer
    if family_id == "code":  # the rarer record shapes, with the answer the reference submits (the expected one)
        for shape in ("name_count", "group_value", "string"):
            for seed in range(80):
                world = fam.make_world(3000 + seed, 4)
                draft = code_tasks.make_task(world, 4, random.Random(seed), only=["simulate", "argmax"])
                if draft is not None and draft.tool_config["answer"] == shape:
                    task = build_task(fam, "w", "t", 4, "train", draft)
                    yield fam, world, task, [], task.verifier_spec["expected"]
                    break


def final_context(fam, world, task, actions):
    """A fresh episode context with the reference's write calls replayed on it (the synthesis replay)."""
    return replay_writes(fam, world, task, actions)


def checks_answer(spec: dict[str, Any]) -> bool:
    """Whether a verifier spec consults the answer (anything but state checks)."""
    if spec["kind"] == "all":
        return any(checks_answer(sub) for sub in spec["checks"])
    return spec["kind"] != "state"


@pytest.mark.parametrize("family_id", list(FAMILIES))
def test_a_value_of_the_wrong_type_is_refused_by_the_schema_and_scores_zero(family_id):
    shapes = set()
    for fam, world, task, actions, answer in shipped_tasks(family_id):
        ts = Toolset(fam.tools(task.tool_config))
        ctx = final_context(fam, world, task, actions)
        try:
            assert not isinstance(ts.validate("submit", {"answer": answer}), str)
            assert verify(task.verifier_spec, answer, ctx).passed  # the test can fail: the original passes
            variants = wrong_types(answer)
            assert variants, answer
            for bad in variants:
                checked = ts.validate("submit", {"answer": bad})
                assert isinstance(checked, str) and "invalid arguments for submit" in checked, bad
                assert verify(task.verifier_spec, bad, ctx).score == (
                    0.0 if checks_answer(task.verifier_spec) else 1.0
                ), bad
        finally:
            fam.close_context(ctx)
        shapes.add(task.tool_config.get("answer", "plan"))
    if family_id == "code":  # every typed submit of the family is exercised
        assert shapes == set(code_tools.SUBMITS), shapes
    assert shapes


@pytest.mark.parametrize(("expected", "wrong"), [(1, True), (0, False)])
def test_a_boolean_never_scores_on_an_integer_task(expected, wrong):
    """The issue's input: ``submit(true)`` where the answer is 1 (``false`` where it is 0)."""
    fam = get_family("code")
    for seed in range(40):
        world = fam.make_world(2000 + seed, 1)
        draft = code_tasks.make_task(world, 1, random.Random(seed), only=["count", "numbers"])
        if draft is not None and draft.params["answer"] == "integer":
            break
    draft.verifier_spec = code_tasks.verifier_spec("integer", expected)
    task = build_task(fam, "w", "t", 1, "train", draft)
    env = make_env("code", source=MemorySource([(task, world)]))
    env.reset(options={"task_id": "t"})
    obs, reward, term, _, _ = env.step(mk.render_action([("submit", {"answer": wrong})]))
    assert (reward, term) == (0.0, False) and "a boolean is not a number" in obs
    assert verify(task.verifier_spec, wrong).score == 0.0
    obs, reward, term, _, _ = env.step(mk.render_action([("submit", {"answer": expected})]))
    assert (reward, term) == (1.0, True)


def test_an_integer_past_64_bits_is_out_of_range_not_a_decimal():
    """orjson reads 10**30 as a float; the policy wrote no decimal point, so say what is wrong."""
    import gymnasium as gym

    import toolgym  # noqa: F401

    env = gym.make("toolgym/TripPlanning-v1", difficulty=1)
    env.reset(seed=0)
    obs, *_ = env.step(
        '<tool_call>{"name":"get_all_cities","arguments":{"page":1000000000000000000000000000000}}</tool_call>'
    )
    assert "out of range" in obs and "decimal point" not in obs
