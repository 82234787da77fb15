"""``toolgym show``, ``toolgym tasks`` and ``toolgym export``: reading a dataset (or an on-the-fly task).

:func:`load_task` resolves a task id for every command that runs one task (``show``, ``play``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from toolgym.cli.common import add_row, console
from toolgym.cli.errors import check_writable, cli_errors, parse_range
from toolgym.errors import ConfigError, UnknownNameError


def load_task(task_id: str, dataset: Path | None) -> tuple[Any, Any, Any]:
    """(task, world, trajectory or None) from a dataset, or synthesized for an on-the-fly id.

    Raises:
        ConfigError: Without a dataset, when ``task_id`` is not an on-the-fly id.
    """
    from toolgym.data.dataset import Dataset
    from toolgym.synth import get_family

    if dataset is None:
        fam = get_family(task_id.split("-", 1)[0]) if "-" in task_id else None
        if fam is None:
            raise ConfigError(f"{task_id!r} is not an on-the-fly task id; pass -d/--dataset to read it from a dataset")
        from toolgym.synth.fly import SynthSource

        try:
            task, world = SynthSource(fam, None).get(task_id)
        except UnknownNameError:  # the library's message names the keyword dataset=…; say the option
            raise ConfigError(
                f"{task_id!r} is not an on-the-fly task id (<family>-fly-s<seed>-d<difficulty>); "
                "pass -d/--dataset to read it from a dataset"
            ) from None
        return task, world, None
    with Dataset(dataset, read_only=True) as ds:
        task = ds.task(task_id)
        world = get_family(task.family).load_world(ds.world_data(task.world_id))
        return task, world, ds.trajectory(task_id)


@cli_errors
def show(
    task_id: Annotated[
        str | None, typer.Argument(help="task id (dataset id, or <family>-fly-s<seed>-d<difficulty>)")
    ] = None,
    dataset: Annotated[Path | None, typer.Option("--dataset", "-d", help="dataset file")] = None,
    full: Annotated[bool, typer.Option(help="print whole tool observations")] = False,
) -> None:
    """Show a task (prompt, tools, hardness, a dataset task's reference trajectory), or a dataset's summary."""
    if task_id is None:
        if dataset is None:
            raise ConfigError("give a task id, or -d/--dataset to summarize a dataset")
        _summary(dataset)
        return
    task, _, traj = load_task(task_id, dataset)
    console.rule(f"{task.task_id}  ({task.env_id}, difficulty {task.difficulty}, split {task.split})")
    console.print(task.prompt, markup=False)
    console.rule("tools")
    for t in task.tools:
        params = ", ".join(t["function"]["parameters"].get("properties", {}))
        console.print(f"{t['function']['name']}({params}): {t['function']['description']}", markup=False)
    console.rule("hardness")
    console.print(json.dumps({k: v for k, v in task.meta.items() if k != "planted"}), markup=False)
    if traj is None:  # an on-the-fly task: its reference runs only when `toolgym synth` ships it
        console.print("no reference trajectory: on-the-fly tasks store none (`toolgym synth` runs and stores it)")
        return
    console.rule(f"reference trajectory: {traj.turns} turns, {traj.tool_calls} tool calls, reward {traj.reward}")
    for act, obs in zip(traj.actions, traj.observations[1:], strict=True):
        console.print(act, markup=False, style="cyan")
        console.print(obs if full or len(obs) < 600 else obs[:600] + f"… ({len(obs)} chars)", markup=False)


def _summary(dataset: Path) -> None:
    """Manifest, task counts per family/split/difficulty, and what each gate dropped."""
    from toolgym.data.dataset import Dataset

    with Dataset(dataset, read_only=True) as ds:
        summary = ds.summary()
    for family, m in summary["manifests"].items():
        config = {k: v for k, v in m["config"].items() if k != "family"}
        console.print(
            f"{family}: toolgym {m['toolgym_version']}, family v{m['family_version']}, config {config}", markup=False
        )
    table = Table("family", "split", "difficulty", "tasks", title=Text(str(dataset)))
    for row in summary["tasks"]:
        add_row(table, row["family"], row["split"], row["difficulty"], row["count"])
    console.print(table)
    gates = Table("family", "candidates", "shipped", "dropped by", title="quality gates")
    for family, counts in summary["gates"].items():
        dropped = {k: v for k, v in counts.items() if k != "shipped"}
        add_row(gates, family, sum(counts.values()), counts.get("shipped", 0), dropped or "-")
    console.print(gates)
    console.print(f"list the task ids with: toolgym tasks -d {dataset} [--family F] [--split S]", markup=False)


@cli_errors
def tasks(
    dataset: Annotated[Path, typer.Option("--dataset", "-d", help="dataset file")],
    family: Annotated[str | None, typer.Option(help="only this family")] = None,
    split: Annotated[str | None, typer.Option(help="only this split: train | val | test")] = None,
    difficulty: Annotated[str | None, typer.Option(help="only this difficulty or range, e.g. 2 or 1-3")] = None,
    limit: Annotated[int, typer.Option(min=0, help="print at most this many (0: all)")] = 0,
) -> None:
    """List a dataset's task ids (tab-separated: id, family, split, difficulty), filtered.

    A separate command rather than a mode of ``show``: its filters mean nothing for one task, and
    its output is plain lines to pipe (``toolgym tasks -d D --split test | cut -f1``). How many
    tasks matched goes to stderr when ``--limit`` cut the list.
    """
    from toolgym.data.dataset import Dataset
    from toolgym.registry import unknown
    from toolgym.spec import check_split

    check_split(split)
    lo, hi = parse_range(difficulty) if difficulty is not None else (1, 5)
    with Dataset(dataset, read_only=True) as ds:
        if family is not None and family not in ds.families():
            raise unknown(f"family in {dataset}:", family, ds.families())
        rows = ds.task_rows(family, split, list(range(lo, hi + 1)))
        if not rows:
            held = ", ".join(f"{r['family']}/{r['split']}/d{r['difficulty']}" for r in ds.summary()["tasks"])
            raise ConfigError(
                f"{dataset} has no tasks matching family={family}, split={split}, difficulty={difficulty}; "
                f"it holds {held or 'no tasks'}"
            )
    shown = rows[:limit] if limit else rows
    for task_id, fam, sp, d in shown:
        typer.echo(f"{task_id}\t{fam}\t{sp}\t{d}")
    if len(shown) < len(rows):
        typer.echo(f"{len(shown)} of {len(rows)} matching tasks shown (raise --limit for more)", err=True)


@cli_errors
def export(
    dataset: Annotated[Path, typer.Argument(help="dataset file")],
    out: Annotated[Path, typer.Option(help="output directory: one file per split (replaced if it holds an export)")],
    format: Annotated[str, typer.Option(help="jsonl | parquet")] = "jsonl",
    split: Annotated[str | None, typer.Option(help="only this split: train | val | test")] = None,
) -> None:
    """Export tasks and reference trajectories for Hugging Face datasets: train / validation / test files.

    ``datasets.load_dataset("<out>")`` then yields the splits train, validation (toolgym's ``val``)
    and test.
    """
    from toolgym.data.export import export as run_export

    check_writable(out, "--out")
    counts = run_export(dataset, out, format, split)
    parts = ", ".join(f"{name}.{format} {n}" for name, n in counts.items())
    console.print(f"wrote {sum(counts.values())} rows to {out}/ ({parts})", markup=False)
