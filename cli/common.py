"""What every ``toolgym`` command shares: the consoles, the progress bar, plain-text table rows, the seed bound."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

SEED_MAX = 2**63 - 1  # seeds are stored as signed 64-bit integers (DuckDB BIGINT, numpy, torch)
# Wide when piped (logs, CI, closing notes): rich would otherwise wrap tables at 80 columns.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, soft_wrap=True)


def progress() -> Progress:
    """A transient progress bar on stderr, shown only when stderr is a terminal."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )


def add_row(table: Table, *cells: Any) -> None:
    """Add a row whose cells are printed as plain text (never parsed as Rich markup)."""
    table.add_row(*(Text(str(c)) for c in cells))
