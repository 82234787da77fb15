"""Reference programs as source text: the Python an analyst would type into the interpreter.

From a task's public parameters (the structured query and the file schema, never the data)
this module writes the cells: ``load_cell`` reads the files the task needs with the standard
library (``csv.DictReader`` for CSV, ``json`` for JSON: the sandbox has pandas, but importing it
costs about half a second of every synthesized task's reference episode) and prints
their sizes and columns; ``solve_cells`` filters and joins (reporting how many rows matched),
then groups, simulates or searches, and prints the answer as JSON on its last line. The kernel
is stateful, so later cells use earlier cells' variables, as in a notebook.

This is deliberately a second implementation of every query (a code generator, run on the
rendered files) next to :mod:`.queries` (an interpreter, run on typed rows): the reference
scores 1 only if they agree. The source is also SFT data, so it is formatted the way a careful
person writes it: named helpers, one idea per line, explicit ``float``/``int`` conversions
(CSV cells are strings; JSON numbers are not).
"""

from __future__ import annotations

import json
import string
import textwrap
from typing import Any

from toolgym.synth.code.cleaning import clean_cells, present

Schema = dict[str, dict[str, Any]]


def _lit(value: Any) -> str:
    """A Python literal (strings with double quotes, as black writes them)."""
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _tuple(values: list[str]) -> str:
    return "(" + ", ".join(_lit(v) for v in values) + ")"


def _expr(ref: dict[str, str], schema: Schema, row: str = "row") -> str:
    """Source for a ref's value on a fact row (following the join for E/A refs)."""
    if ref["t"] == "F":
        return f"{row}[{_lit(ref['col'])}]"
    table, fk = schema[ref["t"]]["table"], schema["F"]["fk"][ref["t"]]
    return f"{table}[{row}[{_lit(fk)}]][{_lit(ref['col'])}]"


def _cond(c: dict[str, Any], schema: Schema) -> str:
    expr = _expr(c["ref"], schema)
    if c["op"] == "months":
        months = c["value"]
        if len(months) == 1:
            return f"{expr}[:7] == {_lit(months[0])}"
        return f"{expr}[:7] in {_tuple(months)}"
    op = {"eq": "==", "ne": "!=", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}[c["op"]]
    if isinstance(c["value"], str):
        return f"{expr} {op} {_lit(c['value'])}"
    return f"float({expr}) {op} {_lit(c['value'])}"


def _keep(where: list[dict[str, Any]], schema: Schema, measure: dict[str, Any] | None = None) -> str:
    """``keep(row)``: the conditions, after guards that leave out rows missing a used fact value."""
    used = [r["col"] for r in [c["ref"] for c in where] + list((measure or {}).get("refs", [])) if r["t"] == "F"]
    parts = present(used, schema) + [_cond(c, schema) for c in where]
    if not parts:
        return "def keep(row):\n    return True\n"
    body = "\n        and ".join(parts)
    return f"def keep(row):\n    return (\n        {body}\n    )\n"


def _measure(m: dict[str, Any] | None, schema: Schema) -> str:
    return " * ".join(f"float({_expr(r, schema)})" for r in (m or {"refs": []})["refs"]) or "1"


def _code(template: str, **values: Any) -> list[str]:
    """Dedent a source template and fill its ``$names`` (``{}`` stay free for Python's own use)."""
    return string.Template(textwrap.dedent(template).strip("\n")).substitute(values).splitlines()


_LOADER = '''
    import csv
    import json
    from collections import defaultdict


    def load(path):
        """Rows of a CSV file (dicts of strings) or of a JSON array (dicts)."""
        with open(path, newline="") as f:
            return json.load(f) if path.endswith(".json") else list(csv.DictReader(f))


'''


def load_cell(schema: Schema) -> str:
    """Read every file the task needs; entity and actor tables keyed by id."""
    lines = textwrap.dedent(_LOADER).lstrip("\n").splitlines()
    for role in ("F", "E", "A", "L"):
        if role in schema:
            s = schema[role]
            table, file = s["table"], _lit(s["file"])
            keyed = role in ("E", "A")
            lines.append(
                f"{table} = {{row[{_lit(s['key'])}]: row for row in load({file})}}"
                if keyed
                else f"{table} = load({file})"
            )
            sample = f"next(iter({table}.values()))" if keyed else f"{table}[0]"
            lines.append(f'print({file}, len({table}), "rows, columns:", list({sample}))')
    return "\n".join(lines) + "\n"


