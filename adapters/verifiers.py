"""verifiers adapter: a toolgym dataset as a verifiers (v1, >= 0.4) environment (extra ``toolgym[verifiers]``).

``load_environment(family=…, dataset=…)`` returns a ``verifiers.v1`` ``Env`` (the library's
``SingleAgentEnv``) whose taskset is toolgym tasks and whose rubric is the toolgym verifier::

    env = load_environment(family="search", num_tasks=8)
    async with env.serving():
        episode = await env.run_episode(next(iter(env.taskset)), vf.ModelContext(model=…, client=…))
    episode.traces[0].reward   # the verifier's score

How it maps (verifiers' vocabulary on the left):

* **Taskset** (:class:`ToolgymTaskset`): ``num_tasks`` tasks drawn from a dataset (or synthesized
  on the fly) as a ToolEnv would serve them (:func:`toolgym.adapters.episode.load_tasks`); each
  task's data carries its id, family and source, its prompt (instructions, the family's name rule,
  the task prompt) and its tool schemas.
* **Harness** (:class:`ToolgymHarness`): the program the model runs in. It runs in process: a
  chat-completions loop against the rollout's interception endpoint (so every turn lands in the
  trace, with verifiers' sampling and policy hooks), the task's tools offered natively
  (``tools=`` with their toolgym schemas) and run through the task's toolset
  (:class:`~toolgym.adapters.episode.ToolEpisode`). A reply without a tool call, a valid
  ``submit``, or ``max_turns`` ends it. Decision: verifiers' own harnesses reach custom tools only
  as MCP servers launched with ``uv`` in a runtime; toolgym's tools are in-process Python over an
  in-memory world, so they run in process (no ``uv``, no network) — the MCP route is the separate
  ``toolgym mcp`` server.
* **Rubric** (:meth:`ToolgymTask.verifier`): the toolgym verifier, scored from the trace alone:
  the trace's tool calls are replayed in order on a fresh context of the task's world, up to the
  first valid ``submit``, whose answer the task's verifier scores against the final state. The
  score is thus a pure function of (task, trace): a stored trace re-scores the same.
* **Bad input**: an unknown tool, arguments that are not a JSON object, or arguments that fail
  validation are error results (the env's payloads) and the episode goes on.

Import note: toolgym's own ``toolgym.verifiers`` package (verdicts and checks) is not this
library; where the repository root itself is on ``sys.path`` (``python -m pytest`` there), its
``verifiers/`` folder would shadow the library, so :func:`_library` imports it with that entry
masked. verifiers finds a taskset (and its harness) by importing a module by a dotless name, so
this module is also registered as ``toolgym_verifiers`` (:data:`TASKSET_ID`) when imported.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import openai
from pydantic import Field

import toolgym
from toolgym.adapters.episode import ToolEpisode, load_tasks, task_text
from toolgym.envs import limits as lim
from toolgym.envs.sources import TaskSource, make_source
from toolgym.envs.toolenv import EnvConfig
from toolgym.spec import TaskSpec


def _library() -> ModuleType:
    """``verifiers.v1`` of the installed library, never the repository's ``verifiers/`` folder."""
    root = Path(toolgym.__file__).resolve().parent
    shadow = sys.modules.get("verifiers")
    if shadow is not None and Path(getattr(shadow, "__file__", None) or "/").resolve().parent == root:
        for name in [m for m in sys.modules if m == "verifiers" or m.startswith("verifiers.")]:
            del sys.modules[name]
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != root]
    try:
        return importlib.import_module("verifiers.v1")
    finally:
        sys.path[:] = saved


vf: Any = _library()

__all__ = ["TASKSET_ID", "ToolgymHarness", "ToolgymTaskset", "load_environment"]

#: The id verifiers imports this module by (``--env.taskset.id``; also the harness id).
TASKSET_ID = "toolgym_verifiers"
sys.modules.setdefault(TASKSET_ID, sys.modules[__name__])

_SOURCES: dict[tuple[str, str | None, str | None], TaskSource] = {}


def _task(family: str, dataset: str | None, split: str | None, task_id: str) -> tuple[TaskSpec, Any]:
    """A task and its world by id, from a source kept per (family, dataset, split) (its LRU caches worlds)."""
    key = (family, dataset, split)
    source = _SOURCES.get(key)
    if source is None:
        source = _SOURCES[key] = make_source(
            toolgym.family(family), EnvConfig(family=family, dataset=dataset, split=split)
        )
    return source.get(task_id)


class ToolgymData(vf.TaskData):  # type: ignore[misc]
    """One toolgym task as verifiers wire data: where to load it from, its prompt and its tool schemas."""

    family: str
    dataset: str | None = None
    split: str | None = None
    tools: list[dict[str, Any]] = Field(default_factory=list)
    difficulty: int = 1


class ToolgymTask(vf.Task[ToolgymData, vf.State, vf.TaskConfig]):  # type: ignore[misc]
    """A toolgym task: its reward is the toolgym verifier (see the module docstring)."""

    @property
    def key(self) -> str:
        """The toolgym task id (durable across runs, unlike the data's ``idx``)."""
        return str(self.data.id)

    @vf.reward(weight=1.0)
    async def verifier(self, trace: Any) -> float:
        """The verifier's score of the trace: its calls replayed on a fresh world, up to a valid submit."""
        d = self.data
        episode = ToolEpisode(*_task(d.family, d.dataset, d.split, d.id))
        episode.reset()
        try:
            for message in trace.messages:
                for call in getattr(message, "tool_calls", None) or ():
                    if not episode.done:
                        episode.call(call.name, call.arguments)
        finally:
            episode.close()
        trace.record_metric("submitted", float(episode.verdict is not None))
        trace.record_metric("tool_calls", float(episode.calls))
        return episode.reward


