"""The query language of code tasks, and the generator's own evaluation of it.

A task's public parameters hold a small structured query (the structured form of its prompt):

* a *ref* ``{"t": "F" | "E" | "A", "col": name}`` names a column of the fact table, or of the
  entity / actor row a fact row points to (a join through the foreign key);
* a *condition* ``{"ref": ref, "op": op, "value": v}`` with ``op`` one of ``eq ne gt ge lt le``
  or ``months`` (the row's date falls in one of the listed ``YYYY-MM`` months);
* a *measure* ``{"refs": [ref, …]}`` is the product of its refs (one column, or quantity times
  unit price);
* statistics are ``sum mean median max min`` (median of an even count: mean of the two middle
  values, as ``statistics.median``).

This module evaluates queries on the world's **typed rows** in memory. The reference solution
is different code on different input: Python source generated from the same query
(:mod:`.programs`), run in the sandbox on the **rendered files**. The pipeline requires the two
to agree (the reference must score 1), so each checks the other and the file rendering; the
tests add a third, literal reading of the files.

Number-theory tasks (``numbers``) have predicates ``[name, arg…]``: ``mod`` (n % a == r),
``digit_sum_mod`` (digit sum divisible by b), ``has_digit`` / ``no_digit`` (decimal digit d),
``popcount`` (exactly k one-bits), ``coprime`` (gcd(n, m) == 1), ``not_square``.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from toolgym.synth.code.world import CodeWorld

Row = dict[str, Any]
OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}


def fk_col(world: CodeWorld, role: str, table: str = "F") -> str:
    """The column of ``table`` that points at the ``role`` table (memoized on the world)."""
    key = (role, table)
    col = world.memo.get(key)
    if col is None:
        col = world.memo[key] = next(c.name for c in world.roles[table].by_kind("fk") if c.ref == role)
    return col


def value(world: CodeWorld, row: Row, ref: dict[str, str]) -> Any:
    """A fact row's value for a ref (following the foreign key for E/A refs)."""
    if ref["t"] == "F":
        return row[ref["col"]]
    return world.by_id[ref["t"]][row[fk_col(world, ref["t"])]][ref["col"]]


def holds(world: CodeWorld, row: Row, cond: dict[str, Any]) -> bool:
    """Whether a fact row meets a condition."""
    v = value(world, row, cond["ref"])
    if v is None:  # a missing value meets no condition (the prompt's rule: such rows are left out)
        return False
    if cond["op"] == "months":
        return v[:7] in cond["value"]
    return bool(OPS[cond["op"]](v, cond["value"]))


def selected(world: CodeWorld, where: list[dict[str, Any]], need: dict[str, Any] | None = None) -> list[Row]:
    """The fact rows meeting every condition and, with ``need`` (a measure), having its values.

    Rows lacking a value the question uses are left out (the rule every messy prompt states).
    """
    masks = [_mask(world, c) for c in where]
    masks += [_present(world, ref) for ref in (need or {}).get("refs", [])]
    rows = world.rows["F"]
    if not masks:
        return list(rows)
    return [r for r, *ok in zip(rows, *masks, strict=True) if all(ok)]


def _mask(world: CodeWorld, cond: dict[str, Any]) -> list[bool]:
    """Whether each fact row meets ``cond``, memoized on the world.

    A task's soundness checks evaluate the same conditions many times over (each dropped in turn).
    """
    key = ("cond", json.dumps(cond, sort_keys=True))
    mask = world.memo.get(key)
    if mask is None:
        mask = world.memo[key] = [holds(world, r, cond) for r in world.rows["F"]]
    return mask


def _present(world: CodeWorld, ref: dict[str, str]) -> list[bool]:
    """Whether each fact row has a value for ``ref`` (memoized)."""
    key = ("present", ref["t"], ref["col"])
    mask = world.memo.get(key)
    if mask is None:
        mask = world.memo[key] = [value(world, r, ref) is not None for r in world.rows["F"]]
    return mask


def measure(world: CodeWorld, row: Row, m: dict[str, Any]) -> float:
    """A measure's value on a fact row."""
    return math.prod(float(value(world, row, ref)) for ref in m["refs"])


def stat(values: list[float], how: str) -> float:
    """One statistic of a non-empty list."""
    fns: dict[str, Callable[[list[float]], float]] = {
        "sum": math.fsum,
        "mean": statistics.fmean,
        "median": statistics.median,
        "max": max,
        "min": min,
    }
    return float(fns[how](values))


def grouped(world: CodeWorld, q: dict[str, Any], extra: Iterable[dict[str, Any]] = ()) -> dict[str, float]:
    """``agg`` of the measure (or the row count) per group key, over rows meeting the conditions."""
    buckets: dict[str, list[float]] = {}
    for r in selected(world, [*q["where"], *extra], q.get("measure")):
        m = measure(world, r, q["measure"]) if q.get("measure") else 1.0
        buckets.setdefault(str(value(world, r, q["group"])), []).append(m)
    agg = q["agg"]
    return {k: float(len(v)) if agg == "count" else stat(v, agg) for k, v in buckets.items()}