_STAT = {
    "sum": "result = sum(values)",
    "mean": "result = sum(values) / len(values)",
    "max": "result = max(values)",
    "min": "result = min(values)",
    "median": """\
        values.sort()
        mid = len(values) // 2
        result = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2""",
}
_SCORES = {"sum": "totals", "count": "counts", "mean": "{k: totals[k] / counts[k] for k in counts}"}


def _filter_rows(q: dict[str, Any], schema: Schema) -> list[str]:
    """The cell that selects the fact rows (with joins) and says how many matched."""
    facts = schema["F"]["table"]
    return [
        _keep(q["where"], schema, q.get("measure")),
        "",
        f"selected = [row for row in {facts} if keep(row)]",
        f'print(len(selected), "of", len({facts}), "rows match")',
    ]


def _aggregate(q: dict[str, Any], schema: Schema, ties: bool = True) -> list[str]:
    """The cell that turns the selected rows into the answer (``ties=False``: no tie rule, first seen wins)."""
    kind, measure = q["kind"], _measure(q.get("measure"), schema)
    if kind == "stat":
        stat = textwrap.dedent(_STAT[q["stat"]]).splitlines()
        return [f"values = [{measure} for row in selected]", *stat, "print(json.dumps(round(result, 2)))"]
    if kind == "count":
        return [
            f"total = sum({measure} for row in selected)",
            'print(json.dumps({"count": len(selected), "total": round(total, 2)}))',
        ]
    key = _expr(q["group"], schema)
    if kind == "compare" and q["mode"] == "periods":
        return _code(
            """
            period_a, period_b = $a, $b
            in_a, in_b = defaultdict(float), defaultdict(float)
            for row in selected:
                key, value = $key, $measure
                if row["date"][:7] in period_a:
                    in_a[key] += value
                elif row["date"][:7] in period_b:
                    in_b[key] += value
            chosen = sorted(k for k in set(in_a) | set(in_b) if in_a[k] > in_b[k])
            print(len(chosen), "groups")
            print(json.dumps(chosen))
            """,
            a=_tuple(q["a"]["value"]),
            b=_tuple(q["b"]["value"]),
            key=key,
            measure=measure,
        )
    out = _code(
        """
        totals, counts = defaultdict(float), defaultdict(int)
        for row in selected:
            key = $key
            totals[key] += $measure
            counts[key] += 1
        """,
        key=key,
        measure=measure,
    )
    if kind == "compare":
        return out + _code(
            """
            overall = sum(totals.values()) / sum(counts.values())
            chosen = sorted(k for k in counts if totals[k] / counts[k] > overall)
            print("overall mean", round(overall, 4), "->", len(chosen), "groups")
            print(json.dumps(chosen))
            """
        )
    out += _code(
        """
        scores = $scores
        $note
        ranking = sorted(scores.items(), key=lambda kv: $key)
        print("best three:", ranking[:3])
        best, value = ranking[0]
        """,
        scores=_SCORES[q["agg"]],
        key=("(-kv[1], kv[0])" if ties else "-kv[1]")
        if q["best"] == "max"
        else ("(kv[1], kv[0])" if ties else "kv[1]"),
        note="# Best first; ties go to the name that sorts first." if ties else "# Best first.",
    )
    if q["group"] == {"t": "F", "col": "date"}:
        return [*out, "print(json.dumps(best))"]
    return [*out, 'print(json.dumps({"name": best, "value": round(value, 2)}))']


_ASK = {
    "rejected": "print(json.dumps(sum(rejected.values())))",
    "record": """\
        worst = min(rejected, key=lambda key: (-rejected[key], name[key]))  # ties: the first name
        print(json.dumps({"name": name[worst], "count": rejected[worst]}))""",
    "emptied": "print(json.dumps(sorted(name[key] for key in first_empty)))",
    "first_empty": """\
        target = next(key for key in name if name[key] == $item)
        print(json.dumps(first_empty[target]))""",
}


