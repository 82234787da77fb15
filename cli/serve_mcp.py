"""``toolgym mcp``: one task's tools over the Model Context Protocol (stdio), for any MCP client."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from toolgym.cli.errors import cli_errors
from toolgym.errors import ConfigError


@cli_errors
def mcp(
    task_or_dataset: Annotated[
        str, typer.Argument(help="an on-the-fly task id (<family>-fly-s<seed>-d<difficulty>) or a dataset file")
    ],
    task: Annotated[str | None, typer.Option(help="the dataset's task to serve (default: its first)")] = None,
    max_calls: Annotated[int, typer.Option(min=1, help="tool calls in the episode; then it ends with reward 0")] = 1000,
) -> None:
    """Serve a task's tools over MCP on stdin/stdout (submit returns the reward) until the client disconnects.

    Example client configuration: {"command": "toolgym", "args": ["mcp", "trip-fly-s0-d1"]}.
    """
    from toolgym.adapters.mcp import McpConfig, require_mcp, serve_stdio
    from toolgym.cli.data import load_task

    path = Path(task_or_dataset)
    if path.is_file():
        task_id = task if task is not None else _first_task(path)
        dataset: Path | None = path
    elif task is not None:
        raise ConfigError(f"--task needs a dataset file; {task_or_dataset!r} is not one")
    else:
        task_id, dataset = task_or_dataset, None
    require_mcp()  # before any synthesis
    with contextlib.redirect_stdout(sys.stderr):  # stdout is the protocol's: nothing else may reach it
        spec, world, _ = load_task(task_id, dataset)
    serve_stdio(spec, world, McpConfig(max_calls=max_calls))


def _first_task(path: Path) -> str:
    """The first task id of a dataset.

    Raises:
        ConfigError: When the dataset holds no task.
    """
    from toolgym.data.dataset import Dataset

    with Dataset(path, read_only=True) as ds:
        ids = ds.task_ids()
    if not ids:
        raise ConfigError(f"{path} holds no task")
    return ids[0]
