"""State checks: the final world state against the state the reference solution produced.

Verification by outcome, as tau2-bench does it: ``{"kind": "state", "fields": [...] | null,
"expected_hash": "…"}``. An episode passes when the canonical hash of its final state (the
``fields`` of it, or all of it) equals ``expected_hash``, whatever order or route its calls
took; the answer argument is not consulted. ``fields`` restricts the comparison to the parts of
the state the task is about, so reads (or harmless writes elsewhere) do not matter; collateral
damage to a listed field fails.

Where ``expected_hash`` comes from (synthesis, ``evaluate_candidate``): a family's
``make_task`` emits the check *without* it, and the pipeline computes it by replaying the
reference, in three steps:

1. the reference episode runs once in an env, to record its calls; its verdict is ignored (an
   unfilled check fails closed, see :func:`verify_state`, so it cannot score 1 by accident);
2. its write calls (tool kind ``"write"``, parsed back from its actions, in order) are replayed
   directly through the toolset on a fresh world (:func:`toolgym.envs.replay.replay_writes`);
   reads are skipped, a write that fails is a reference failure;
3. :func:`fill_expected_state` hashes that state into every unfilled state check (those nested
   in ``"all"`` included), and the reference runs again on the filled task, for real: it must
   score 1 like every reference, which cross-checks that its writes alone, replayed on a fresh
   world, give the state its whole episode (reads and all, in its own isolated copy) left.

Running the reference twice, rather than once with the verdict recomputed, is the design
because the env closes an episode's context when it ends: the second run is an ordinary
episode, judged by the same ``verify`` call RL uses. It costs one reference episode per state
task, next to the dozen gate episodes each candidate runs anyway.

A check whose ``expected_hash`` the family filled by hand is kept as it is and not replayed: the
reference scoring 1 already checks the hand-computed state against the reference's episode,
an independent oracle the replay would only weaken.

What the replay cannot catch: a reference whose writes are *wrong* (it overpays a transfer by
one) defines the expected state, so its tasks ship and a policy that does what the prompt says
scores 0. The replay makes the state check as good as the reference program, no better; a
family that can compute the final state independently of its reference (from the task's
parameters and the world) should fill ``expected_hash`` itself, which turns the reference run
into a cross-check of two implementations, as the trip and code families' answers are.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from toolgym.errors import ConfigError
from toolgym.verifiers.verdict import Verdict

UNFILLED = "the state check has no expected_hash: synthesis fills it by replaying the reference's write calls"


def state_view(state: Any, fields: list[str] | None = None) -> Any:
    """The JSON-able part of a state that a check compares (``to_json()`` of a world object).

    Raises:
        ConfigError: A listed field is not in the state. A typo in ``fields`` would otherwise
            compare None with None and pass every episode, so it is an error, not a None.
    """
    data = state.to_json() if hasattr(state, "to_json") else state
    if fields is None:
        return data
    missing = [f for f in fields if f not in data]
    if missing:
        known = ", ".join(map(repr, data)) if isinstance(data, dict) else type(data).__name__
        raise ConfigError(f"the state check lists field(s) {', '.join(map(repr, missing))} the state lacks ({known})")
    return {f: data[f] for f in fields}


def state_hash(state: Any, fields: list[str] | None = None) -> str:
    """Canonical SHA-256 of a (part of a) JSON-able state."""
    text = json.dumps(state_view(state, fields), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def unfilled_state_checks(spec: dict[str, Any]) -> int:
    """How many state checks of a verifier spec (``"all"`` walked) lack ``expected_hash``."""
    if spec.get("kind") == "state":
        return int("expected_hash" not in spec)
    return sum(unfilled_state_checks(sub) for sub in spec.get("checks", ()))


def fill_expected_state(spec: dict[str, Any], state: Any) -> dict[str, Any]:
    """A copy of ``spec`` with ``expected_hash`` of ``state`` in every state check that lacks one.

    Args:
        spec: A verifier spec; ``"all"`` checks are walked, other kinds are returned as they are.
        state: The expected final state (the replayed reference's, see the module docstring),
            hashed over each check's own ``fields``.

    Returns:
        The new spec (``spec`` is not modified); checks that had a hash keep it.

    Raises:
        ConfigError: A check lists a field the state lacks (a family bug: synthesis stops).
    """
    if spec.get("kind") == "state":
        if "expected_hash" in spec:
            return spec
        return {**spec, "expected_hash": state_hash(state, spec.get("fields"))}
    if "checks" in spec:
        return {**spec, "checks": [fill_expected_state(sub, state) for sub in spec["checks"]]}
    return spec


def verify_state(spec: dict[str, Any], answer: Any, state: Any) -> Verdict:
    """``{"kind": "state", "expected_hash": "…", "fields": [...] | null}``.

    A check without ``expected_hash`` fails (closed): it was never filled by the replay; so does
    a final state without a listed field (a write deleted it).
    """
    if state is None:
        return Verdict.fail("no final state to check")
    expected = spec.get("expected_hash")
    if expected is None:
        return Verdict.fail(UNFILLED)
    try:
        got = state_hash(state, spec.get("fields"))
    except ConfigError as exc:
        return Verdict.fail(str(exc))
    if got == expected:
        return Verdict.ok("final state matches the reference")
    return Verdict.fail("final state differs from the reference solution's")
