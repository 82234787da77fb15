"""Fixtures of the adapter tests: one small on-the-fly task, and its reference program driven through any caller."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import toolgym
from toolgym.adapters.episode import load_tasks
from toolgym.envs import markup as mk
from toolgym.envs.rollout import Final
from toolgym.spec import TaskSpec


@pytest.fixture(scope="session")
def search_task() -> tuple[TaskSpec, Any]:
    """A search task of difficulty 1 (the cheapest family to synthesize: ~1 s)."""
    [(task, world)] = load_tasks("search", 1, split="train", difficulty=1, seed=0)
    return task, world


def reference_calls(task: TaskSpec, call: Callable[[str, dict[str, Any]], str]) -> Any:
    """Run the task's reference program, each call through ``call(name, arguments) -> payload``; returns its answer."""
    program = toolgym.family(task.family).reference(task.params, task.tool_config)
    step = next(program)
    try:
        while True:
            results = [mk.loads(call(name, args)) for name, args in step.calls]
            assert all("error" not in r for r in results), results
            step = program.send(results)
    except StopIteration as stop:
        return stop.value.answer if isinstance(stop.value, Final) else stop.value


def readme_snippet(index: int, replacements: dict[str, str]) -> str:
    """Python block ``index`` of the README's trainers section, with each replacement made exactly once."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("## In the trainers you already use", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n")[1 + index].split("```", 1)[0]
    for old, new in replacements.items():
        assert code.count(old) == 1, f"the README snippet no longer holds {old!r}"
        code = code.replace(old, new)
    return code
