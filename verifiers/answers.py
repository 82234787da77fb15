"""Answer checks: exact, numeric with tolerance, set, multiset and JSON structure.

Each accepts every correct answer and rejects everything else:

* ``exact``: equal after canonicalisation (JSON round trip; strings stripped and, unless
  ``case_sensitive``, case-folded). No substring or "contains" matching: that is how padded
  answers farm reward.
* ``numeric``: one number within ``rel_tol``/``abs_tol`` of the expected value. Numeric
  strings ("3.50", "1e3") are accepted; a list of several numbers is not.
* ``set`` / ``multiset``: the same elements (order free), duplicates ignored resp. counted.
  An answer listing extra elements fails, so "list everything" never passes.
* ``json``: the same structure (keys, lengths, types) with numbers compared by tolerance and
  lists compared in order unless the spec lists a path in ``unordered``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

from toolgym.verifiers.verdict import Verdict, register_verifier


def canonical(value: Any, case_sensitive: bool = False) -> Any:
    """A canonical, hashable form of a JSON-able value."""
    if isinstance(value, str):
        s = " ".join(value.split())
        return s if case_sensitive else s.casefold()
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return float(value) if isinstance(value, float) and not value.is_integer() else int(value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), canonical(v, case_sensitive)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(canonical(v, case_sensitive) for v in value)
    return json.dumps(value, sort_keys=True, default=str)


def as_number(value: Any) -> float | None:
    """A finite float from a number or numeric string; None otherwise (bools are not numbers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        x = float(value)
    elif isinstance(value, str):
        try:
            x = float(value.strip().replace(",", ""))
        except ValueError:
            return None
    else:
        return None
    return x if math.isfinite(x) else None


def close(a: float, b: float, rel_tol: float, abs_tol: float) -> bool:
    """Tolerant float equality."""
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)


@register_verifier("exact")
def verify_exact(spec: dict[str, Any], answer: Any, state: Any) -> Verdict:
    """``{"kind": "exact", "expected": …, "case_sensitive": false}``."""
    cs = spec.get("case_sensitive", False)
    if canonical(answer, cs) == canonical(spec["expected"], cs):
        return Verdict.ok()
    return Verdict.fail("answer differs from the expected value")


@register_verifier("numeric")
def verify_numeric(spec: dict[str, Any], answer: Any, state: Any) -> Verdict:
    """``{"kind": "numeric", "expected": x, "rel_tol": 1e-6, "abs_tol": 0}``."""
    x = as_number(answer)
    if x is None:
        return Verdict.fail(f"answer is not a single number: {str(answer)[:60]!r}")
    if close(x, float(spec["expected"]), spec.get("rel_tol", 1e-6), spec.get("abs_tol", 0.0)):
        return Verdict.ok()
    return Verdict.fail("number is outside the tolerance")


def _elements(answer: Any) -> list[Any] | None:
    return list(answer) if isinstance(answer, list | tuple) else None


@register_verifier("set")
def verify_set(spec: dict[str, Any], answer: Any, state: Any) -> Verdict:
    """``{"kind": "set", "expected": [...]}``: same elements, order and duplicates free."""
    got = _elements(answer)
    if got is None:
        return Verdict.fail("answer is not a list")
    cs = spec.get("case_sensitive", False)
    want = {canonical(v, cs) for v in spec["expected"]}
    have = {canonical(v, cs) for v in got}
    if have == want:
        return Verdict.ok()
    return Verdict.fail(f"{len(have - want)} unexpected and {len(want - have)} missing elements")


@register_verifier("multiset")
def verify_multiset(spec: dict[str, Any], answer: Any, state: Any) -> Verdict:
    """``{"kind": "multiset", "expected": [...]}``: same elements with multiplicity, any order."""
    got = _elements(answer)
    if got is None:
        return Verdict.fail("answer is not a list")
    cs = spec.get("case_sensitive", False)
    if Counter(canonical(v, cs) for v in got) == Counter(canonical(v, cs) for v in spec["expected"]):
        return Verdict.ok()
    return Verdict.fail("elements differ as a multiset")


def _match(want: Any, got: Any, path: str, spec: dict[str, Any]) -> str | None:
    rel, abs_ = spec.get("rel_tol", 1e-6), spec.get("abs_tol", 0.0)
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return f"{path or 'answer'}: expected an object"
        if set(want) != set(got):
            return f"{path or 'answer'}: keys {sorted(got)} != {sorted(want)}"
        for k in want:
            err = _match(want[k], got[k], f"{path}.{k}" if path else k, spec)
            if err:
                return err
        return None
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return f"{path or 'answer'}: expected a list of {len(want)}"
        if path in spec.get("unordered", ()):
            cs = spec.get("case_sensitive", False)
            ok = Counter(canonical(v, cs) for v in want) == Counter(canonical(v, cs) for v in got)
            return None if ok else f"{path}: elements differ"
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            err = _match(w, g, f"{path}[{i}]", spec)
            if err:
                return err
        return None
    if isinstance(want, int | float) and not isinstance(want, bool):
        x = as_number(got)
        return None if x is not None and close(x, float(want), rel, abs_) else f"{path}: wrong number"
    cs = spec.get("case_sensitive", False)
    return None if canonical(want, cs) == canonical(got, cs) else f"{path or 'answer'}: wrong value"


@register_verifier("json")
def verify_json(spec: dict[str, Any], answer: Any, state: Any) -> Verdict:
    """``{"kind": "json", "expected": {...}, "unordered": ["path", …], "rel_tol": …}``."""
    err = _match(spec["expected"], answer, "", spec)
    return Verdict.fail(err) if err else Verdict.ok()
