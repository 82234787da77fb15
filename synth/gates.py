"""The rule that decides whether a task ships (DESIGN.md "Verifiers and gates").

A task ships only if its reference solution scores 1 and every gate agent scores 0 on it. The
gate agents (null, random, bluff/perturbed submit, vandal) are :mod:`toolgym.envs.agents`; this module
runs them through one task and reports the first gate that failed. It is part of synthesis
(layer L5): ``verifiers`` judges one episode, synthesis decides what ships.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from toolgym.envs.agents import NullAgent, RandomAgent, SubmitAgent
from toolgym.spec import Trajectory


@dataclass
class GateReport:
    """Which gate a task failed (None = it ships) and the scores each gate saw."""

    failed: str | None
    reason: str = ""
    scores: dict[str, list[float]] = field(default_factory=dict)

    @property
    def shipped(self) -> bool:
        """True when every gate passed."""
        return self.failed is None


def run_gates(
    run: Callable[[Any], Trajectory],
    reference: Trajectory,
    random_answers: Iterable[Any],
    bluff_answers: Iterable[Any],
    perturbed_answers: Iterable[Any],
    rng: random.Random,
    replay: list[str] | None = None,
    vandals: Iterable[Callable[[], Any]] = (),
    damaged: Callable[[Trajectory], bool] = lambda ep: True,
    extra: Iterable[tuple[str, Callable[[], Any]]] = (),
) -> GateReport:
    """Run every gate on one task; stop at the first failure.

    Args:
        run: Plays an agent through one episode of the task (``run_episode`` bound to an env
            and a task id).
        reference: The reference solution's episode (must have scored 1).
        random_answers: One plausible random answer per random-agent try.
        bluff_answers: One bluff answer per bluff try.
        perturbed_answers: Broken reference answers.
        rng: Generator for the random agents' tool calls.
        replay: Actions to replay before submitting a perturbed answer (for families whose
            tools write state, so the state check sees the reference's state); None skips it.
        vandals: Makers of vandal agents (the reference's calls plus random writes, then its
            answer; tasks with a state check only).
        damaged: Whether a vandal episode left a state other than the reference's. A vandal
            that scores > 0 fails the gate only then: when every random write failed or
            changed nothing, the try did no damage and is void.
        extra: The family's own gate agents, ``(gate name, agent maker)`` (``Family.gate_agents``).

    Returns:
        The :class:`GateReport`.
    """
    report = GateReport(failed=None, scores={"reference": [reference.reward]})
    if reference.reward != 1.0:
        verdict = reference.info.get("verdict", {})
        report.failed, report.reason = "reference", verdict.get("reason", "episode did not terminate")
        return report
    plan: list[tuple[str, Callable[[], Any]]] = [("null", NullAgent)]
    plan += [("bluff", partial(SubmitAgent, a)) for a in bluff_answers]
    plan += [("perturbed", partial(SubmitAgent, a, replay or ())) for a in perturbed_answers]
    plan += [("random", partial(RandomAgent, rng, a)) for a in random_answers]
    plan += [("vandal", make) for make in vandals]
    plan += list(extra)
    for gate, make_agent in plan:
        ep = run(make_agent())
        report.scores.setdefault(gate, []).append(ep.reward)
        if ep.reward > 0.0 and (gate != "vandal" or damaged(ep)):
            report.failed = gate
            report.reason = ep.info.get("verdict", {}).get("reason", "")
            return report
    return report


__all__ = ["GateReport", "run_gates"]
