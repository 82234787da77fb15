"""The result-table check: rows as a multiset, numbers within a tolerance, columns in any order.

``{"kind": "table", "expected": [[…], …], "shape": "table" | "row" | "scalar", "ordered": false,
"rel_tol": 1e-9, "abs_tol": 0.01}``.

* **Shape.** A ``table`` answer is a list of rows (lists), a ``row`` answer one list, a
  ``scalar`` answer one value; a row or scalar is checked as a one-row table. Every row must
  have as many values as the expected rows: an extra or a missing column fails.
* **Columns in any order.** The answer passes if *some* order of its columns makes it equal to
  the expected table. Candidates are found per expected column, among the answer's columns
  holding the same values (as a multiset); the expected order is tried first, so the usual case
  costs one comparison.
* **Rows.** A multiset (duplicates counted, order free) unless ``ordered`` is true (the
  question asked for an order), then row by row.
* **Cells.** Numbers by tolerance (``math.isclose`` with ``rel_tol``/``abs_tol``: by default a
  policy may round to two decimals), strings by the one name rule (NFC, trimmed, case kept),
  null only equals null. A boolean is never a number.

An empty expected table passes only an empty answer (tasks do not ask for empty results).
"""

from __future__ import annotations

import itertools
from typing import Any

from toolgym.verifiers.answers import as_number, canonical, close
from toolgym.verifiers.verdict import Verdict


def _rows(answer: Any, shape: str) -> list[list[Any]] | None:
    """The answer as a list of rows, or None when it does not have the shape."""
    if shape == "scalar":
        return None if isinstance(answer, list | tuple | dict) else [[answer]]
    if shape == "row":
        return [list(answer)] if isinstance(answer, list | tuple) else None
    if not isinstance(answer, list | tuple) or not all(isinstance(r, list | tuple) for r in answer):
        return None
    return [list(r) for r in answer]


def _norm(value: Any) -> tuple[int, Any]:
    """A cell's comparable form, computed once: ``(type tag, value)``; numbers as floats, strings canonical."""
    x = as_number(value)
    if x is not None:
        return (1, x)
    if value is None:
        return (0, None)
    if isinstance(value, bool):
        return (3, value)
    try:
        return (2, canonical(value))
    except TypeError:
        return (4, repr(value))  # not JSON data: equals nothing expected


def _key(row: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
    """A sort key putting equal rows (numbers rounded to the tolerance's grid) next to each other."""
    return [(t, round(v, 2)) if t == 1 else (t, repr(v)) for t, v in row]


class _Cells:
    """Cell equality under one spec's tolerance, on normalized cells (:func:`_norm`)."""

    def __init__(self, spec: dict[str, Any]):
        self.rel, self.abs = float(spec.get("rel_tol", 1e-9)), float(spec.get("abs_tol", 0.01))

    def rows(self, want: list[tuple[int, Any]], got: list[tuple[int, Any]]) -> bool:
        for (tw, w), (tg, g) in zip(want, got, strict=True):
            if tw != tg or (w != g if tw != 1 else not close(w, g, self.rel, self.abs)):
                return False
        return True

    def multiset(self, want: list[Any], got: list[Any]) -> bool:
        """Same rows with multiplicity: sorted pairing first, then a greedy match (tolerance straddles)."""
        a, b = sorted(want, key=_key), sorted(got, key=_key)
        if all(self.rows(x, y) for x, y in zip(a, b, strict=True)):
            return True
        left = list(got)
        for w in want:
            hit = next((i for i, g in enumerate(left) if self.rows(w, g)), None)
            if hit is None:
                return False
            left.pop(hit)
        return True


def verify_table(spec: dict[str, Any], answer: Any, state: Any) -> Verdict:
    """Check a result table (see the module docstring)."""
    shape = spec.get("shape", "table")
    want: list[list[Any]] = spec["expected"]
    got = _rows(answer, shape)
    if got is None:
        return Verdict.fail(f"answer is not a {shape} ({'a list of rows' if shape == 'table' else 'one value'})")
    if len(got) != len(want):
        return Verdict.fail(f"{len(got)} rows, expected {len(want)}")
    if not want:
        return Verdict.ok()
    width = len(want[0])
    if any(len(r) != width for r in got):
        return Verdict.fail(f"every row must have {width} values")
    cells = _Cells(spec)
    want, got = [[_norm(v) for v in r] for r in want], [[_norm(v) for v in r] for r in got]
    ordered = bool(spec.get("ordered"))
    if (ordered and all(cells.rows(w, g) for w, g in zip(want, got, strict=True))) or (
        not ordered and cells.multiset(want, got)
    ):
        return Verdict.ok()  # the columns in the expected order: the usual case, one comparison
    candidates = []
    for j in range(width):  # the answer's columns that hold expected column j's values
        col = [r[j] for r in want]
        fits = [i for i in range(width) if cells.multiset([[v] for v in col], [[r[i]] for r in got])]
        if not fits:
            return Verdict.fail(f"no answer column holds the values of expected column {j + 1}")
        candidates.append(fits)
    for perm in itertools.product(*candidates):
        if len(set(perm)) < width or perm == tuple(range(width)):
            continue
        moved = [[r[i] for i in perm] for r in got]
        if ordered:
            if all(cells.rows(w, g) for w, g in zip(want, moved, strict=True)):
                return Verdict.ok()
        elif cells.multiset(want, moved):
            return Verdict.ok()
    return Verdict.fail("rows differ" + (" (or their order)" if spec.get("ordered") else ""))


__all__ = ["verify_table"]
