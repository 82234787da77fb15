"""ToolEnv: one Gymnasium environment class serves every family.

## Description
A text-in/text-out episode over one task of a family: the policy reads the prompt, calls
tools with the chat markup of :mod:`toolgym.envs.markup`, and ends the episode by calling
``submit``; the task's verifier scores the submitted answer (and the final world state).

## Action / Observation
Both are ``str`` (``spaces.Text`` over the env's charset, see :mod:`toolgym.envs.textspace`;
an action may hold any character). ``reset`` returns the
prompt ending in ``<|assistant|>``; ``step(action)`` returns exactly the text that follows the
action in the conversation: ``<|end|>`` when the action did not end with it, one
``<|tool|>{json}<|end|>`` per tool result (or error), then ``<|assistant|>`` unless the episode
is over. So ``obs0 + act1 + obs1 + …`` is the whole context, token-exact.

## Reward
0 until termination, then the verifier's score in [0, 1] (the same call the eval uses).

## Episode End
Terminated when a valid ``submit`` call runs. Truncated (reward 0, no verdict) when the turn
limit is reached, when an action is longer than ``max_action_chars``, or when one turn makes
more than ``max_tool_calls_per_turn`` calls. Bad actions never crash: unparseable markup,
unknown tools, arguments that fail validation and tools that raise each become a tool-role
error observation saying what was wrong and how to fix it.

## Arguments
See :class:`EnvConfig` (``gymnasium.make(id, dataset=…, split=…, difficulty=…, task_id=…)``).
With no dataset, tasks are synthesized on the fly from the reset seed (gates included).

## Version History
* v0: initial release.

Performance notes: nothing here grows with the number of episodes run (per-episode lists are
rebuilt at reset, caches are bounded), and the per-step path is parse → dict dispatch →
pydantic validation → json.dumps, with no re-rendering of history.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from toolgym.envs import markup as mk
from toolgym.envs.sources import TaskSource, make_source
from toolgym.envs.textspace import UnicodeText
from toolgym.envs.tools import Toolset
from toolgym.errors import ConfigError, one_line
from toolgym.synth import get_family
from toolgym.synth.family import TaskSpec
from toolgym.verifiers.verdict import verify

SYSTEM_INSTRUCTIONS = (
    "You solve the user's task by calling tools. In each turn you may think inside "
    "<think>…</think>, then call one or more tools, each as "
    '<tool_call>{"name": "<tool>", "arguments": {…}}</tool_call>, and end the turn. '
    "Tool results come back as tool messages, one per call. Use only facts you obtained from tools. "
    "When you have the answer, call submit: it ends the episode and your answer is checked.\n"
    "Tools (JSON schemas, one per line):\n"
)


class EnvConfig(BaseModel):
    """The keyword arguments of ``gymnasium.make("toolgym/<Family>-vN", **kwargs)``."""

    model_config = ConfigDict(extra="forbid")

    family: str
    dataset: Path | None = Field(None, description="DuckDB dataset; None synthesizes tasks from the seed")
    split: str | None = Field(None, description="train/val/test; None = every split")
    difficulty: int | list[int] | None = Field(None, description="difficulty or list of difficulties")
    task_id: str | None = Field(None, description="always serve this task")
    max_turns: int = Field(48, ge=1)
    max_tool_calls_per_turn: int = Field(16, ge=1)
    max_action_chars: int = Field(32_768, ge=64)
    max_observation_chars: int = Field(1_000_000, ge=1024)
    messages: bool = Field(
        True,
        description="keep info['messages'] (the OpenAI-style chat view) up to date; token-level RL loops and the "
        "synthesis pipeline turn it off and rebuild it from the text when needed (markup.messages_from_text)",
    )

    @field_validator("difficulty")
    @classmethod
    def _difficulty_range(cls, v: int | list[int] | None) -> int | list[int] | None:
        for d in [v] if isinstance(v, int) else v or []:
            if not 1 <= d <= 5:
                raise ValueError(f"difficulty must be between 1 and 5, got {d}")
        return v

    def difficulties(self) -> list[int] | None:
        """The difficulty filter as a list (None = any)."""
        if self.difficulty is None:
            return None
        return [self.difficulty] if isinstance(self.difficulty, int) else list(self.difficulty)


def system_text(tools: list[dict[str, Any]]) -> str:
    """The system message: instructions plus one JSON schema per tool."""
    return SYSTEM_INSTRUCTIONS + "\n".join(mk.dumps(t["function"]) for t in tools)


class ToolEnv(gym.Env[str, str]):
    """A tool-use episode over one synthesized task (see the module docstring)."""

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, render_mode: str | None = None, source: TaskSource | None = None, **kwargs: Any):
        try:
            self.config = EnvConfig(**kwargs)
        except ValidationError as exc:
            raise ConfigError(f"invalid ToolEnv arguments: {one_line(exc)}") from None
        if render_mode not in (None, "ansi"):
            raise ConfigError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.render_mode = render_mode
        self.family = get_family(self.config.family)
        self.source = source if source is not None else make_source(self.family, self.config)
        c = self.config
        self.observation_space = UnicodeText(c.max_observation_chars, min_length=1)
        self.action_space = UnicodeText(c.max_action_chars, any_char=True)
        self._toolsets: dict[str, Toolset] = {}
        self._done = True
        self._context_text: list[str] = []
        self.task: TaskSpec | None = None

    # ------------------------------------------------------------------ helpers
    def _toolset(self, task: TaskSpec) -> Toolset:
        key = repr(sorted(task.tool_config.items()))
        ts = self._toolsets.get(key)
        if ts is None:
            if len(self._toolsets) > 64:
                self._toolsets.clear()
            ts = self._toolsets[key] = Toolset(self.family.tools(task.tool_config))
        return ts

    def _close_context(self) -> None:
        ctx = getattr(self, "_ctx", None)
        if ctx is not None:
            self.family.close_context(ctx)
            self._ctx = None

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Start an episode: pick a task (``options={"task_id": …}`` or from the seed)."""
        super().reset(seed=seed)
        self._close_context()
        options = options or {}
        unknown_opts = set(options) - {"task_id"}
        if unknown_opts:
            raise ConfigError(f"unknown reset options {sorted(unknown_opts)}; only 'task_id' is accepted")
        task_id = options.get("task_id") or self.config.task_id
        task, world = self.source.get(task_id) if task_id else self.source.pick(self.np_random)
        self.task, self.world = task, world
        self.toolset = self._toolset(task)
        self._ctx = self.family.episode_context(world, task)
        self._turn = 0
        self._done = False
        obs = mk.render_prompt(task.system, task.prompt)
        self._messages: list[dict[str, Any]] = (
            [{"role": "system", "content": task.system}, {"role": "user", "content": task.prompt}]
            if self.config.messages
            else []
        )
        self._context_text = [obs] if self.render_mode == "ansi" else []
        info: dict[str, Any] = {
            "task_id": task.task_id,
            "family": task.family,
            "difficulty": task.difficulty,
            "tools": task.tools,
        }
        if self.config.messages:
            info["messages"] = list(self._messages)
        return obs, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Run one assistant turn; returns the text that follows it (see the module docstring)."""
        if self._done:
            raise gym.error.ResetNeeded("the episode is over; call reset() before step()")
        if not isinstance(action, str):
            raise TypeError(f"a ToolEnv action is a str, got {type(action).__name__}")
        c = self.config
        self._turn += 1
        terminated = truncated = False
        verdict = None
        payloads: list[str] = []
        errors: list[str] = []
        parsed = mk.parse_action(action) if len(action) <= c.max_action_chars else None

        if parsed is None:
            errors.append(f"action is {len(action)} characters, over the limit of {c.max_action_chars}")
            truncated = True
        elif parsed.fatal:
            errors.extend(parsed.errors)
        elif len(parsed.tool_calls) > c.max_tool_calls_per_turn:
            errors.append(
                f"{len(parsed.tool_calls)} tool calls in one turn, over the limit of {c.max_tool_calls_per_turn}"
            )
            truncated = True
        else:
            errors.extend(parsed.errors)
            if not parsed.tool_calls and not parsed.errors:
                errors.append("no tool call in this turn; call a tool, or call submit to finish")
        payloads = [mk.tool_payload(None, error=e) for e in errors]
        calls_ran = parsed is not None and not parsed.fatal and not truncated
        if calls_ran:
            for call in parsed.tool_calls:  # type: ignore[union-attr]
                if terminated:
                    payloads.append(mk.tool_payload(call.name, error="not run: the episode ended at submit"))
                    continue
                if call.name == "submit" and "submit" in self.toolset:
                    checked = self.toolset.validate("submit", call.arguments)
                    if isinstance(checked, str):
                        payloads.append(mk.tool_payload("submit", error=checked))
                        continue
                    answer = checked[1].model_dump(mode="json").get("answer")
                    verdict = verify(self.task.verifier, answer, self._ctx)  # type: ignore[union-attr]
                    terminated = True
                    payloads.append(mk.tool_payload("submit", "submitted; the episode is over"))
                    continue
                ok, result = self.toolset.call(self._ctx, call.name, call.arguments)
                payloads.append(mk.tool_payload(call.name, result) if ok else mk.tool_payload(call.name, error=result))
        if not terminated and self._turn >= c.max_turns:
            truncated = True
        self._done = terminated or truncated
        obs = ("" if parsed is not None and parsed.ended else mk.END) + "".join(mk.TOOL + p + mk.END for p in payloads)
        if not self._done:
            obs += mk.ASSISTANT
        if c.messages:
            self._messages += mk.turn_messages(self._turn, action, parsed, payloads, len(errors), calls_ran)
        n_calls = len(parsed.tool_calls) if calls_ran and parsed is not None else 0
        if self.render_mode == "ansi":
            self._context_text += [action, obs]
        info: dict[str, Any] = {
            "task_id": self.task.task_id,  # type: ignore[union-attr]
            "turn": self._turn,
            "errors": errors,
            "tool_calls": n_calls,
            "tools": self.task.tools,  # type: ignore[union-attr]
        }
        if c.messages:
            info["messages"] = list(self._messages)
        if verdict is not None:
            info["verdict"] = verdict.model_dump()
        if self._done:
            self._close_context()
        return obs, (verdict.score if verdict is not None else 0.0), terminated, truncated, info

    def render(self) -> str | None:  # type: ignore[override]
        """The conversation so far as text (``render_mode="ansi"``)."""
        return "".join(self._context_text) if self.render_mode == "ansi" else None

    def close(self) -> None:
        """Release the episode's context and the task source."""
        self._close_context()
        self.source.close()

    def __getstate__(self) -> dict[str, Any]:
        # Tools hold pydantic models created at runtime (not importable by name): rebuild them.
        state = self.__dict__.copy()
        state.pop("family", None)
        state.pop("toolset", None)
        state["_toolsets"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.family = get_family(self.config.family)
        if self.task is not None:
            self.toolset = self._toolset(self.task)


def make_env(family: str, source: TaskSource | None = None, **kwargs: Any) -> ToolEnv:
    """A ToolEnv without Gymnasium's wrappers (for pipelines that run many short episodes)."""
    return ToolEnv(source=source, family=family, **kwargs)


__all__ = ["EnvConfig", "ToolEnv", "UnicodeText", "make_env", "system_text"]
