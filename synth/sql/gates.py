"""The sql family's gate answers, and a bound on the chance that a random one passes.

Random answers (``meta["gate"]``, one spec per answer column, see :mod:`toolgym.synth.sql.tasks`)
are drawn column by column, independently: ``from`` (a value of a world column: a sample without
replacement when ``distinct``, else uniform draws), ``sum`` (k random values' sum, estimated from at
most 16 of them), ``int`` / ``num`` (uniform), ``month`` (a sorted sample of the column's months).

:func:`random_pass_bound` is an upper bound on the chance such an answer passes the table check,
which :meth:`SQLAnalyst.random_pass` reports (synthesis drops a task whose chance is above the
difficulty's limit, and runs one sampled random try instead of eight). An answer passes only if every
expected column j is matched by some answer column of its kind (text, or a number) holding the same
multiset, so

    P(pass) <= min_j  sum_i P(answer column i's multiset == expected column j)

over the columns whose terms are all known: a ``from`` column (``int`` alike, its range as the pool)
matches with at most ``n! / prod(m_v!) * prod(c_v ** m_v) / D``, where ``m_v`` counts value v in
the expected column, ``c_v`` the pool values within the tolerance of v, and ``D`` the number of
draws (``N ** n``, or ``N! / (N - n)!`` without replacement); a ``month`` column with
``1 / C(M, n)``; a ``sum`` or ``num`` column with each value's largest chance to the ``n``
times the orders (:func:`_spread_chance`). The bound is reported only when it is at most
:data:`BOUND_MAX`; otherwise (or with no column left) it is None and the sampled gate runs its
eight tries.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import Counter
from typing import Any

from toolgym.spec import TaskSpec
from toolgym.synth.sql import engine
from toolgym.synth.sql.queries import ident
from toolgym.synth.sql.world import SqlWorld
from toolgym.verifiers.answers import as_number, canonical

#: The bound is reported only when it is at most this (below every difficulty's limit, so it decides
#: the task ships); a looser bound says little (a sum column has no term), and the sampled gate decides.
BOUND_MAX = 1e-4
_WORDS = ("north", "gold", "pending", "standard", "closed", "express", "alpha", "other")


def pool(world: SqlWorld, table: str, column: str) -> list[Any]:
    """A column's distinct non-null values as ``run_sql`` shows them (sorted; cached per world)."""
    return list(_pool(world, table, column))


def _pool(world: SqlWorld, table: str, column: str) -> tuple[Any, ...]:
    """:func:`pool`, the cached tuple itself (not copied: the gates draw from it thousands of times)."""
    key = ("pool", table, column)
    if key not in world.cache:
        sql = f"SELECT DISTINCT {ident(column)} FROM {ident(table)} WHERE {ident(column)} IS NOT NULL ORDER BY 1"
        world.cache[key] = [engine.cell(v) for (v,) in world.database().con.execute(sql).fetchall()]
    frozen = ("pool-tuple", table, column)
    if frozen not in world.cache:
        world.cache[frozen] = tuple(world.cache[key])
    values: tuple[Any, ...] = world.cache[frozen]
    return values


def _months(world: SqlWorld, table: str, column: str) -> list[str]:
    """The months (``YYYY-MM``) of a date column's pool, sorted (cached per world)."""
    key = ("months", table, column)
    if key not in world.cache:
        world.cache[key] = sorted({str(v)[:7] for v in _pool(world, table, column)})
    months: list[str] = world.cache[key]
    return months


def draw(world: SqlWorld, spec: dict[str, Any], n: int, rng: random.Random) -> list[Any]:
    """``n`` values of one answer column for the random gate (see ``meta["gate"]`` in tasks)."""
    if "from" in spec:
        values = _pool(world, *spec["from"])
        if spec.get("distinct") and len(values) >= n:
            return rng.sample(values, n)
        return [rng.choice(values) for _ in range(n)]
    if "sum" in spec:
        table, column, k = spec["sum"]
        values = _pool(world, table, column)
        m = min(max(1, k), 16)  # k random values' sum, estimated from m of them (k may be hundreds)
        return [round(sum(rng.choices(values, k=m)) * max(1, k) / m, 2) for _ in range(n)]
    if "int" in spec:
        return [rng.randint(*spec["int"]) for _ in range(n)]
    if "num" in spec:
        return [round(rng.uniform(*spec["num"]), 2) for _ in range(n)]
    months = _months(world, *spec["month"])
    return sorted(rng.sample(months, min(n, len(months)))) + [months[-1]] * max(0, n - len(months))


def typed(value: Any, column: str) -> Any:
    """A gate value as the column's ``submit`` type wants it (so a gate answer is never a schema error).

    A schema error would not end the gate's episode: it would run to the turn limit, scoring 0
    the slow way, and test the schema instead of the verifier.
    """
    if column == "text":
        return value if isinstance(value, str) else str(value)
    if not isinstance(value, int | float) or isinstance(value, bool):
        return 0
    return int(round(value)) if column == "integer" else float(value)


def bluff_value(how: str, column: str, rng: random.Random) -> Any:
    """One value written without the world (see ``meta["bluff"]`` in tasks), of the column's type."""
    if column != "text":
        x = rng.randint(0, 30) if how == "int" else round(rng.uniform(0, 1000), 2)
        return typed(x, column)
    if how.startswith("id:"):
        return f"{how[3:]}-{rng.randint(1, 999):05d}"
    if how == "int":
        return rng.randint(0, 30)
    if how == "num":
        return round(rng.uniform(0, 1000), 2)
    if how == "month":
        return f"2026-{rng.randint(1, 12):02d}"
    return rng.choice(_WORDS)


