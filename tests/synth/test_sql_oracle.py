"""SQL analyst: every kind's expected answer (DuckDB running the generated SQL) against a second,
literal implementation in plain Python over the world's columns (NULL layer included)."""

import random
from collections import Counter, defaultdict

import pytest

from toolgym.synth import get_family
from toolgym.verifiers.verdict import verify

FAM = get_family("sql")


def rows_of(world, table):
    cols = world.columns(table)
    names = list(cols)
    return [dict(zip(names, vals, strict=True)) for vals in zip(*cols.values(), strict=True)]


def in_range(row, date):
    if not date:
        return True
    v = row[date["column"]]
    return v is not None and date["from"] <= str(v)[:10] <= date["to"]


def total_of(values):
    kept = [v for v in values if v is not None]
    return sum(kept) if kept else None


def joined(world, q, rows, fk, parent):
    """(row, its parent row) for the rows whose reference finds a row (an inner join)."""
    by_id = {r["id"]: r for r in rows_of(world, parent["table"])}
    return [(r, by_id[r[fk]]) for r in rows if r[fk] in by_id]


def oracle(world, params):  # noqa: C901 - one branch per kind, read side by side with queries.py
    q, kind = params["query"], params["kind"]
    rows = [r for r in rows_of(world, q["table"]) if in_range(r, q.get("date"))]
    eq = q.get("eq")
    if eq:
        rows = [r for r in rows if r[eq[0]] == eq[1]]
    m = q.get("measure")
    if kind == "filter":
        return [[r["id"], r[m]] for r in rows if r[m] is not None and r[m] >= q["min"]]
    if kind == "total":
        return [[total_of(r[m] for r in rows)]]
    if kind == "top1":
        sums = defaultdict(list)
        for r in rows:
            if r[q["fk"]] is not None and r[m] is not None:
                sums[r[q["fk"]]].append(r[m])
        key, vals = min(sums.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
        return [[key, sum(vals)]]
    if kind == "group":
        groups = defaultdict(list)
        for r in rows:
            groups[r[q["by"]]].append(r[m])
        return [[k, len(v), total_of(v)] for k, v in groups.items()]
    if kind == "join_group":
        groups = defaultdict(list)
        for r, p in joined(world, q, rows, q["fk"], q["parent"]):
            groups[p[q["parent"]["by"]]].append(r[m])
        means = {k: [x for x in v if x is not None] for k, v in groups.items()}
        return [[k, len(v), sum(means[k]) / len(means[k])] for k, v in groups.items() if means[k]]
    if kind == "top":
        label, groups = q["parent"].get("label"), defaultdict(list)
        for r, p in joined(world, q, [r for r in rows if r[m] is not None], q["fk"], q["parent"]):
            groups[(p["id"], p[label] if label else None)].append(r[m])
        kept = [(k, sum(v)) for k, v in groups.items() if len(v) >= (q.get("min_count") or 0)]
        kept.sort(key=lambda kv: (-kv[1], kv[0][0]))
        return [[k[0], *([k[1]] if label else []), t] for k, t in kept[: q["k"]]]
    if kind == "top_per_group":
        best = {}
        for r in rows:
            if r[m] is not None:
                k = r[q["by"]]
                if k not in best or (-r[m], r["id"]) < (-best[k][m], best[k]["id"]):
                    best[k] = r
        return [[k, r["id"], r[m]] for k, r in best.items()]
    if kind == "share":
        other = q["other"]
        pairs = [(r, o) for r, o in joined(world, q, rows, q["other_fk"], other) if o[other["eq"][0]] == other["eq"][1]]
        groups = defaultdict(list)
        for r, p in joined(world, q, [r for r, _ in pairs], q["fk"], q["parent"]):
            groups[p[q["parent"]["by"]]].append(r[m])
        grand = total_of(total_of(v) for v in groups.values())
        return [
            [k, len(v), sum(x is None for x in v), total_of(v), 100.0 * total_of(v) / grand] for k, v in groups.items()
        ]
    assert kind == "monthly", kind
    parent = q["parent"]
    months = defaultdict(list)
    for r, p in joined(world, q, rows, q["fk"], parent):
        if p[parent["eq"][0]] == parent["eq"][1]:
            months[str(r[q["date"]["column"]])[:7]].append(r[m])
    out, running = [], None
    for month in sorted(months):
        t = total_of(months[month])
        running = t if running is None else running + (t or 0)
        out.append([month, t, running])
    return out


@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
def test_every_expected_answer_matches_a_literal_python_reading(difficulty):
    kinds = Counter()
    for seed in range(3):
        world = FAM.make_world(100 + seed, difficulty)
        for k in range(8):
            draft = FAM.make_task(world, difficulty, random.Random(k))
            if draft is None:
                continue
            kinds[draft.params["kind"]] += 1
            spec = draft.verifier_spec
            answer = oracle(world, draft.params)
            shaped = answer[0][0] if spec["shape"] == "scalar" else answer[0] if spec["shape"] == "row" else answer
            verdict = verify(spec, shaped, None)
            assert verdict.passed, (draft.params, verdict.reason, spec["expected"][:3], answer[:3])
    assert sum(kinds.values()) >= 12 and len(kinds) >= 2, kinds
