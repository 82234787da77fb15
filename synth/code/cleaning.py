"""Cleaning cells of the reference: what a careful analyst runs on a messy export before computing.

One cell per kind of mess the fact table's files show (the task's schema says which, as a
first look at the file would): empty cells become ``None`` and are counted per column; exact
repeats are dropped; dates are parsed from every format into ISO; numbers written with a unit
are converted to the unit most of the column uses. After them the rows hold ISO dates, floats
for the unit column, strings for the other numbers (``float`` reads them), and ``None`` where a
value is missing, which the filter cell then leaves out (the prompt's rule).

The cells use the standard library only: a reference episode runs in every synthesized task,
and ``import pandas`` alone costs about half a second of a sandbox's CPU.
"""

from __future__ import annotations

import json
from typing import Any

from toolgym.synth.code.world import DATE_FORMATS

Schema = dict[str, dict[str, Any]]

#: strptime patterns of :data:`toolgym.synth.code.world.DATE_FORMATS`, in that order.
STRPTIME = ("%Y-%m-%d", "%Y/%m/%d", "%d %b %Y", "%b %d, %Y")
assert len(STRPTIME) == len(DATE_FORMATS)


def _missing(table: str) -> str:
    return (
        "# Empty cells are missing values: make them None and see where they are.\n"
        f"for row in {table}:\n"
        "    for column, value in row.items():\n"
        '        if value == "":\n'
        "            row[column] = None\n"
        f"missing = {{column: sum(row[column] is None for row in {table}) for column in {table}[0]}}\n"
        'print("missing values per column:", {column: n for column, n in missing.items() if n})\n'
    )


def _dups(table: str) -> str:
    return (
        "# An exact repeat (every field equal) is the same row exported twice.\n"
        "seen, unique = set(), []\n"
        f"for row in {table}:\n"
        "    key = tuple(row.items())\n"
        "    if key not in seen:\n"
        "        seen.add(key)\n"
        "        unique.append(row)\n"
        f'print(len({table}) - len(unique), "exact repeats dropped,", len(unique), "rows left")\n'
        f"{table} = unique\n"
    )


def _dates(table: str) -> str:
    return (
        "from collections import Counter\n"
        "from datetime import datetime\n"
        "\n"
        f"DATE_FORMATS = {json.dumps(list(STRPTIME))}\n"
        "\n"
        "\n"
        "def iso_date(text):\n"
        '    """A date in any of the formats seen in the file, as YYYY-MM-DD."""\n'
        "    for fmt in DATE_FORMATS:\n"
        "        try:\n"
        "            return datetime.strptime(text, fmt).date().isoformat()\n"
        "        except ValueError:\n"
        "            pass\n"
        '    raise ValueError(f"unknown date format: {text!r}")\n'
        "\n"
        "\n"
        f'shapes = Counter("".join("9" if ch.isdigit() else ch for ch in row["date"]) for row in {table})\n'
        'print("date shapes:", shapes.most_common())\n'
        f"for row in {table}:\n"
        '    row["date"] = iso_date(row["date"])\n'
    )


def _units(table: str, unit: list[Any]) -> str:
    col, base, alt, factor = unit
    cell = json.dumps(col)
    return (
        f"# `{col}` carries a unit; most values use {base}, the rest {alt}.\n"
        f"TO_{base.upper()} = {{{json.dumps(base)}: 1, {json.dumps(alt)}: {factor!r}}}\n"
        f'units = Counter(row[{cell}].rsplit(" ", 1)[1] for row in {table} if row[{cell}])\n'
        'print("units:", units.most_common())\n'
        f"for row in {table}:\n"
        f"    if row[{cell}] is not None:\n"
        f'        number, unit = row[{cell}].rsplit(" ", 1)\n'
        f'        row[{cell}] = float(number.replace(",", "")) / TO_{base.upper()}[unit]\n'
    )


def clean_cells(schema: Schema, kind: str) -> list[str]:
    """The cleaning cells a task of ``kind`` needs (none for clean files), in the order they must run.

    Fact-table kinds clean the fact table; ``simulate`` drops the event log's exact repeats.
    """
    if kind == "simulate":
        log = schema["L"]
        return [_dups(log["table"])] if (log.get("mess") or {}).get("dups") else []
    facts = schema.get("F")
    if kind not in ("stat", "count", "argmax", "compare") or not facts:
        return []
    mess, table = facts.get("mess") or {}, facts["table"]
    cells = []
    if mess.get("missing"):
        cells.append(_missing(table))
    if mess.get("dups"):
        cells.append(_dups(table))
    if mess.get("dates"):
        cells.append(_dates(table))
    if mess.get("unit"):
        cells.append(("" if mess.get("dates") else "from collections import Counter\n\n") + _units(table, mess["unit"]))
    return cells


def present(columns: list[str], schema: Schema) -> list[str]:
    """Guards that leave out rows lacking a used fact column (empty when the file has no gaps)."""
    if not (schema["F"].get("mess") or {}).get("missing"):
        return []
    return [f"row[{json.dumps(c)}] is not None" for c in dict.fromkeys(columns)]