class ToolgymTasksetConfig(vf.TasksetConfig):  # type: ignore[misc]
    """Which toolgym tasks (``--env.taskset.*``)."""

    id: str = TASKSET_ID
    family: str = "search"
    dataset: str | None = None
    split: str | None = "train"
    difficulty: list[int] | None = None
    num_tasks: int = Field(16, ge=1)
    seed: int = 0


class ToolgymTaskset(vf.Taskset[ToolgymTask, ToolgymTasksetConfig]):  # type: ignore[misc]
    """``num_tasks`` toolgym tasks of one family (see :func:`toolgym.adapters.episode.load_tasks`)."""

    def load(self) -> list[ToolgymTask]:
        """The tasks, in draw order."""
        c = self.config
        tasks = load_tasks(c.family, c.num_tasks, c.dataset, c.split, c.difficulty, c.seed)
        return [
            ToolgymTask(
                ToolgymData(
                    idx=i,
                    id=t.task_id,
                    name=t.task_id,
                    prompt=task_text(t),
                    family=c.family,
                    dataset=c.dataset,
                    split=c.split,
                    tools=t.tools,
                    difficulty=t.difficulty,
                ),  # fmt: skip
                c.task,
            )
            for i, (t, _) in enumerate(tasks)
        ]


class ToolgymHarnessConfig(vf.HarnessConfig):  # type: ignore[misc]
    """The in-process tool loop (``--env.agent.harness.*``)."""

    id: str = TASKSET_ID
    max_turns: int = Field(lim.MAX_TURNS, ge=1, description="model turns per episode (a turn may make several calls)")


class ToolgymHarness(vf.Harness[ToolgymHarnessConfig]):  # type: ignore[misc]
    """The model's program: chat completions through the interception endpoint, toolgym tools in process."""

    APPENDS_SYSTEM_PROMPT = True
    SUPPORTS_MCP = False
    EXECUTES_CODE = False  # tools are the task's own (sandboxed where they run code), not the model's shell
    NEEDS_CONTAINER = False

    async def launch(
        self,
        ctx: Any,
        trace: Any,
        runtime: Any,
        endpoint: str,
        secret: str,
        mcp_urls: dict[str, str],
        data: Any,
        tool_interception_url: str | None = None,
    ) -> Any:
        """Run one episode to its end; returns the program result (exit 0, the outcome on stdout)."""
        episode = ToolEpisode(*_task(data.family, data.dataset, data.split, data.id))
        episode.reset()
        system, prompt = self.resolve_prompt(data)
        messages: list[Any] = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        client = openai.AsyncOpenAI(base_url=endpoint, api_key=secret, max_retries=0)
        turns = 0
        try:
            while turns < self.config.max_turns and not episode.done:
                turns += 1
                reply = await client.chat.completions.create(model=ctx.model, messages=messages, tools=data.tools)
                message = reply.choices[0].message
                calls = message.tool_calls or []
                messages.append(message.model_dump(exclude_none=True, include={"role", "content", "tool_calls"}))
                if not calls:
                    break
                for c in calls:
                    name, args = (c.function.name, c.function.arguments) if c.type == "function" else (c.type, "")
                    messages.append({"role": "tool", "tool_call_id": c.id, "content": episode.call(name, args)})
        finally:
            episode.close()
            await client.close()
        outcome = f"turns={turns} calls={episode.calls} submitted={episode.verdict is not None} reward={episode.reward}"
        return vf.ProgramResult(exit_code=0, stdout=outcome, stderr="")


def load_environment(
    family: str = "search",
    dataset: str | None = None,
    split: str | None = "train",
    difficulty: int | list[int] | None = None,
    num_tasks: int = 16,
    seed: int = 0,
    max_turns: int = lim.MAX_TURNS,
) -> Any:
    """A verifiers environment over toolgym tasks, rubric = the toolgym verifier.

    Args:
        family: Family id (``toolgym.FAMILIES``).
        dataset: DuckDB dataset path; None synthesizes tasks on the fly (gates included).
        split: train/val/test, or None for any.
        difficulty: A difficulty 1-5 or a list of them; None for any.
        num_tasks: How many tasks the taskset holds.
        seed: Seeds the task draws.
        max_turns: Model turns per episode.

    Returns:
        A ``verifiers.v1.SingleAgentEnv``: run it with ``async with env.serving(): await
        env.run_episode(task, vf.ModelContext(...))`` or through verifiers' eval.

    Raises:
        pydantic.ValidationError: A bad setting (verifiers' config models).
    """
    difficulties = [difficulty] if isinstance(difficulty, int) else difficulty
    taskset = ToolgymTasksetConfig(
        family=family, dataset=dataset, split=split, difficulty=difficulties, num_tasks=num_tasks, seed=seed
    )
    # The harness runs in process: the local subprocess runtime (no container, no tunnel) only hosts the rollout.
    agent = vf.AgentConfig(harness=ToolgymHarnessConfig(max_turns=max_turns), runtime=vf.SubprocessConfig())
    return vf.SingleAgentEnv(vf.SingleAgentEnvConfig(taskset=taskset, agent=agent))
