"""``toolgym families`` and ``toolgym synth``: what can be synthesized, and synthesizing it into a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

import toolgym
from toolgym.cli.common import SEED_MAX, add_row, console, progress
from toolgym.cli.errors import check_writable, cli_errors, interrupt_hint, parse_range


@cli_errors
def families() -> None:
    """List the registered families and their env ids."""
    from toolgym.synth import FAMILIES, get_family

    table = Table("family", "env id", "summary")
    for fid in FAMILIES:
        f = get_family(fid)
        add_row(table, fid, f.env_id, f.summary)
    console.print(table)


@cli_errors
def synth(
    family: Annotated[str, typer.Option(help="family id (see `toolgym families`)")] = "trip",
    count: Annotated[int, typer.Option(help="tasks to ship")] = 1000,
    difficulty: Annotated[str, typer.Option(help="difficulty or range, e.g. 3 or 1-5")] = "1-5",
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="run seed: same seed and settings, same rows")] = 0,
    workers: Annotated[int | None, typer.Option(help="processes (default: every core)")] = None,
    executor: Annotated[str, typer.Option(help="how worlds run: serial or local (toolgym.EXECUTORS)")] = "local",
    out: Annotated[Path, typer.Option(help="dataset file (created, or resumed)")] = Path("datasets/toolgym.duckdb"),
    tasks_per_world: Annotated[int, typer.Option(help="candidate tasks per world")] = 4,
    holdout: Annotated[bool, typer.Option(help="put every world of this family in the test split")] = False,
    random_tries: Annotated[int, typer.Option(help="random-agent gate tries per task")] = 8,
    bluff_tries: Annotated[int, typer.Option(help="bluff gate tries per task")] = 2,
) -> None:
    """Synthesize tasks (reference run + quality gates) into a DuckDB dataset; resumable."""
    from toolgym.synth.config import SynthConfig
    from toolgym.synth.run import synthesize

    extra: dict[str, Any] = {"workers": workers} if workers is not None else {}
    config = SynthConfig(
        family=family,
        count=count,
        difficulty=parse_range(difficulty),
        seed=seed,
        tasks_per_world=tasks_per_world,
        holdout=holdout,
        random_tries=random_tries,
        bluff_tries=bluff_tries,
        executor=executor,
        **extra,
    )
    toolgym.EXECUTORS.get(executor)  # an unknown name is an error before any file is created
    check_writable(out, "--out")  # after the settings are valid, before any file is created
    interrupt_hint("the dataset keeps every committed batch; rerun the same command to resume")
    with progress() as bar:
        job = bar.add_task(f"synth {family}", total=count)
        stats = synthesize(config, out, progress=lambda done, total: bar.update(job, completed=done))
    if stats.shipped == 0 and stats.existing >= count:
        console.print(
            f"{out} is already complete: it holds {stats.existing} {family} tasks (--count {count}); nothing to do",
            markup=False,
        )
        return
    resumed = "" if stats.resumed_from is None else f" (resumed: {stats.existing} were already there)"
    rate = stats.shipped / stats.seconds if stats.seconds else 0.0
    console.print(
        f"shipped {stats.shipped} tasks to {out}{resumed} in {stats.seconds:.1f}s ({rate:.0f} tasks/s); "
        f"candidates {stats.candidates}, dropped {stats.dropped or 'none'}",
        markup=False,
    )
