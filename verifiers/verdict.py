"""Verdicts and the registry of verifier kinds.

A verifier is a pure function ``(spec, answer, state) -> Verdict``: ``spec`` is the task's
verifier spec (pure data, stored in the dataset), ``answer`` the argument of ``submit`` as
JSON-able data, ``state`` whatever the episode's world looks like at the end (a read-only
world for read-only families, the episode's own mutable copy otherwise). The RL reward and
the eval metric are the same call, :func:`verify`.

Verifier kinds are lines of the central table (``toolgym.VERIFIERS``, lazy ``"module:attr"``
entries); a spec names its kind in ``spec["kind"]``. Scores are in [0, 1]; the verifiers shipped
here are binary on purpose: partial credit for "most constraints met" is what bluffing policies learn to farm.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from toolgym import VERIFIERS


class Verdict(BaseModel):
    """The outcome of one verification."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    score: float = Field(ge=0.0, le=1.0)
    passed: bool
    reason: str

    @classmethod
    def ok(cls, reason: str = "correct") -> Verdict:
        """A full pass."""
        return cls(score=1.0, passed=True, reason=reason)

    @classmethod
    def fail(cls, reason: str) -> Verdict:
        """A zero score, with the first thing that was wrong."""
        return cls(score=0.0, passed=False, reason=reason)


VerifierFn = Callable[[dict[str, Any], Any, Any], Verdict]


def register_verifier(kind: str) -> Callable[[VerifierFn], VerifierFn]:
    """Register a verifier function under ``kind`` (plugins; shipped kinds are lines of the central table).

    Raises:
        DuplicateRegistrationError: If ``kind`` is already registered.
    """

    def add(fn: VerifierFn) -> VerifierFn:
        VERIFIERS.register(kind, fn)
        return fn

    return add


def verify(spec: dict[str, Any], answer: Any, state: Any = None) -> Verdict:
    """Score ``answer`` (and the final ``state``) against a verifier spec.

    Raises:
        UnknownNameError: If ``spec["kind"]`` is not a registered verifier kind.
    """
    fn: VerifierFn = VERIFIERS.get(str(spec.get("kind")))
    return fn(spec, answer, state)


def verify_all(spec: dict[str, Any], answer: Any, state: Any) -> Verdict:
    """Every sub-check must pass: ``{"kind": "all", "checks": [spec, …]}``."""
    for sub in spec["checks"]:
        v = verify(sub, answer, state)
        if not v.passed:
            return v
    return Verdict.ok("all checks passed")
