"""Running a policy through an episode, and the policy that drives a reference program.

A *policy* (DESIGN.md's vocabulary) is anything with ``act(observation, info) -> action``; one
policy object lives for one episode (a fresh one per episode keeps state from leaking between
episodes). The scripted policies the gates use are called *gate agents*
(:mod:`toolgym.envs.agents`), as in DESIGN.md's "Verifiers and gates". This is the
loop every caller shares: the synthesis gates, the reference trajectories, ``toolgym eval``
and the terminal player, so the reward they see is the one RL sees.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym

from toolgym.envs import markup as mk
from toolgym.errors import ReferenceSolutionError
from toolgym.spec import Trajectory


@dataclass
class Step:
    """One turn of a reference program: optional thought, then the calls to make."""

    calls: list[tuple[str, dict[str, Any]]]
    thought: str | None = None


@dataclass
class Final:
    """What a reference program may return: the answer, and the thought of the submit turn."""

    answer: Any
    thought: str | None = None


#: A reference program: yields Steps, receives the list of tool-result payloads of each step,
#: returns the answer it submits (or a :class:`Final`).
Program = Generator[Step, list[dict[str, Any]], Any]


class Policy(Protocol):
    """Maps the latest observation (and info) to the next action text."""

    def act(self, observation: str, info: dict[str, Any]) -> str:
        """The next action."""
        ...


def run_episode(
    env: gym.Env[str, str],
    policy: Policy,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
) -> Trajectory:
    """Reset ``env`` and let ``policy`` act until the episode ends.

    Returns:
        The episode as a :class:`~toolgym.spec.Trajectory` (``task_id`` from the reset info,
        ``info`` the last step's; ``answer`` is left None: only the policy knows what it meant).
    """
    obs, info = env.reset(seed=seed, options=options)
    task_id = info.get("task_id", "")
    observations, actions = [obs], []
    tool_calls = 0
    while True:  # plain lists per step; the model is built once, at the end
        action = policy.act(obs, info)
        obs, reward, terminated, truncated, info = env.step(action)
        actions.append(action)
        observations.append(obs)
        tool_calls += info.get("tool_calls", 0)
        if terminated or truncated:
            return Trajectory(
                task_id=task_id,
                observations=observations,
                actions=actions,
                tool_calls=tool_calls,
                reward=float(reward),
                terminated=terminated,
                truncated=truncated,
                info=info,
            )


class ProgramPolicy:
    """Drives a reference program: each yielded Step becomes one canonical action.

    The program receives the tool-result payloads parsed back from the observation text, so
    it sees exactly what a policy would see (one per call; turn-level notices are left out); a
    tool error it did not expect is a reference failure, raised as :class:`ReferenceSolutionError`.
    With ``strict=False`` an error is passed on as its payload (``{"name", "error"}``) instead:
    for programs that treat errors as observations (a family's heuristic agent).
    Programs batch at most :func:`toolgym.envs.limits.reference_batch` calls per step.
    """

    def __init__(
        self,
        program: Program,
        submit_thought: str = "I have an answer that meets every requirement; submitting it.",
        strict: bool = True,
    ):
        self.program = program
        self.strict = strict
        self.submit_thought = submit_thought
        self._started = False
        self.answer: Any = None

    def act(self, observation: str, info: dict[str, Any]) -> str:
        """Advance the program by one step."""
        try:
            if not self._started:
                self._started = True
                step: Step = next(self.program)
            else:
                results = []
                for r in mk.parse_tool_results(observation):
                    if "error" in r and self.strict:
                        raise ReferenceSolutionError(f"reference got a tool error: {r['error']}")
                    if r.get("name") is not None:  # a turn-level notice (turns left) is not a result
                        results.append(r)
                step = self.program.send(results)
        except StopIteration as stop:
            final = stop.value if isinstance(stop.value, Final) else Final(stop.value, self.submit_thought)
            self.answer = final.answer
            return mk.render_action([("submit", {"answer": final.answer})], reasoning=final.thought)
        return mk.render_action(step.calls, reasoning=step.thought)