def ranked(totals: dict[str, float], best: str) -> list[tuple[str, float]]:
    """Groups from best to worst (``best`` is ``max`` or ``min``); ties: the name that sorts first."""
    return sorted(totals.items(), key=lambda kv: (-kv[1] if best == "max" else kv[1], kv[0]))


def compare(world: CodeWorld, q: dict[str, Any]) -> tuple[set[str], float]:
    """The groups a comparison selects, and the smallest gap to its threshold (for tie safety)."""
    if q["mode"] == "periods":  # sum or count in period A strictly above period B; no rows = 0
        a, b = grouped(world, q, [q["a"]]), grouped(world, q, [q["b"]])
        gaps = {g: a.get(g, 0.0) - b.get(g, 0.0) for g in set(a) | set(b)}
    else:  # group mean strictly above the mean over all selected rows
        rows = selected(world, q["where"], q["measure"])
        overall = statistics.fmean(measure(world, r, q["measure"]) for r in rows)
        gaps = {g: v - overall for g, v in grouped(world, q).items()}
    return {g for g, d in gaps.items() if d > 0}, min((abs(d) for d in gaps.values()), default=0.0)


def simulate(world: CodeWorld, q: dict[str, Any]) -> dict[str, Any]:
    """Replay the event log in time order: adds always apply, a remove larger than the level is rejected.

    Returns, per entity name: the final level, the number of rejected removes, and the time an
    accepted remove first brought the level to 0 (entities that never ran out are absent).
    """
    e, log = world.roles["E"], world.roles["L"]
    level_col = e.by_kind("level")[0].name
    key, name = e.key, world.name_of("E")
    add, remove = log.by_kind("event")[0].values
    qty = log.by_kind("int")[0].name
    level = {r[key]: r[level_col] for r in world.rows["E"]}
    rejected: Counter[str] = Counter()
    first_empty: dict[str, str] = {}
    for ev in sorted(world.rows["L"], key=lambda x: x["ts"]):
        if q.get("until") and ev["ts"][:10] > q["until"]:
            break
        k = ev[key]
        if ev["event"] == add:
            level[k] += ev[qty]
        elif ev[qty] > level[k]:
            rejected[k] += 1
        else:
            level[k] -= ev[qty]
            if level[k] == 0:
                first_empty.setdefault(k, ev["ts"])
    names = {r[key]: r[name] for r in world.rows["E"]}
    return {
        "final": {names[k]: v for k, v in level.items()},
        "rejected": {names[k]: rejected[k] for k in level},
        "first_empty": {names[k]: ts for k, ts in first_empty.items()},
    }


def pairs(world: CodeWorld, q: dict[str, Any]) -> int:
    """How many sets of ``size`` entities meet the rules.

    Rules: pairwise different ``cat``; largest minus smallest ``num`` at most ``max_spread``;
    and, when ``min_col`` is set, every member's ``min_col`` at least ``min_value``.
    """
    rows = [r for r in world.rows["E"] if q.get("min_col") is None or r[q["min_col"]] >= q["min_value"]]
    n = 0
    for combo in itertools.combinations(rows, q["size"]):
        if len({r[q["cat"]] for r in combo}) < q["size"]:
            continue
        nums = [r[q["num"]] for r in combo]
        n += max(nums) - min(nums) <= q["max_spread"]
    return n


def truth(pred: list[Any], lo: int, hi: int) -> list[bool]:
    """Whether each integer of ``[lo, hi]`` meets one predicate.

    Digit sums, digit sets and bit counts come from tables built by recurrences
    (``f(n) = f(n // 10) + n % 10``), never from strings: the reference program uses ``str`` and
    ``bin``, so the two implementations share nothing but the question.
    """
    name, *args = pred
    span = range(lo, hi + 1)
    if name == "mod":
        return [n % args[0] == args[1] for n in span]
    if name == "coprime":
        return [math.gcd(n, args[0]) == 1 for n in span]
    if name == "not_square":
        return [math.isqrt(n) ** 2 != n for n in span]
    table = [0] * (hi + 1)
    if name == "popcount":
        for n in range(1, hi + 1):
            table[n] = table[n >> 1] + (n & 1)
        return [table[n] == args[0] for n in span]
    if name == "digit_sum_mod":
        for n in range(1, hi + 1):
            table[n] = table[n // 10] + n % 10
        return [table[n] % args[0] == 0 for n in span]
    bit = 1 << args[0]  # has_digit / no_digit: a bitmask of the digits each n contains
    for n in range(1, hi + 1):
        table[n] = table[n // 10] | (1 << (n % 10)) if n >= 10 else 1 << n
    table[0] = 1
    return [bool(table[n] & bit) == (name == "has_digit") for n in span]


def numbers(q: dict[str, Any], drop: int | None = None) -> int:
    """How many integers in ``[lo, hi]`` meet every predicate (but the ``drop``-th, if given)."""
    columns = [truth(p, q["lo"], q["hi"]) for i, p in enumerate(q["preds"]) if i != drop]
    return sum(map(all, zip(*columns, strict=True)))
