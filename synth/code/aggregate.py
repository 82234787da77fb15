"""Kinds over the fact table: filter (with joins), then aggregate: ``stat``, ``count``, ``argmax``, ``compare``.

Conditions are drawn from the world's own columns: category equality or inequality, numeric
thresholds at data quantiles, month ranges on the date, and (from difficulty 2) columns of the
entity or actor row a fact points to. Each builder returns ``None`` when its draw is unsound
(see :mod:`.tasks`), and the caller draws again.
"""

from __future__ import annotations

import math
import random
from typing import Any

from toolgym.synth.code import prompts as pr
from toolgym.synth.code import queries as qy
from toolgym.synth.code.world import CodeWorld

TOL = 0.01  # stated in every prompt with a rounded answer


class Built(dict[str, Any]):
    """What a kind builder returns.

    Keys: ``q`` (the query), ``answer`` (its type), ``expected``, ``text`` (the question),
    ``roles`` (tables read) and optionally ``fields`` (a record's shape, for the prompt),
    ``runner_up`` (the best wrong group, for the perturbation gate) and ``record`` (its submit).
    """


def quantile(values: list[Any], q: float) -> Any:
    """A value of the data at quantile ``q`` (an actual data value, so thresholds look natural)."""
    xs = sorted(values)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _cond(world: CodeWorld, rng: random.Random, kind: str, used: set[str], difficulty: int) -> dict[str, Any] | None:
    """One random condition of a kind (``f_cat f_num f_date e_cat e_num a_cat``), or None."""
    role = {"f": "F", "e": "E", "a": "A"}[kind[0]]
    if role not in world.roles:
        return None
    table = world.roles[role]
    cols = [c for c in table.cols if c.name in world.columns(role) and c.name not in used]
    if kind.endswith("cat"):
        cols = [c for c in cols if c.kind == "cat"]
    elif kind.endswith("num"):
        cols = [c for c in cols if c.kind in ("int", "float")]
    else:
        cols = [c for c in cols if c.kind == "date"]
    if not cols:
        return None
    col = rng.choice(cols)
    ref = {"t": role, "col": col.name}
    values = [r[col.name] for r in world.rows[role] if r[col.name] is not None]
    if col.kind == "cat":
        op = "ne" if difficulty >= 3 and rng.random() < 0.3 else "eq"
        return {"ref": ref, "op": op, "value": rng.choice(sorted(set(values)))}
    if col.kind == "date":
        months = world.months()
        span = rng.choice((1, 3, 3, 6)) if difficulty >= 2 else 3
        first = rng.randrange(len(months) - span + 1)
        return {"ref": ref, "op": "months", "value": months[first : first + span]}
    threshold = quantile(values, rng.uniform(0.25, 0.75))
    if col.unit is not None and world.messy("units"):
        # A half step between data values: a value read back from another unit (450 cents ->
        # 4.499999…) falls on the same side of the threshold as the exact value.
        threshold = round(threshold + 0.5 * 10**-col.dec, col.dec + 1)
    return {"ref": ref, "op": rng.choice(("gt", "ge", "lt", "le")), "value": threshold}


def _where(world: CodeWorld, rng: random.Random, n: int, difficulty: int, avoid: set[str]) -> list[dict[str, Any]]:
    kinds = (
        ["f_cat", "f_num", "f_date"]
        + (["e_cat", "e_num"] if difficulty >= 2 else [])
        + (["a_cat"] if difficulty >= 3 else [])
    )
    out: list[dict[str, Any]] = []
    used = set(avoid)
    for kind in rng.sample(kinds, len(kinds)):
        if len(out) == n:
            break
        c = _cond(world, rng, kind, used, difficulty)
        if c is not None:
            used.add(c["ref"]["col"])
            out.append(c)
    return out


def _bites(where: list[dict[str, Any]], answer_of: Any, expected: Any) -> bool:
    """True when dropping any one condition changes the answer."""
    return all(answer_of(where[:i] + where[i + 1 :]) != expected for i in range(len(where)))


def _measure(world: CodeWorld, rng: random.Random, difficulty: int, need_additive: bool) -> dict[str, Any] | None:
    cols = [c for c in world.roles["F"].by_kind("int", "float") if c.additive or not need_additive]
    if world.theme.derived and difficulty >= 4 and rng.random() < 0.5:
        _, f_col, e_col = world.theme.derived
        return {"refs": [{"t": "F", "col": f_col}, {"t": "E", "col": e_col}]}
    return {"refs": [{"t": "F", "col": rng.choice(cols).name}]} if cols else None


def _rows_text(world: CodeWorld) -> str:
    return f"{world.roles['F'].plural} in `{world.file_of['F']}`"


