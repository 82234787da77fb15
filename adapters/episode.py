"""One task's tools, called directly: the episode core the trainer adapters share (layer L6).

A :class:`~toolgym.envs.toolenv.ToolEnv` reads text actions in toolgym's markup. A trainer with
its own chat template and tool-call parser (TRL, verifiers) instead calls tools by name with JSON
arguments, so the adapters skip the markup and drive the same parts the env drives, in the same
way: the task's :class:`~toolgym.envs.tools.Toolset` (pydantic validation, ``ToolError`` and tool
bugs become error results), an isolated context per episode
(:func:`~toolgym.envs.runtime.open_context`), and ``submit`` scored by the task's verifier on the
final state (:func:`~toolgym.verifiers.verdict.verify`). Each result is the JSON payload the env
puts inside ``<|tool|>…<|end|>`` (``{"name", "content"}`` or ``{"name", "error"}``), so a policy
sees the same result text under every adapter.

Decisions: the env's per-turn limits (calls per turn, action length) belong to its text
protocol and do not apply here (the trainer bounds turns and tokens itself); a call after a
valid ``submit`` is an error result, as in the env; each result is cut to
``max_result_chars`` with the env's ``[cut: …]`` marker.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

import toolgym
from toolgym.envs import limits as lim
from toolgym.envs import markup as mk
from toolgym.envs.runtime import Runtime, final_state, open_context
from toolgym.envs.sources import TaskSource, make_source
from toolgym.envs.toolenv import NAMES_RULE, EnvConfig
from toolgym.envs.tools import Toolset
from toolgym.spec import TaskSpec
from toolgym.verifiers.verdict import Verdict, verify

__all__ = ["INSTRUCTIONS", "ToolEpisode", "load_tasks", "task_text"]

#: What a trainer's prompt says before the task (its chat template lists the tools itself).
INSTRUCTIONS = (
    "You solve the user's task by calling tools. Use only facts you obtained from tools. "
    "When you have the answer, call submit: it ends the episode and your answer is checked.\n"
)


def task_text(task: TaskSpec) -> str:
    """The user turn a trainer shows for ``task``: the instructions, the family's name rule, then the prompt."""
    runtime = toolgym.family(task.family)
    return INSTRUCTIONS + getattr(runtime, "names_rule", NAMES_RULE) + "\n" + task.prompt


def load_tasks(
    family: str,
    n: int,
    dataset: str | None = None,
    split: str | None = None,
    difficulty: int | list[int] | None = None,
    seed: int = 0,
) -> list[tuple[TaskSpec, Any]]:
    """Up to ``n`` distinct tasks (with their worlds) of a family, as a ToolEnv would serve them.

    Args:
        family: Family id (``toolgym.FAMILIES``).
        n: How many tasks to draw (draws that repeat a task are skipped; at most ``4 * n`` draws).
        dataset: DuckDB dataset path; None synthesizes tasks on the fly (gates included).
        split: train/val/test, or None for any.
        difficulty: A difficulty 1-5 or a list of them; None for any.
        seed: Seeds the draws (the same arguments give the same tasks).

    Returns:
        ``[(task, world), …]`` in draw order.

    Raises:
        ConfigError: Bad arguments (an unknown split, a dataset without matching tasks).
        UnknownNameError: An unknown family.
    """
    config = EnvConfig(family=family, dataset=dataset, split=split, difficulty=difficulty)
    source: TaskSource = make_source(toolgym.family(family), config)
    rng = np.random.default_rng(seed)
    out: dict[str, tuple[TaskSpec, Any]] = {}
    try:
        for _ in range(4 * n):
            task, world = source.pick(rng)
            out.setdefault(task.task_id, (task, world))
            if len(out) == n:
                break
    finally:
        source.close()
    return list(out.values())


class ToolEpisode:
    """Episodes of one task, tools called by name (see the module docstring).

    Args:
        task: The task.
        world: Its world object (shared, never modified: write toolsets get a fresh copy).
        max_result_chars: Each result payload is cut to this many characters.
    """

    def __init__(self, task: TaskSpec, world: Any, max_result_chars: int = lim.MAX_OBSERVATION_CHARS):
        self.task, self.world = task, world
        self.runtime: Runtime = toolgym.family(task.family)
        self.toolset = Toolset(self.runtime.tools(task.tool_config))
        self.max_result_chars = max_result_chars
        self._ctx: Any = None
        self.verdict: Verdict | None = None
        self.done = False
        self.calls = 0

    @property
    def tools(self) -> Sequence[Any]:
        """The task's :class:`~toolgym.envs.tools.Tool` objects, ``submit`` included."""
        return list(self.toolset.tools.values())

    def reset(self) -> str:
        """Start an episode on a fresh context; returns the user turn (:func:`task_text`)."""
        self.close()
        self._ctx = open_context(self.runtime, self.world, self.task, self.toolset.has_write_tools)
        self.verdict, self.done, self.calls = None, False, 0
        return task_text(self.task)

    def call(self, name: str, arguments: Any) -> str:
        """Run one call; returns its result payload. Never raises for a bad call.

        Args:
            name: Tool name (an unknown one is an error result naming the closest tools).
            arguments: The call's arguments: a dict, or a JSON object text (malformed JSON, or
                JSON that is not an object, is an error result).

        Returns:
            ``{"name": …, "content": …}`` or ``{"name": …, "error": …}`` as JSON text.
        """
        shown = name if isinstance(name, str) and name in self.toolset else lim.echo_name(str(name))
        if self._ctx is None and not self.done:
            self.reset()
        if self.done:
            return self._payload(shown, error="the episode is over (submit ran); no further call runs")
        if isinstance(arguments, str):
            try:
                arguments = mk.loads(arguments) if arguments.strip() else {}
            except ValueError as exc:
                return self._payload(shown, error=f"arguments are not valid JSON ({exc}); send a JSON object")
        if not isinstance(arguments, dict):
            return self._payload(shown, error=f"arguments must be a JSON object, got {type(arguments).__name__}")
        self.calls += 1
        if name == "submit" and "submit" in self.toolset:
            return self._submit(arguments)
        ok, result = self.toolset.call(self._ctx, name, arguments)
        return self._payload(shown, result) if ok else self._payload(shown, error=result)

    def _submit(self, arguments: dict[str, Any]) -> str:
        checked = self.toolset.validate("submit", arguments)
        if isinstance(checked, str):
            return self._payload("submit", error=checked)
        answer = checked[1].model_dump(mode="json").get("answer")
        self.verdict = verify(self.task.verifier_spec, answer, final_state(self._ctx))
        self.done = True
        self.close()
        return self._payload("submit", "submitted; the episode is over")

    def _payload(self, name: str, content: Any = None, error: str | None = None) -> str:
        payload = mk.tool_payload(name, content, error=error)
        if len(payload) > self.max_result_chars:
            payload = lim.cap_payloads([payload], self.max_result_chars)[0]
        return payload

    @property
    def reward(self) -> float:
        """The verifier's score in [0, 1] once ``submit`` ran, else 0."""
        return self.verdict.score if self.verdict is not None else 0.0

    def close(self) -> None:
        """Release the episode's context (sandboxes, copies)."""
        if self._ctx is not None:
            self.runtime.close_context(self._ctx)
            self._ctx = None
