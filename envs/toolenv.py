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
Terminated when a valid ``submit`` call runs. Truncated (reward 0, no verdict) only when the
turn limit is reached. The system text states every limit (:mod:`toolgym.envs.limits`); breaking
a per-turn limit is an error observation, not the end: an action longer than
``max_action_chars`` runs no call, and of more than ``max_tool_calls_per_turn`` calls the first
that many run and each further one gets a "not run" error. The observations of the last turns
start with a turns-left notice, and every observation is capped at ``max_observation_chars``
(results cut with a ``[cut: …]`` marker). Bad actions never crash: unparseable markup, unknown
tools, arguments that fail validation and tools that raise each become a tool-role error
observation saying what was wrong and how to fix it; text that looks like a call in another
format (bare JSON, a code fence, ``<function=…>``) gets the ``<tool_call>`` format hint.

## Arguments
See :class:`EnvConfig` (``gymnasium.make(id, dataset=…, split=…, difficulty=…, task_id=…)``).
With no dataset, tasks are synthesized on the fly from the reset seed (gates included).

## Version History
* v0: initial release.
* v1 (issue 8): every limit stated in the system text; per-turn limits (calls per turn, action
  length) are error observations and only the turn limit truncates; the last turns carry a
  notice; observations capped with a ``[cut: …]`` marker; payloads never contain a special
  string (``\u003c``) or a character outside the observation charset; one name rule (NFC,
  trimmed, case-sensitive, closest-name hint); strict answer types; split honoured without a
  dataset; trip prompts reworded and the transport-mode rule binding (family version 1).

Performance notes: nothing here grows with the number of episodes run (per-episode lists are
rebuilt at reset, caches are bounded), and the per-step path is parse → dict dispatch →
pydantic validation → json.dumps, with no re-rendering of history.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import gymnasium as gym
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator, model_validator

import toolgym
from toolgym.envs import chat
from toolgym.envs import limits as lim
from toolgym.envs import markup as mk
from toolgym.envs import responses as rsp
from toolgym.envs.runtime import Runtime, final_state, open_context
from toolgym.envs.sources import TaskSource, make_source
from toolgym.envs.textspace import UnicodeText
from toolgym.envs.tools import Toolset
from toolgym.errors import ConfigError, one_line
from toolgym.spec import TaskSpec
from toolgym.verifiers.verdict import Verdict, verify

#: How names in arguments and answers are matched, unless a family states its own
#: (``Family.names_rule``: e.g. ``search`` answers ignore case, punctuation and articles).
NAMES_RULE = (
    "Names (of cities, venues, files, groups…) in arguments and answers are matched exactly after Unicode "
    "NFC normalization and trimming of surrounding whitespace; case matters, and a name that matches "
    "nothing gets the closest one suggested.\n"
)
SYSTEM_INSTRUCTIONS = (
    "You solve the user's task by calling tools. In each turn you may think inside "
    "<think>…</think>, then call one or more tools, each as "
    '<tool_call>{"name": "<tool>", "arguments": {…}}</tool_call>, and end the turn. '
    "Tool results come back as tool messages, one per call. Use only facts you obtained from tools. "
    "When you have the answer, call submit: it ends the episode and your answer is checked.\n"
)
_FORMAT_HINT = (
    'write each call as <tool_call>{"name": "<tool>", "arguments": {…}}</tool_call> and end the turn with <|end|>'
)
_NO_CALL = "no tool call in this turn; call a tool, or call submit to finish"
_FENCE = re.compile(r"```([\w-]*)\s*(.*?)(?:```|$)", re.S)
_FUNCTION_TAG = re.compile(r"<function=([^<>\s]+)>(.*?)(?:</function>|$)", re.S)  # linear: no `<` in a name
_HINT_SCAN = 8192  # characters of a call-less turn examined for another call format


