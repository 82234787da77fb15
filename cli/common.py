"""What every ``toolgym`` command shares: consoles, progress bar, plain-text table rows, seed bound, policy options.

The policy options are those of ``toolgym eval --policy`` and ``toolgym synth --solvable-by``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

#: The policy options of the CLI, passed to the policy's entry only when given (``seed`` always).
#: The largest count a CLI option takes (samples, tasks, turns, k): far above any real run, and
#: inside every integer type the values reach (a 20-digit -n was a TypeError deep in the run).
COUNT_MAX = 10**6

POLICY_OPTIONS = (
    "checkpoint",
    "device",
    "temperature",
    "top_p",
    "max_new_tokens",
    "base_url",
    "model",
    "api_key_env",
    "concurrency",
    "timeout",
)
#: Options that change how fast a policy runs, not its episodes: a resumed eval or synth may change them.
SPEED_OPTIONS = ("concurrency",)

# The policy options as command parameters (``toolgym synth`` declares them with these).
CheckpointOption = Annotated[Path | None, typer.Option(help="checkpoint directory (model policies)")]
DeviceOption = Annotated[str | None, typer.Option(help="cpu | cuda (model policies)")]
TemperatureOption = Annotated[float | None, typer.Option(help="sampling temperature")]
TopPOption = Annotated[float | None, typer.Option(help="nucleus sampling mass")]
MaxNewTokensOption = Annotated[int | None, typer.Option(help="most tokens generated per action")]
BaseUrlOption = Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint (openai policy)")]
ModelOption = Annotated[str | None, typer.Option(help="model name at the endpoint")]
ApiKeyEnvOption = Annotated[str | None, typer.Option(help="environment variable holding the API key")]
ConcurrencyOption = Annotated[int | None, typer.Option(min=1, help="episodes at once (endpoint policies)")]
TimeoutOption = Annotated[float | None, typer.Option(help="seconds per request (endpoint policies)")]


def policy_options(given: dict[str, Any]) -> dict[str, Any]:
    """The policy options a command got: each of :data:`POLICY_OPTIONS` that was given (not None).

    Args:
        given: The command's parameters (``locals()``), holding every name of :data:`POLICY_OPTIONS`.

    Returns:
        ``{option: value}`` in :data:`POLICY_OPTIONS` order, without ``seed`` (the caller adds it).
    """
    return {o: given[o] for o in POLICY_OPTIONS if given[o] is not None}


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
