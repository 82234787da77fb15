"""``toolgym families``: the environment catalog (:mod:`toolgym.synth.catalog`), as a table or JSON."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from toolgym.cli.common import add_row, console
from toolgym.cli.errors import cli_errors

#: Characters of an example prompt shown in the table (``--json`` has it whole).
PROMPT_CHARS = 120


@cli_errors
def families(
    json_: Annotated[bool, typer.Option("--json", help="print the catalog as JSON (one object per row)")] = False,
    live: Annotated[
        bool, typer.Option(help="generate every example now instead of reading the shipped snapshot (minutes)")
    ] = False,
) -> None:
    """List every family and archetype: env id, categories, difficulty range, tool count and an example prompt."""
    from toolgym.synth.catalog import catalog

    rows = catalog(live=live)
    if json_:
        typer.echo(json.dumps([r.model_dump(mode="json") for r in rows], indent=1, ensure_ascii=False))
        return
    table = Table("family", "archetype", "env id", "categories", "difficulty", "tools", "example prompt")
    for r in rows:
        prompt = " ".join((r.example_prompt or f"({r.note})").split())
        prompt = prompt if len(prompt) <= PROMPT_CHARS else prompt[: PROMPT_CHARS - 1] + "…"
        tools = "" if r.tool_count is None else str(r.tool_count)
        lo, hi = r.difficulty
        add_row(
            table,
            r.family,
            r.archetype or "",
            r.env_id,
            ", ".join(r.categories),
            f"{lo}-{hi}",
            tools,
            prompt,
        )
    console.print(table)