class EnvConfig(BaseModel):
    """The keyword arguments of ``gymnasium.make("toolgym/<Family>-vN", **kwargs)``."""

    model_config = ConfigDict(extra="forbid")

    family: str
    dataset: Path | None = Field(None, description="DuckDB dataset; None synthesizes tasks from the seed")
    split: str | None = Field(None, description="train/val/test; None = every split")
    difficulty: StrictInt | list[StrictInt] | None = Field(
        None, description="difficulty or non-empty list of difficulties (integers 1-5; a boolean is refused)"
    )
    task_id: str | None = Field(None, description="always serve this task")
    # Defaults: every family's reference stays 25% below each (tests/test_limits_all.py); the trip
    # reference makes up to ~270 calls at difficulty 5, so 32 calls per turn (references batch 24)
    # keep it near 15 of the 48 turns, where 16 per turn (batches of 12) would take ~30.
    max_turns: StrictInt = Field(lim.MAX_TURNS, ge=1, description="turns per episode; running out truncates, reward 0")
    max_tool_calls_per_turn: StrictInt = Field(
        lim.MAX_TOOL_CALLS_PER_TURN, ge=1, description="calls beyond are not run"
    )
    max_action_chars: StrictInt = Field(lim.MAX_ACTION_CHARS, ge=64, description="a longer action runs no call")
    max_observation_chars: StrictInt = Field(
        lim.MAX_OBSERVATION_CHARS, ge=1024, description="observations are cut to this, with a [cut: …] marker"
    )
    messages: bool = Field(
        True,
        description="keep info['messages'] (the OpenAI-style chat view) up to date; token-level RL loops and the "
        "synthesis pipeline turn it off and rebuild it from the text when needed (chat.messages_from_text)",
    )
    response_items: bool = Field(
        False,
        description="also keep info['response_items']: the same conversation as OpenAI Responses-API input items "
        "(toolgym.envs.responses); needs messages=True",
    )

    @field_validator("difficulty")
    @classmethod
    def _difficulty_range(cls, v: int | list[int] | None) -> int | list[int] | None:
        if v == []:
            raise ValueError("difficulty is an empty list; pass None for any difficulty")
        for d in [v] if isinstance(v, int) else v or []:
            if not 1 <= d <= 5:
                raise ValueError(f"difficulty must be between 1 and 5, got {d}")
        return v

    @model_validator(mode="after")
    def _observation_fits_results(self) -> EnvConfig:
        least = lim.min_observation_chars(self.max_action_chars)
        if self.max_observation_chars < least:
            raise ValueError(
                f"max_observation_chars={self.max_observation_chars} cannot hold a result for every call an action "
                f"of max_action_chars={self.max_action_chars} can make; use at least {least} (4096 + 4 x the action "
                "limit) or lower max_action_chars"
            )
        return self

    @model_validator(mode="after")
    def _items_need_messages(self) -> EnvConfig:
        if self.response_items and not self.messages:
            raise ValueError("response_items=True needs messages=True (the items are built from the chat view)")
        return self

    def limits_text(self) -> str:
        """The paragraph of the system text stating these limits."""
        return lim.limits_text(
            self.max_turns, self.max_tool_calls_per_turn, self.max_action_chars, self.max_observation_chars
        )

    def difficulties(self) -> list[int] | None:
        """The difficulty filter as a list (None = any)."""
        if self.difficulty is None:
            return None
        return [self.difficulty] if isinstance(self.difficulty, int) else list(self.difficulty)


def system_text(
    tools: list[dict[str, Any]], limits: str = lim.DEFAULT_LIMITS_TEXT, names_rule: str = NAMES_RULE
) -> str:
    """The system message: instructions, how names match, the limits paragraph, then one JSON schema per tool.

    Tasks store it with the default limits; an env with other limits states its own
    (:func:`toolgym.envs.limits.with_limits`). ``names_rule`` is the family's
    (``Family.names_rule``), one line ending in a newline.
    """
    body = "\n".join(mk.dumps(t["function"]) for t in tools)
    return SYSTEM_INSTRUCTIONS + names_rule + limits + lim.TOOLS_HEADER + body


def _as_call(body: str) -> tuple[str, Any] | None:
    """(name, arguments) of a JSON call written in another format, or None."""
    try:
        obj = mk.loads(body)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = mk.loads(args)
        except ValueError:
            return None
    return (obj["name"], args) if isinstance(args, dict) else None


