"""One builder per task kind (see :mod:`toolgym.synth.sql.tasks` for the kinds and the plan they return).

Each builder draws tables, columns and values from the world, writes the question and hands the
plan to :func:`~toolgym.synth.sql.tasks.finish`, which runs the query and keeps the draft only if
its result fits; a builder returns None when the world has nothing it needs.
"""

from __future__ import annotations

from collections.abc import Callable

from toolgym.spec import TaskDraft
from toolgym.synth.sql.queries import ident, lit
from toolgym.synth.sql.tasks import FALLBACK, KINDS, Builder, avg_rows, date_text, finish, parent_of, show, tq
from toolgym.synth.sql.world import Column

MISSING = "rows with no {m} recorded are left out"


def no_ref(fk: Column) -> str:
    """`` (rows whose `fk` is empty are left out)`` for a reference that may be null, else nothing."""
    return f" (rows whose {tq(fk.name)} is empty are left out)" if fk.nullable else ""


def filter_rows(b: Builder) -> TaskDraft | None:
    """d1: ``id`` and a measure of the rows with an enum value and the measure at least a bound."""
    for t in b.facts() + [t for t in b.w.tables.values() if t.noun and not t.refs]:
        e, m = b.pick(b.enums(t)), b.pick(b.measures(t))
        v = b.value(t, e, least=4) if e else None
        if m is None or v is None:
            continue
        rows = b.all(f"SELECT {ident(m.name)} FROM {ident(t.name)} WHERE {ident(e.name)} = {lit(v)}")
        vals = sorted((x for (x,) in rows if x is not None), reverse=True)
        k = b.rng.randint(2, 12)
        if len(vals) <= k:
            continue
        q = {"table": t.name, "eq": [e.name, v], "measure": m.name, "min": vals[k - 1]}
        text = (
            f"List every row of {tq(t.name)} whose {tq(e.name)} is {show(v)} and whose {tq(m.name)} is at least "
            f"{vals[k - 1]}: give each one's {tq('id')} and {tq(m.name)}."
        )
        plan = {
            "kind": "filter",
            "query": q,
            "text": text,
            "shape": "table",
            "ordered": False,
            "columns": ["id", m.name],
            "gate": [{"from": [t.name, "id"], "distinct": True}, {"from": [t.name, m.name]}],
            "bluff": [f"id:{b.prefix(t.name)}", "num"],
            "tables": [t.name],
        }
        return finish(b, plan)
    return None


