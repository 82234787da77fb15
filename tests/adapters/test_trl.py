"""The TRL adapter: per-task environment classes, checked against TRL's own tool-schema reader, and a GRPO smoke run."""

from __future__ import annotations

import inspect
from typing import Any, Literal

import pytest

from toolgym.envs import markup as mk

pytest.importorskip("trl", reason="the TRL adapter needs the `trl` extra: pip install 'toolgym[trl]'")
transformers_utils = pytest.importorskip("transformers.utils", reason="the TRL adapter needs transformers")

from toolgym.adapters.episode import load_tasks  # noqa: E402
from toolgym.adapters.trl import annotation_of, environment_class, trl_environments  # noqa: E402

from .conftest import reference_calls  # noqa: E402


def tool_methods(cls: type) -> list[str]:
    """The methods TRL exposes as tools (its own rule: public functions of the class but reset/get_reward)."""
    found = inspect.getmembers(cls, predicate=inspect.isfunction)
    return sorted(m for m, _ in found if not m.startswith("_") and m not in ("reset", "get_reward"))


def test_the_class_exposes_the_tasks_tools_with_their_schemas(search_task):
    task, world = search_task
    cls = environment_class(task, world)
    env = cls()
    assert tool_methods(cls) == sorted(t["function"]["name"] for t in task.tools)
    for t in task.tools:
        schema = transformers_utils.get_json_schema(getattr(env, t["function"]["name"]))["function"]
        ours = t["function"]["parameters"]
        assert schema["name"] == t["function"]["name"]
        assert schema["description"] == t["function"]["description"]
        assert set(schema["parameters"]["properties"]) == set(ours["properties"])
        assert set(schema["parameters"].get("required", [])) == set(ours.get("required", []))


def test_the_reference_solution_earns_the_verifiers_reward(search_task):
    task, world = search_task
    env = environment_class(task, world)()
    prompt = env.reset()
    assert task.prompt in prompt and "submit" in prompt
    answer = reference_calls(task, lambda name, args: getattr(env, name)(**args))
    assert env.get_reward() == 0.0  # nothing submitted yet
    assert mk.loads(env.submit(answer=answer)) == {"name": "submit", "content": "submitted; the episode is over"}
    assert env.get_reward() == 1.0 and env.verdict["passed"]
    # TRL pools instances: a reset starts a fresh episode
    env.reset()
    assert env.get_reward() == 0.0 and env.verdict is None


def test_a_wrong_answer_scores_zero_and_bad_calls_are_error_results(search_task):
    task, world = search_task
    env = environment_class(task, world)()
    env.reset()
    missing = mk.loads(env.search())
    assert missing == {"name": "search", "error": "invalid arguments for search: query: Field required"}
    unknown = mk.loads(env.search(query="x", bogus=1))
    assert "unknown argument" in unknown["error"]
    typed = mk.loads(env.submit(answer={"not": "a string"}))
    assert "invalid arguments for submit" in typed["error"]
    assert env.get_reward() == 0.0  # a refused submit does not end the episode
    assert mk.loads(env._episode.call("submit", "{not json"))["error"].startswith("arguments are not valid JSON")
    assert mk.loads(env._episode.call("no_such_tool", {}))["error"].startswith("unknown tool 'no_such_tool'")
    env.submit(answer="Certainly not the answer")
    assert env.get_reward() == 0.0 and env.verdict is not None and not env.verdict["passed"]
    after = mk.loads(env.search(query="x"))
    assert "episode is over" in after["error"]


def test_annotations_round_trip_through_transformers():
    cases: list[tuple[dict[str, Any], Any]] = [
        ({"type": "string"}, str),
        ({"type": "integer"}, int),
        ({"type": "array", "items": {"type": "number"}}, list[float]),
        ({"enum": ["a", "b"]}, Literal["a", "b"]),
        ({"anyOf": [{"type": "string"}, {"type": "null"}]}, str | None),
        ({"type": "object", "properties": {"x": {"type": "integer"}}}, dict),
        ({}, Any),
    ]
    for schema, expected in cases:
        assert annotation_of(schema) == expected, schema


def test_trl_environments_pairs_rows_with_classes(search_task):
    envs, rows = trl_environments("search", n=1, split="train", difficulty=1, seed=0)
    assert [r["environment"] for r in rows] == list(envs) == [search_task[0].task_id]
    assert rows[0]["prompt"] == [{"role": "user", "content": ""}]


def test_pooled_instances_of_a_writing_task_never_share_state():
    # TRL pools several instances per class and resets them between rollouts: each episode needs its own world
    [(task, world)] = load_tasks("ledger", 1, split=None, difficulty=1, seed=0)
    cls = environment_class(task, world)
    a, b = cls(), cls()
    a.reset(), b.reset()
    start = mk.loads(b.get_balance())["content"]
    for amount in task.params["amounts"]:
        a.deposit(amount=amount)
    assert mk.loads(b.get_balance())["content"] == start == world.data["balance"]
    a.submit(answer=start + sum(task.params["amounts"]))
    assert a.get_reward() == 1.0
    b.submit(answer=start + sum(task.params["amounts"]))  # the right number, but nothing deposited: state check fails
    assert b.get_reward() < 1.0
    a.reset()
    assert mk.loads(a.get_balance())["content"] == start and a.get_reward() == 0.0