def build_stat(world: CodeWorld, rng: random.Random, difficulty: int, n: int) -> Built | None:
    """A statistic of a measure over the selected rows."""
    m = _measure(world, rng, difficulty, need_additive=False)
    if m is None:
        return None
    col = world.roles[m["refs"][0]["t"]].col(m["refs"][0]["col"])
    stats = ["mean"] + (["sum"] if col.additive else [])
    if difficulty >= 2 and (col.fine or len(m["refs"]) > 1):
        stats += ["median", "max", "min"]
    how = rng.choice(stats)
    where = _where(world, rng, n, difficulty, {r["col"] for r in m["refs"]})

    def answer_of(w: list[dict[str, Any]]) -> float:
        vals = [qy.measure(world, r, m) for r in qy.selected(world, w, m)]
        return round(qy.stat(vals, how), 6) if vals else float("nan")

    rows = qy.selected(world, where, m)
    if not 5 <= len(rows) <= 0.85 * len(world.rows["F"]):
        return None
    expected = answer_of(where)
    if abs(expected) < 0.05 or not all(
        abs(answer_of(where[:i] + where[i + 1 :]) - expected) > 5 * TOL for i in range(len(where))
    ):
        return None
    q = {"kind": "stat", "where": where, "measure": m, "stat": how}
    text = pr.question(
        "stat",
        rng,
        rows=_rows_text(world),
        where=pr.where_text(world, where, rng),
        stat=pr.STAT_WORDS[how],
        measure=pr.measure_text(world, m),
    )
    return Built(q=q, answer="number", expected=expected, text=text, roles=roles(q))


def build_count(world: CodeWorld, rng: random.Random, difficulty: int, n: int) -> Built | None:
    """The number of rows meeting every condition, and their total of an additive measure.

    A record ``{count, total}``, not the count alone: a count is one of a few hundred integers
    (a random plausible guess passed 1 time in 120 at difficulty 1, 1 in 200 at 2, 1 in 450 at
    3), the total one of tens of thousands of 2-decimal values, so the pair is guessed about
    1 time in a million. Rows lacking the measure are left out of both (the stated rule).
    """
    m = _measure(world, rng, difficulty, need_additive=True)
    if m is None:
        return None
    where = _where(world, rng, n + 1, difficulty, {r["col"] for r in m["refs"]})

    def answer_of(w: list[dict[str, Any]]) -> tuple[int, float]:
        rows = qy.selected(world, w, m)
        return len(rows), round(math.fsum(qy.measure(world, r, m) for r in rows), 6)

    count, total = answer_of(where)
    if len(where) < 2 or not 3 <= count <= len(world.rows["F"]) - 3 or not _bites(where, answer_of, (count, total)):
        return None
    q = {"kind": "count", "where": where, "measure": m}
    text = pr.question(
        "count", rng, rows=_rows_text(world), where=pr.where_text(world, where, rng), measure=pr.measure_text(world, m)
    )
    fields = '{"count": <the number of rows>, "total": <their total ' + pr.measure_text(world, m) + ">}"
    expected = {"count": count, "total": total}
    return Built(
        q=q, answer="record", expected=expected, text=text, roles=roles(q), fields=fields, record="count_total"
    )


def _group(world: CodeWorld, rng: random.Random, difficulty: int, names_only: bool) -> dict[str, str] | None:
    options = [{"t": "E", "col": world.name_of("E")}]
    if "A" in world.roles and difficulty >= 3:
        options.append({"t": "A", "col": world.name_of("A")})
    if not names_only and difficulty >= 2:
        options += [
            {"t": r, "col": c.name} for r in ("E", "A") if r in world.roles for c in world.roles[r].by_kind("cat")
        ]
    return rng.choice(options)