def total(b: Builder) -> TaskDraft | None:
    """d1: the sum of a money column over an enum value and a date range (a scalar)."""
    for t in b.facts():
        cash = [c for c in b.measures(t) if c.kind == "money"]  # sums of small integers are guessable
        e, m, d = b.pick(b.enums(t)), b.pick(cash), b.pick(b.dates(t))
        v = b.value(t, e) if e else None
        date = b.date_range(t, d) if d else None
        if m is None or v is None or date is None:
            continue
        q = {"table": t.name, "eq": [e.name, v], "measure": m.name, "date": date}
        text = (
            f"What is the total {tq(m.name)} of the rows of {tq(t.name)} whose {tq(e.name)} is {show(v)} and "
            f"{date_text(date)}? Rows with no {tq(m.name)} recorded add nothing."
        )
        n = max(1, t.rows // 4)
        plan = {
            "kind": "total",
            "query": q,
            "text": text,
            "shape": "scalar",
            "ordered": False,
            "columns": [f"the total {m.name}"],
            "gate": [{"sum": [t.name, m.name, n]}],
            "bluff": ["num"],
            "tables": [t.name],
        }
        return finish(b, plan)
    return None


def top1(b: Builder) -> TaskDraft | None:
    """d2: the referenced key whose rows have the largest total measure (a row)."""
    for t in b.facts():
        fk, m = b.pick(t.refs), b.pick(b.measures(t, money=True))
        if m is None or fk.ref == t.name:
            continue
        q = {"table": t.name, "fk": fk.name, "measure": m.name}
        text = (
            f"Which {tq(fk.name)} of {tq(t.name)} has the largest total {tq(m.name)} over its rows of "
            f"{tq(t.name)} ({MISSING.format(m=tq(m.name))}; on a tie, the smallest {tq(fk.name)})? "
            f"Give the {tq(fk.name)} and that total."
        )
        plan = {
            "kind": "top1",
            "query": q,
            "text": text,
            "shape": "row",
            "ordered": False,
            "columns": [fk.name, "the total"],
            "gate": [{"from": [t.name, fk.name], "distinct": True}, {"sum": [t.name, m.name, avg_rows(b, t, fk)]}],
            "bluff": [f"id:{b.prefix(str(fk.ref))}", "num"],
            "tables": [t.name],
        }
        return finish(b, plan)
    return None


def group(b: Builder) -> TaskDraft | None:
    """d2: per value of an enum column, the count and the total of a measure within a date range."""
    for t in b.facts():
        e, m, d = b.pick(b.enums(t)), b.pick(b.measures(t, money=True)), b.pick(b.dates(t))
        date = b.date_range(t, d) if d else None
        if e is None or m is None or date is None:
            continue
        q = {"table": t.name, "by": e.name, "measure": m.name, "date": date}
        text = (
            f"For each {tq(e.name)} of the rows of {tq(t.name)} {date_text(date)}: give the {tq(e.name)}, the "
            f"number of such rows and the total of their {tq(m.name)} (rows with no {tq(m.name)} add nothing; "
            f"leave out values with no such row)."
        )
        n = max(1, t.rows // max(2, len(b.values(t.name, e.name))) // 2)
        plan = {
            "kind": "group",
            "query": q,
            "text": text,
            "shape": "table",
            "ordered": False,
            "columns": [e.name, "the number of rows", f"the total {m.name}"],
            "gate": [
                {"from": [t.name, e.name], "distinct": True},
                {"int": [0, t.rows // 2]},
                {"sum": [t.name, m.name, n]},
            ],
            "bluff": ["text", "int", "num"],
            "tables": [t.name],
        }
        return finish(b, plan)
    return None


def join_group(b: Builder) -> TaskDraft | None:
    """d3: rows filtered by an enum value, grouped by an enum of the table a reference points into."""
    for t in b.facts():
        for fk in b.rng.sample(t.refs, len(t.refs)):
            p = parent_of(b, fk)
            pe, e, m = b.pick(b.enums(p)), b.pick(b.enums(t)), b.pick(b.measures(t))
            v = b.value(t, e, least=6) if e else None
            if pe is None or v is None or m is None or p.name == t.name:
                continue
            q = {
                "table": t.name,
                "fk": fk.name,
                "parent": {"table": p.name, "by": pe.name},
                "eq": [e.name, v],
                "measure": m.name,
            }
            text = (
                f"Take the rows of {tq(t.name)} whose {tq(e.name)} is {show(v)} and group them by the {tq(pe.name)} of "
                f"the {tq(p.name)} row their {tq(fk.name)} refers to{no_ref(fk)}. For each group give the "
                f"{tq(pe.name)}, the number of rows, and the average {tq(m.name)} over the rows that have one."
            )
            plan = {
                "kind": "join_group",
                "query": q,
                "text": text,
                "shape": "table",
                "ordered": False,
                "columns": [f"{p.name}.{pe.name}", "the number of rows", f"the average {m.name}"],
                "gate": [
                    {"from": [p.name, pe.name], "distinct": True},
                    {"int": [0, t.rows // 4]},
                    {"from": [t.name, m.name]},
                ],
                "bluff": ["text", "int", "num"],
                "tables": [t.name, p.name],
            }
            return finish(b, plan)
    return None


def _top(b: Builder, having: bool) -> TaskDraft | None:
    """d3/d4: the k referenced rows with the largest totals, ordered (d4: in a date range, ``HAVING``)."""
    for t in b.facts():
        fk, m, d = b.pick(t.refs), b.pick(b.measures(t, money=True)), b.pick(b.dates(t))
        p = parent_of(b, fk)
        date = b.date_range(t, d, (0.5, 0.9)) if having and d else None
        if m is None or p.name == t.name or p.rows < 8 or (having and date is None):
            continue
        k, least = b.rng.randint(3, 5), (b.rng.randint(2, 3) if having else 0)
        label = [p.label] if p.label else []
        q = {"table": t.name, "fk": fk.name, "parent": {"table": p.name, "label": p.label}, "measure": m.name}
        q |= {"date": date, "min_count": least, "k": k}
        scope = f"{tq(t.name)} rows" + (f" {date_text(date)}" if date else "")
        among = f", among the {tq(p.name)} rows with at least {least} such rows" if least else ""
        text = (
            f"List the {k} rows of {tq(p.name)} with the largest total {tq(m.name)} over the {scope} that refer to "
            f"them through {tq(fk.name)}{among}, largest first (on a tie, the smaller {tq('id')} first; "
            f"{MISSING.format(m=tq(m.name))}). Give each one's {tq('id')}"
            + (f", {tq(p.label)}" if p.label else "")
            + " and total."
        )
        plan = {
            "kind": "top",
            "query": q,
            "text": text,
            "shape": "table",
            "ordered": True,
            "columns": ["id", *label, "the total"],
            "gate": [{"from": [p.name, "id"], "distinct": True}]
            + [{"from": [p.name, c]} for c in label]
            + [{"sum": [t.name, m.name, avg_rows(b, t, fk)]}],
            "bluff": [f"id:{b.prefix(p.name)}", *(["text"] * len(label)), "num"],
            "tables": [t.name, p.name],
            "probe": [t.name, fk.name] if having else None,  # rows per key, before a HAVING on their count
        }
        return finish(b, plan)
    return None


def top_per_group(b: Builder) -> TaskDraft | None:
    """d4: per enum value, the row with the largest measure within a date range (``ROW_NUMBER``)."""
    for t in b.facts():
        e, m, d = b.pick(b.enums(t)), b.pick(b.measures(t)), b.pick(b.dates(t))
        date = b.date_range(t, d) if d else None
        if e is None or m is None or date is None:
            continue
        q = {"table": t.name, "by": e.name, "measure": m.name, "date": date}
        text = (
            f"For each {tq(e.name)} of the rows of {tq(t.name)} {date_text(date)}, which of those rows has the "
            f"largest {tq(m.name)}? On a tie take the smallest {tq('id')}; {MISSING.format(m=tq(m.name))}. Give "
            f"the {tq(e.name)}, the row's {tq('id')} and its {tq(m.name)}."
        )
        plan = {
            "kind": "top_per_group",
            "query": q,
            "text": text,
            "shape": "table",
            "ordered": False,
            "columns": [e.name, "id", m.name],
            "gate": [
                {"from": [t.name, e.name], "distinct": True},
                {"from": [t.name, "id"]},
                {"from": [t.name, m.name]},
            ],
            "bluff": ["text", f"id:{b.prefix(t.name)}", "num"],
            "tables": [t.name],
            "probe": [t.name, e.name],
        }
        return finish(b, plan)
    return None


def share(b: Builder) -> TaskDraft | None:
    """d5: two joins, a filter on one; per group count, missing, total and share of the grand total."""
    for t in b.facts():
        refs = [r for r in t.refs if r.ref != t.name]
        if len(refs) < 2:
            continue
        fk, ofk = b.rng.sample(refs, 2)
        p, o = parent_of(b, fk), parent_of(b, ofk)
        pe, oe, m, d = b.pick(b.enums(p)), b.pick(b.enums(o)), b.pick(b.measures(t, money=True)), b.pick(b.dates(t))
        ov = b.value(o, oe) if oe else None
        date = b.date_range(t, d, (0.5, 0.95)) if d else None
        if pe is None or ov is None or m is None or date is None:
            continue
        q = {"table": t.name, "fk": fk.name, "parent": {"table": p.name, "by": pe.name}, "measure": m.name}
        q |= {"other_fk": ofk.name, "other": {"table": o.name, "eq": [oe.name, ov]}, "date": date}
        text = (
            f"Consider the rows of {tq(t.name)} {date_text(date)} whose {tq(ofk.name)} refers to a {tq(o.name)} row "
            f"with {tq(oe.name)} {show(ov)}. Group them by the {tq(pe.name)} of the {tq(p.name)} row their "
            f"{tq(fk.name)} refers to{no_ref(fk)}. For each group give the {tq(pe.name)}, the number of rows, how "
            f"many of them have no {tq(m.name)} recorded, the total {tq(m.name)}, and that total as a percentage of "
            "the total over all groups."
        )
        n = max(1, t.rows // 8)
        plan = {
            "kind": "share",
            "query": q,
            "text": text,
            "shape": "table",
            "ordered": False,
            "columns": [
                f"{p.name}.{pe.name}",
                "the number of rows",
                "the rows missing it",
                "the total",
                "the percentage",
            ],
            "gate": [{"from": [p.name, pe.name], "distinct": True}, {"int": [0, t.rows // 4]}, {"int": [0, 6]}]
            + [{"sum": [t.name, m.name, n]}, {"num": [0, 100]}],
            "bluff": ["text", "int", "int", "num", "num"],
            "tables": [t.name, p.name, o.name],
            "probe": [o.name, oe.name],
        }
        return finish(b, plan)
    return None


def monthly(b: Builder) -> TaskDraft | None:
    """d5: per month of a date range, the total over rows whose referenced row has a value, and a running total."""
    for t in b.facts():
        fk, m = b.pick([r for r in t.refs if r.ref != t.name]), b.pick(b.measures(t, money=True))
        d = b.pick(b.dates(t))
        p = parent_of(b, fk) if fk else None
        pe = b.pick(b.enums(p)) if p else None
        v = b.value(p, pe) if p and pe else None
        date = b.date_range(t, d, (0.6, 0.95)) if d else None
        if fk is None or p is None or pe is None or v is None or m is None or d is None or date is None:
            continue
        if date["from"][:7] == date["to"][:7]:  # one month: no running total to speak of
            continue
        q = {"table": t.name, "fk": fk.name, "parent": {"table": p.name, "eq": [pe.name, v]}, "measure": m.name}
        q["date"] = date
        text = (
            f"Take the rows of {tq(t.name)} {date_text(date)} whose {tq(fk.name)} refers to a {tq(p.name)} row with "
            f"{tq(pe.name)} {show(v)}. For each month (by {tq(d.name)}, written YYYY-MM) that has such rows, give the "
            f"month, the total {tq(m.name)} of that month's rows, and the running total from the first month up to "
            f"it; months in calendar order. Rows with no {tq(m.name)} recorded add nothing."
        )
        n = max(1, t.rows // 10)
        plan = {
            "kind": "monthly",
            "query": q,
            "text": text,
            "shape": "table",
            "ordered": True,
            "columns": ["the month", "the month's total", "the running total"],
            "gate": [{"month": [t.name, d.name]}, {"sum": [t.name, m.name, n]}, {"sum": [t.name, m.name, 3 * n]}],
            "bluff": ["month", "num", "num"],
            "tables": [t.name, p.name],
            "probe": [p.name, pe.name],
        }
        return finish(b, plan)
    return None


BUILDERS: dict[str, Callable[[Builder], TaskDraft | None]] = {
    "filter": filter_rows,
    "total": total,
    "top1": top1,
    "group": group,
    "join_group": join_group,
    "top": lambda b: _top(b, False),
    "top_per_group": top_per_group,
    "top_having": lambda b: _top(b, True),
    "share": share,
    "monthly": monthly,
}


def draft(b: Builder) -> TaskDraft | None:
    """A task of the difficulty's kinds (in a random order), else of the easier kinds that follow."""
    own = list(KINDS.get(b.d, KINDS[1]))
    b.rng.shuffle(own)
    easiest = min(FALLBACK.index(k) for k in own)
    order = own + FALLBACK[:easiest][::-1]  # the next easier kinds first
    for kind in order:
        out = BUILDERS[kind](b)
        if out is not None:
            return out
    return None


__all__ = ["BUILDERS", "draft"]