def no_call_error(content: str) -> str:
    """The error for a turn without a ``<tool_call>``: names a call written in another format.

    Recognized (the commonest outputs of an untrained policy): a code fence, a
    ``<function=name>{…}</function>`` tag, a bare JSON object; when its call parses, the error
    shows it rewritten in the markup.
    """
    text = content.strip()[:_HINT_SCAN]  # bounded work whatever the policy wrote
    call: tuple[str, Any] | None = None
    if "```" in text:
        m = _FENCE.search(text)
        form = f"```{m.group(1) if m else ''} code fence"
        call = _as_call(m.group(2).strip()) if m else None
    elif "<function=" in text:
        form = "<function=...> tag"
        m = _FUNCTION_TAG.search(text)
        if m:
            body = m.group(2).strip() or "{}"
            call = _as_call(mk.dumps({"name": m.group(1), "arguments": body}))
    elif text.startswith("{") and '"name"' in text:
        form = "bare JSON object"
        call = _as_call(text)
    elif '"name"' in text and "{" in text and "}" in text:
        form = "JSON object outside <tool_call> tags"
        call = _as_call(text[text.index("{") : text.rindex("}") + 1])
    else:
        return _NO_CALL
    hint = f"no tool call in this turn: a {form} is not a tool call; {_FORMAT_HINT}"
    if call is not None:
        shown = mk.render_call(*call) + mk.END
        if len(shown) <= 300:
            hint += f", here: {shown}"
    return hint