def _index(values: list[Any]) -> tuple[list[float], Counter[Any]]:
    """A pool as ``_hits`` searches it: its numbers sorted, and its other values' canonical forms counted."""
    numbers = sorted(y for p in values if (y := as_number(p)) is not None)
    return numbers, Counter(canonical(p) for p in values if not isinstance(p, int | float))


def _pool_index(world: SqlWorld, table: str, column: str) -> tuple[list[float], Counter[Any]]:
    """:func:`_index` of a column's pool (cached per world)."""
    key = ("pool-index", table, column)
    if key not in world.cache:
        world.cache[key] = _index(list(_pool(world, table, column)))
    index: tuple[list[float], Counter[Any]] = world.cache[key]
    return index


def _hits(value: Any, index: tuple[list[float], Counter[Any]], abs_tol: float) -> int:
    """How many pool values the verifier would take for ``value`` (numbers within the tolerance).

    ``index`` is the pool's :func:`_index`: a number is compared with the pool numbers in a window
    around it (found by bisection, a little wider than the tolerance, then checked exactly), a text
    looked up by its canonical form.
    """
    numbers, texts = index
    x = as_number(value)
    if x is None:
        return texts.get(canonical(value), 0)
    tol = abs_tol + 1e-9 * abs(x)
    lo, hi = bisect.bisect_left(numbers, x - 2 * tol - 1e-9), bisect.bisect_right(numbers, x + 2 * tol + 1e-9)
    return sum(1 for y in numbers[lo:hi] if abs(x - y) <= tol)


def _column_chance(world: SqlWorld, spec: dict[str, Any], want: list[Any], abs_tol: float) -> float | None:
    """Upper bound on P(a column drawn by ``spec`` holds ``want`` as a multiset); None if unknown."""
    n = len(want)
    if "month" in spec:
        months = _months(world, *spec["month"])
        return 1 / math.comb(len(months), n) if n <= len(months) else None
    if "sum" in spec or "num" in spec:
        return _spread_chance(world, spec, want, abs_tol)
    if "from" in spec:
        size = len(_pool(world, *spec["from"]))
        index, distinct = _pool_index(world, *spec["from"]), spec.get("distinct") and size >= n
    elif "int" in spec:
        lo, hi = spec["int"]
        size, distinct = max(0, hi - lo + 1), False
        index = _index(list(range(lo, hi + 1)))
    else:
        return None
    counts = Counter(canonical(v) for v in want)
    ways = math.factorial(n)
    for m in counts.values():
        ways //= math.factorial(m)
    first = {canonical(v): v for v in want}
    for key, m in counts.items():
        ways *= _hits(first[key], index, abs_tol) ** m
    draws = math.perm(size, n) if distinct else size**n
    return min(1.0, ways / draws) if draws else None


def _widest_window(numbers: list[float], width: float) -> int:
    """The most values of sorted ``numbers`` that one closed interval of ``width`` holds (two pointers)."""
    best, lo = 0, 0
    for hi, y in enumerate(numbers):
        while y - numbers[lo] > width:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def _spread_chance(world: SqlWorld, spec: dict[str, Any], want: list[Any], abs_tol: float) -> float | None:
    """Upper bound on P(a ``sum`` or ``num`` column holds ``want``): each value's chance to the ``n``, times the orders.

    A value hits ``x`` when it lies within the tolerance ``t`` (plus 0.005 of its rounding to cents)
    of it. ``num``: uniform on ``[lo, hi]``, so at most ``(2t + 0.01) / (hi - lo)``. ``sum``:
    ``round(S * k / m, 2)`` with ``S`` the sum of ``m`` uniform draws from the pool; given the
    other ``m - 1`` draws, the first must fall in an interval of width ``(2t + 0.01) * m / k``, so
    the chance is at most the pool's most crowded such interval over the pool's size. Draws are
    independent, so a multiset of ``n`` values matches with at most ``n! / prod(m_v!) * p ** n``.
    None when a value is not a number.
    """
    if any(as_number(v) is None for v in want):
        return None
    tol = abs_tol + 1e-9 * max(abs(as_number(v) or 0.0) for v in want) + 0.005
    if "num" in spec:
        lo, hi = spec["num"]
        p = min(1.0, 2 * tol / (hi - lo)) if hi > lo else 1.0
    else:
        table, column, k = spec["sum"]
        numbers = _pool_index(world, table, column)[0]
        if not numbers:
            return None
        m = min(max(1, k), 16)
        # rounded up to 1e-4 (a wider window only loosens the bound): about one key per (k, tolerance)
        width = math.ceil(2 * tol * m / max(1, k) * 1e4) / 1e4
        key = ("pool-window", table, column, width)
        if key not in world.cache:
            world.cache[key] = _widest_window(numbers, width)
        p = world.cache[key] / len(numbers)
    ways = math.factorial(len(want))
    for c in Counter(canonical(v) for v in want).values():
        ways //= math.factorial(c)
    return min(1.0, ways * p ** len(want))


def random_pass_bound(world: SqlWorld, task: TaskSpec) -> float | None:
    """An upper bound on the chance that a random answer passes (see the module docstring), or None."""
    spec, specs, types = task.verifier_spec, task.meta["gate"], task.tool_config["columns"]
    rows, tol = spec["expected"], float(spec.get("abs_tol", 0.01))
    bounds = []
    numeric = [t != "text" for t in types]  # integers and numbers compare as one kind: numbers
    for j in range(len(types)):
        want = [r[j] for r in rows]
        terms = [_column_chance(world, specs[i], want, tol) for i in range(len(types)) if numeric[i] == numeric[j]]
        if terms and all(x is not None for x in terms):
            bounds.append(min(1.0, sum(x for x in terms if x is not None)))
    bound = min(bounds) if bounds else None
    return bound if bound is not None and bound <= BOUND_MAX else None