def build_argmax(world: CodeWorld, rng: random.Random, difficulty: int, n: int) -> Built | None:
    """The best group (record), or at low difficulty the date with the largest total (string)."""
    by_date = difficulty <= 2 and rng.random() < 0.4
    m = _measure(world, rng, difficulty, need_additive=True)
    aggs = ["sum", "count"] + ([] if by_date else ["mean"])
    agg = rng.choice(aggs) if m is not None else "count"
    group = {"t": "F", "col": "date"} if by_date else _group(world, rng, difficulty, names_only=False)
    if group is None:
        return None
    best = rng.choice(("max", "min")) if agg == "mean" else "max"
    where = _where(world, rng, max(0, n - 1) if by_date else n, difficulty, {group["col"]})
    q = {
        "kind": "argmax",
        "where": where,
        "group": group,
        "measure": m if agg != "count" else None,
        "agg": agg,
        "best": best,
    }

    def answer_of(w: list[dict[str, Any]]) -> tuple[str, float]:
        top = qy.ranked(qy.grouped(world, {**q, "where": w}), best)
        if not top:
            return ("", 0.0)
        return (top[0][0], 0.0 if by_date else round(top[0][1], 6))  # a date answer is the date alone

    top = qy.ranked(qy.grouped(world, q), best)
    # A clear margin, or (counts, from difficulty 3) an exact tie that the stated rule settles:
    # the tied name that sorts first.
    tie = agg == "count" and difficulty >= 3 and len(top) > 1 and top[0][1] == top[1][1]
    if len(top) < 3 or top[0][1] == 0:
        return None
    if not tie and abs(top[0][1] - top[1][1]) < max(2 * TOL, 0.005 * abs(top[0][1])):
        return None
    if agg == "mean" and qy.grouped(world, {**q, "agg": "count"})[top[0][0]] < 5:
        return None  # the best average of a two-row group is luck, not a finding
    expected_pair = answer_of(where)
    if not _bites(where, answer_of, expected_pair):
        return None
    agg_text = "number of rows" if agg == "count" else f"{pr.STAT_WORDS[agg]} of {pr.measure_text(world, m or {})}"
    text = pr.question(
        "argmax",
        rng,
        rows=_rows_text(world),
        where=pr.where_text(world, where, rng),
        group=pr.ref_text(world, group),
        agg=agg_text,
        best="largest" if best == "max" else "smallest",
    )
    if by_date:
        return Built(
            q=q,
            answer="string",
            expected=top[0][0],
            text=text + " Give that date (YYYY-MM-DD).",
            roles=roles(q),
            runner_up=top[1][0],
        )
    fields = (
        '{"name": <the group\'s value of '
        + pr.ref_text(world, group)
        + '>, "value": <its '
        + ("row count" if agg == "count" else pr.STAT_WORDS[agg].split(" (")[0])
        + ">}"
    )
    expected = {"name": top[0][0], "value": round(top[0][1], 6)}
    return Built(
        q=q,
        answer="record",
        expected=expected,
        text=text,
        roles=roles(q),
        fields=fields,
        runner_up=top[1][0],
        record="group_value",
    )


def build_compare(world: CodeWorld, rng: random.Random, difficulty: int, n: int) -> Built | None:
    """Groups (entity or actor names) selected by a per-group comparison."""
    group = _group(world, rng, difficulty, names_only=True)
    if group is None:
        return None
    periods = difficulty >= 4
    m = _measure(world, rng, difficulty, need_additive=periods)
    agg = ("sum" if m is not None and rng.random() < 0.7 else "count") if periods else "mean"
    if m is None and agg != "count":
        return None
    where = _where(world, rng, n - 1, difficulty, {group["col"], "date"})
    q: dict[str, Any] = {
        "kind": "compare",
        "where": where,
        "group": group,
        "measure": m if agg != "count" else None,
        "agg": agg,
        "mode": "periods" if periods else "overall",
    }
    measure = pr.measure_text(world, m) if m else ""
    if periods:
        months = world.months()
        span = rng.choice((1, 3))
        a, b = rng.sample(range(len(months) // span), 2)
        q["a"], q["b"] = (
            {"ref": {"t": "F", "col": "date"}, "op": "months", "value": months[i * span : (i + 1) * span]}
            for i in (a, b)
        )
        what = "number of rows" if agg == "count" else f"total {measure}"
        period = [pr.cond_text(world, c).split(" falls ", 1)[1] for c in (q["a"], q["b"])]
        rule = (
            f"Keep the groups whose {what} for `date` {period[0]} is strictly greater than for `date` "
            f"{period[1]} (a group with no rows in a period counts 0 there)."
        )
    else:
        rule = (
            f"Keep the groups whose average {measure} is strictly greater than the average {measure} "
            "over all of those rows together."
        )
    chosen, gap = qy.compare(world, q)
    domain = len(world.rows[group["t"]])
    if gap < 0.005 or not 2 <= len(chosen) <= domain - 2:
        return None
    if not _bites(where, lambda w: qy.compare(world, {**q, "where": w})[0], chosen):
        return None
    text = pr.question(
        "compare",
        rng,
        rows=_rows_text(world),
        where=pr.where_text(world, where, rng),
        group=pr.ref_text(world, group),
        rule=rule,
    )
    return Built(q=q, answer="names", expected=sorted(chosen), text=text, roles=roles(q))


def roles(q: dict[str, Any]) -> list[str]:
    """The tables a query reads (fact table first)."""
    refs = [c["ref"] for c in q.get("where", [])] + list((q.get("measure") or {}).get("refs", []))
    refs += [q["group"]] if q.get("group") else []
    return ["F"] + sorted({r["t"] for r in refs} - {"F"})
