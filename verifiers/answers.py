"""Answer checks: exact, numeric with tolerance, set, multiset and JSON structure.

Each accepts every correct answer and rejects everything else:

* ``exact``: equal after canonicalisation (:func:`canonical`). No substring or "contains"
  matching: that is how padded answers farm reward.
* ``numeric``: one JSON number within ``rel_tol``/``abs_tol`` of the expected value. With
  ``"integer": true`` the answer must be a JSON integer (``3``, not ``3.0``), exactly what the
  integer ``submit`` schema accepts. Booleans, numeric strings, NaN and lists are not numbers.
* ``set`` / ``multiset``: the same elements (order free), duplicates ignored resp. counted.
  An answer listing extra elements fails, so "list everything" never passes.
* ``json``: the same structure (keys, lengths, types) with numbers compared by tolerance and
  lists compared in order unless the spec lists a path in ``unordered``; object keys are names
  (NFC, trimmed, as everywhere).

Types are strict everywhere (defence in depth behind the strict ``submit`` schemas of
:mod:`toolgym.envs.strict`): a boolean is never a number (``True`` does not equal ``1`` in any
answer shape), a string is never a number, a dict never equals a list of pairs. Strings follow
the one name rule of :mod:`toolgym.envs.naming` (NFC, surrounding whitespace trimmed, case
matters); a string miss names the closest expected string in the reason (reasons are for logs
and eval reports, never shown to the policy during an episode). Numbers compare by value, so
``2`` and ``2.0`` are the same number where the schema allows both.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from toolgym.envs import naming
from toolgym.verifiers.verdict import Verdict


class _Flag:
    """A canonical boolean: equal only to itself, never to a number (``True == 1`` in Python)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


_TRUE, _FALSE = _Flag("true"), _Flag("false")


def canonical(value: Any) -> Any:
    """A canonical, hashable form of a JSON-able value, with JSON's types kept apart.

    Strings become their canonical name form; booleans become markers that equal no number;
    integral floats become ints (``2.0`` and ``2`` are one number); objects become frozensets
    of (key, value) pairs and arrays tuples, so an object never equals an array.

    Raises:
        TypeError: For a value that is not JSON-able data.
    """
    if isinstance(value, str):
        return naming.canon(value)
    if isinstance(value, bool):
        return _TRUE if value else _FALSE
    if value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return frozenset((naming.canon(str(k)), canonical(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return tuple(canonical(v) for v in value)
    raise TypeError(f"not JSON data: {type(value).__name__}")


def _canonical_or_none(value: Any) -> Any:
    try:
        return canonical(value)
    except TypeError:
        return _Flag("not JSON")  # equals nothing, so the answer fails


def as_number(value: Any) -> float | None:
    """A finite float from a JSON number; None otherwise (booleans and strings are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        x = float(value)
    except OverflowError:  # an int past the float range is no answer anyone expects
        return None
    return x if math.isfinite(x) else None


def close(a: float, b: float, rel_tol: float, abs_tol: float) -> bool:
    """Tolerant float equality."""
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)


def _hint(got: Any, expected: list[Any]) -> str:
    """``"; did you mean 'X'?"`` for a string answer near an expected string, else ``""``."""
    if not isinstance(got, str):
        return ""
    return naming.did_you_mean(got, [e for e in expected if isinstance(e, str)])


def verify_exact(spec: dict[str, Any], answer: Any, state: Any) -> Verdict:
    """``{"kind": "exact", "expected": …}``: equal under :func:`canonical`."""
    if _canonical_or_none(answer) == canonical(spec["expected"]):
        return Verdict.ok()
    return Verdict.fail("answer differs from the expected value" + _hint(answer, [spec["expected"]]))


def verify_numeric(spec: dict[str, Any], answer: Any, state: Any) -> Verdict:
    """``{"kind": "numeric", "expected": x, "rel_tol": 1e-6, "abs_tol": 0, "integer": false}``."""
    x = as_number(answer)
    if x is None:
        return Verdict.fail(f"answer is not a single number: {str(answer)[:60]!r}")
    if spec.get("integer") and not isinstance(answer, int):
        return Verdict.fail(f"answer is not an integer: {answer!r}")
    if close(x, float(spec["expected"]), spec.get("rel_tol", 1e-6), spec.get("abs_tol", 0.0)):
        return Verdict.ok()
    return Verdict.fail("number is outside the tolerance")


def _elements(answer: Any) -> list[Any] | None:
    return list(answer) if isinstance(answer, list | tuple) else None


def verify_set(spec: dict[str, Any], answer: Any, state: Any) -> Verdict:
    """``{"kind": "set", "expected": [...]}``: same elements, order and duplicates free."""
    got = _elements(answer)
    if got is None:
        return Verdict.fail("answer is not a list")
    want = {canonical(v) for v in spec["expected"]}
    have = {_canonical_or_none(v) for v in got}
    if have == want:
        return Verdict.ok()
    extra = next((v for v in got if _canonical_or_none(v) not in want), None)
    hint = _hint(extra, spec["expected"])
    return Verdict.fail(f"{len(have - want)} unexpected and {len(want - have)} missing elements{hint}")


def verify_multiset(spec: dict[str, Any], answer: Any, state: Any) -> Verdict:
    """``{"kind": "multiset", "expected": [...]}``: same elements with multiplicity, any order."""
    got = _elements(answer)
    if got is None:
        return Verdict.fail("answer is not a list")
    if Counter(_canonical_or_none(v) for v in got) == Counter(canonical(v) for v in spec["expected"]):
        return Verdict.ok()
    return Verdict.fail("elements differ as a multiset")


def _match(want: Any, got: Any, path: str, spec: dict[str, Any]) -> str | None:
    rel, abs_ = spec.get("rel_tol", 1e-6), spec.get("abs_tol", 0.0)
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return f"{path or 'answer'}: expected an object"
        keyed = {naming.canon(k): v for k, v in got.items()}  # keys are names: the one name rule
        if len(keyed) != len(got):
            return f"{path or 'answer'}: two keys are the same name once trimmed and normalized"
        if {naming.canon(k) for k in want} != set(keyed):
            return f"{path or 'answer'}: keys {sorted(got)} != {sorted(want)}"
        for k in want:
            err = _match(want[k], keyed[naming.canon(k)], f"{path}.{k}" if path else k, spec)
            if err:
                return err
        return None
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return f"{path or 'answer'}: expected a list of {len(want)}"
        if path in spec.get("unordered", ()):
            ok = Counter(canonical(v) for v in want) == Counter(_canonical_or_none(v) for v in got)
            return None if ok else f"{path}: elements differ"
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            err = _match(w, g, f"{path}[{i}]", spec)
            if err:
                return err
        return None
    if isinstance(want, int | float) and not isinstance(want, bool):
        x = as_number(got)
        return None if x is not None and close(x, float(want), rel, abs_) else f"{path or 'answer'}: wrong number"
    if canonical(want) == _canonical_or_none(got):
        return None
    return f"{path or 'answer'}: wrong value" + _hint(got, [want])


def verify_json(spec: dict[str, Any], answer: Any, state: Any) -> Verdict:
    """``{"kind": "json", "expected": {...}, "unordered": ["path", …], "rel_tol": …}``."""
    err = _match(spec["expected"], answer, "", spec)
    return Verdict.fail(err) if err else Verdict.ok()
