"""State checks: the final world state against the state the reference solution produced.

Verification by outcome, as tau2-bench does it: the reference solution's tool calls are
replayed on a fresh copy of the world at synthesis time, and the canonical hash of the
resulting state is stored in the spec. An episode passes when its final state hashes the
same, whatever order or route its calls took; the answer argument is not consulted.
``fields`` restricts the comparison to the parts of the state the task is about, so reads
(or harmless writes elsewhere) do not matter; collateral damage to a listed field fails.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from toolgym.verifiers.verdict import Verdict


def state_view(state: Any, fields: list[str] | None = None) -> Any:
    """The JSON-able part of a state that a check compares."""
    data = state.to_json() if hasattr(state, "to_json") else state
    if fields is None:
        return data
    return {f: data.get(f) for f in fields}


def state_hash(state: Any, fields: list[str] | None = None) -> str:
    """Canonical SHA-256 of a (part of a) JSON-able state."""
    text = json.dumps(state_view(state, fields), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def verify_state(spec: dict[str, Any], answer: Any, state: Any) -> Verdict:
    """``{"kind": "state", "expected_hash": "…", "fields": [...] | null}``."""
    if state is None:
        return Verdict.fail("no final state to check")
    if state_hash(state, spec.get("fields")) == spec["expected_hash"]:
        return Verdict.ok("final state matches the reference")
    return Verdict.fail("final state differs from the reference solution's")