def _observation(payloads: list[str], ended: bool, done: bool) -> str:
    """The text that follows an action (the observation).

    ``<|end|>`` unless the action ended the turn itself, one tool message per payload, then
    ``<|assistant|>`` unless the episode is over.
    """
    return ("" if ended else mk.END) + "".join(mk.TOOL + p + mk.END for p in payloads) + ("" if done else mk.ASSISTANT)


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
        self.family: Runtime = toolgym.family(self.config.family)
        self.source = source if source is not None else make_source(self.family, self.config)
        c = self.config
        self.observation_space = UnicodeText(c.max_observation_chars, min_length=1)
        self.action_space = UnicodeText(c.max_action_chars, any_char=True)
        self._limits = c.limits_text()
        self._systems: dict[str, str] = {}  # task system text -> the same stating this env's limits
        self._toolsets: dict[str, Toolset] = {}
        self._done = True
        self.system = ""  # the episode's system text: the task's, stating this env's limits
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
        task_id = options["task_id"] if options.get("task_id") is not None else self.config.task_id
        if task_id is not None and (not isinstance(task_id, str) or not task_id.strip()):
            what = f"{type(task_id).__name__} {task_id!r}"
            raise ConfigError(f"task_id must be a non-empty str (omit it to draw a task), got {what}")
        task, world = self.source.get(task_id) if task_id else self.source.pick(self.np_random)
        self.task, self.world = task, world
        self.toolset = self._toolset(task)
        self._ctx = open_context(self.family, world, task, self.toolset.has_write_tools)  # fresh if it writes
        self._turn = 0
        self._done = False
        system = self._systems.get(task.system)  # str hashes are cached: O(1) for a task seen before
        if system is None:
            if len(self._systems) > 64:
                self._systems.clear()
            system = self._systems[task.system] = lim.with_limits(task.system, self._limits)
        self.system = system
        obs = mk.render_prompt(self.system, task.prompt)
        self._messages: list[dict[str, Any]] = (
            [{"role": "system", "content": self.system}, {"role": "user", "content": task.prompt}]
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
        if self.config.response_items:
            self._items = rsp.response_items(self._messages)
            info["response_items"] = list(self._items)
        return obs, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Run one assistant turn; returns the text that follows it (see the module docstring)."""
        if self._done:  # the cold path: the messages are worked out only here
            if self.task is None:
                raise gym.error.ResetNeeded("no episode has started; call reset() before the first step()")
            raise gym.error.ResetNeeded("the episode is over; call reset() before step()")
        if not isinstance(action, str):
            raise TypeError(f"a ToolEnv action is a str, got {type(action).__name__}")
        c = self.config
        self._turn += 1
        terminated = truncated = False
        verdict = None
        errors: list[str] = []
        parsed, calls = self._read_action(action, errors)
        if len(errors) > lim.MAX_TURN_ERRORS:
            errors = lim.merge_errors(errors)
        payloads = [mk.tool_payload(None, error=e) for e in errors]
        n_calls = 0
        tools, n_max = self.toolset.tools, c.max_tool_calls_per_turn
        for i, call in enumerate(calls or ()):
            name = call.name if call.name in tools else lim.echo_name(call.name)
            if terminated:
                payloads.append(mk.tool_payload(name, error="not run: the episode ended at submit"))
            elif i >= n_max:
                payloads.append(mk.tool_payload(name, error="not run: over the limit of calls per turn"))
            elif call.name == "submit" and "submit" in self.toolset:
                n_calls += 1
                submitted = self._submit(call.arguments)
                if isinstance(submitted, str):
                    payloads.append(mk.tool_payload("submit", error=submitted))
                    continue
                verdict, terminated = submitted, True
                payloads.append(mk.tool_payload("submit", "submitted; the episode is over"))
            else:
                n_calls += 1
                ok, result = self.toolset.call(self._ctx, call.name, call.arguments)
                payloads.append(mk.tool_payload(name, result) if ok else mk.tool_payload(name, error=result))
        if not terminated and self._turn >= c.max_turns:
            truncated = True
        n_lead = len(errors)
        if c.max_turns - self._turn <= lim.WARN_TURNS and not (terminated or truncated):
            payloads.insert(0, mk.tool_payload(None, lim.turns_notice(self._turn, c.max_turns)))
            n_lead += 1
        self._done = terminated or truncated
        ended = parsed.ended if parsed is not None else action.endswith(mk.END)
        obs = _observation(payloads, ended, self._done)
        if len(obs) > c.max_observation_chars:  # rare: cut the results to fair shares of the cap
            payloads = lim.cap_payloads(payloads, c.max_observation_chars)
            obs = _observation(payloads, ended, self._done)
        if c.messages:
            new = chat.turn_messages(self._turn, action, parsed, payloads, n_lead, calls is not None)
            self._messages += new
            if c.response_items:
                self._items += rsp.response_items(new, first_turn=self._turn)
        if self.render_mode == "ansi":
            self._context_text += [action, obs]
        info: dict[str, Any] = {
            "task_id": self.task.task_id,  # type: ignore[union-attr]
            "turn": self._turn,
            "errors": errors,
            "tool_calls": n_calls,
            "turns_left": c.max_turns - self._turn,
            "tools": self.task.tools,  # type: ignore[union-attr]
        }
        if c.messages:
            info["messages"] = list(self._messages)
        if c.response_items:
            info["response_items"] = list(self._items)
        if verdict is not None:
            info["verdict"] = verdict.model_dump()
        if self._done:
            self._close_context()
        return obs, (verdict.score if verdict is not None else 0.0), terminated, truncated, info

    def _read_action(self, action: str, errors: list[str]) -> tuple[mk.ParsedAction | None, list[mk.ToolCall] | None]:
        """Parse one action and add its turn-level errors (per-turn limits, markup, a missing call) to ``errors``.

        Returns:
            ``(parsed, calls)``: the parsed action (None when it is over ``max_action_chars`` and
            the chat view is off: it is parsed only for that view), and the calls to dispatch, or
            None when none runs (an action over the length limit, or a fatal markup error).
        """
        c = self.config
        if len(action) > c.max_action_chars:  # runs nothing; parsed only for the chat view
            errors.append(
                f"action is {len(action):,} characters, over the limit of {c.max_action_chars:,}; no call ran. "
                "Think more briefly and make fewer calls per turn"
            )
            return (mk.parse_action(action) if c.messages else None), None
        parsed = mk.parse_action(action)
        errors.extend(parsed.errors)
        if parsed.fatal:
            return parsed, None
        calls = parsed.tool_calls
        if len(calls) > c.max_tool_calls_per_turn:
            errors.append(
                f"{len(calls)} tool calls in one turn, over the limit of {c.max_tool_calls_per_turn}: the "
                f"first {c.max_tool_calls_per_turn} ran, the other {len(calls) - c.max_tool_calls_per_turn} "
                "did not; make them in the next turn"
            )
        elif not calls and not parsed.errors:
            errors.append(no_call_error(parsed.content))
        return parsed, calls

    def _submit(self, arguments: dict[str, Any]) -> Verdict | str:
        """Check a ``submit`` call's arguments and score its answer against the episode's final state.

        Returns:
            The verifier's verdict, or the validation error (the episode goes on).
        """
        checked = self.toolset.validate("submit", arguments)
        if isinstance(checked, str):
            return checked
        answer = checked[1].model_dump(mode="json").get("answer")
        return verify(self.task.verifier_spec, answer, final_state(self._ctx))  # type: ignore[union-attr]

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
        self.family = toolgym.family(self.config.family)
        if self.task is not None:
            self.toolset = self._toolset(self.task)


def make_env(family: str, source: TaskSource | None = None, **kwargs: Any) -> ToolEnv:
    """A ToolEnv without Gymnasium's wrappers (for pipelines that run many short episodes)."""
    return ToolEnv(source=source, family=family, **kwargs)


__all__ = ["NAMES_RULE", "EnvConfig", "ToolEnv", "UnicodeText", "make_env", "system_text"]