def _simulate(q: dict[str, Any], schema: Schema) -> list[str]:
    e, log = schema["E"], schema["L"]
    until = f'    if event["ts"][:10] > {_lit(q["until"])}:\n        break\n' if q.get("until") else ""
    return _code(
        """
        events = sorted($log, key=lambda event: event["ts"])
        level = {key: int(row[$level]) for key, row in $table.items()}
        rejected = defaultdict(int)
        first_empty = {}
        for event in events:
        $until    key, amount = event[$fk], int(event[$qty])
            if event["event"] == $add:
                level[key] += amount
            elif amount > level[key]:
                rejected[key] += 1
            else:
                level[key] -= amount
                if level[key] == 0 and key not in first_empty:
                    first_empty[key] = event["ts"]
        name = {key: row[$name] for key, row in $table.items()}
        print(len(events), "events,", sum(rejected.values()), "rejected")
        """,
        log=log["table"],
        table=e["table"],
        level=_lit(e["level"]),
        until=until,
        fk=_lit(log["fk"]["E"]),
        qty=_lit(log["qty"]),
        add=_lit(log["add"]),
        name=_lit(e["name"]),
    ) + _code(_ASK[q["ask"]], item=_lit(q.get("item")))


def _pairs(q: dict[str, Any], schema: Schema) -> list[str]:
    table = schema["E"]["table"]
    items = f"list({table}.values())"
    if q["min_col"] is not None:
        items = f"[row for row in {table}.values() if float(row[{_lit(q['min_col'])}]) >= {_lit(q['min_value'])}]"
    return _code(
        """
        from itertools import combinations

        items = $items
        count = 0
        for group in combinations(items, $size):
            if len({row[$cat] for row in group}) < $size:
                continue
            nums = [float(row[$num]) for row in group]
            if max(nums) - min(nums) <= $spread:
                count += 1
        print(len(items), "candidates")
        print(json.dumps(count))
        """,
        items=items,
        size=q["size"],
        cat=_lit(q["cat"]),
        num=_lit(q["num"]),
        spread=_lit(q["max_spread"]),
    )


_PRED = {
    "mod": "n % {0} == {1}",
    "digit_sum_mod": "sum(int(d) for d in digits) % {0} == 0",
    "has_digit": '"{0}" in digits',
    "no_digit": '"{0}" not in digits',
    "popcount": 'bin(n).count("1") == {0}',
    "coprime": "gcd(n, {0}) == 1",
    "not_square": "isqrt(n) ** 2 != n",
}


def _numbers(q: dict[str, Any]) -> list[str]:
    return _code(
        """
        import json
        from math import gcd, isqrt


        def ok(n):
            digits = str(n)
            return (
                $body
            )


        print(json.dumps(sum(1 for n in range($lo, $end) if ok(n))))
        """,
        body="\n        and ".join(_PRED[p[0]].format(*p[1:]) for p in q["preds"]),
        lo=q["lo"],
        end=q["hi"] + 1,
    )


def solve_cells(params: dict[str, Any]) -> list[str]:
    """The cells that compute and print the answer (JSON on the last line of the last cell).

    Questions over the fact table first clean it (:func:`.cleaning.clean_cells`, one cell per
    kind of mess its files show); with two or more conditions they then take two cells, as a
    careful analyst would: select the rows and check how many matched, then aggregate.
    """
    q, schema = params["query"], params["schema"]
    cleaning = clean_cells(schema, q["kind"])
    if q["kind"] in ("stat", "count", "argmax", "compare"):
        return cleaning + _fact_cells(q, schema)
    if q["kind"] == "numbers":
        return ["\n".join(_numbers(q)) + "\n"]
    return cleaning + ["\n".join(_simulate(q, schema) if q["kind"] == "simulate" else _pairs(q, schema)) + "\n"]


def _fact_cells(q: dict[str, Any], schema: Schema) -> list[str]:
    """Select (with joins) and aggregate: one cell, or two with two or more conditions."""
    if len(q["where"]) >= 2:
        cells = [_filter_rows(q, schema), _aggregate(q, schema)]
    else:
        cells = [_filter_rows(q, schema) + _aggregate(q, schema)]
    return ["\n".join(lines) + "\n" for lines in cells]
