"""``toolgym eval``: a policy's unbiased pass@k and pass^k on dataset tasks or synthesized ones."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from toolgym.cli.common import SEED_MAX, add_row, console, progress
from toolgym.cli.errors import cli_errors, parse_range
from toolgym.errors import ConfigError


@cli_errors
def eval_(
    policy: Annotated[str, typer.Option(help="reference | null | random | bluff")] = "reference",
    dataset: Annotated[Path | None, typer.Option("--dataset", "-d", help="dataset (default: synthesize tasks)")] = None,
    family: Annotated[str | None, typer.Option(help="only this family")] = None,
    split: Annotated[str | None, typer.Option(help="train | val | test")] = None,
    difficulty: Annotated[str, typer.Option(help="difficulty or range")] = "1-5",
    samples: Annotated[int, typer.Option("-n", "--samples", min=1, help="episodes per task (n of pass@k)")] = 4,
    k: Annotated[list[int] | None, typer.Option("-k", min=1, help="k values (repeatable)")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many tasks (>= 1)")] = 50,
    seed: Annotated[
        int, typer.Option(min=0, max=SEED_MAX, help="seed of the policy's samples / of synthesized tasks")
    ] = 0,
) -> None:
    """Evaluate a policy: unbiased pass@k and pass^k by family and difficulty."""
    from toolgym.policy.evaluate import evaluate, scripted_policy, summarize
    from toolgym.spec import check_split

    check_split(split)
    ks = k or sorted({1, samples})
    if max(ks) > samples:  # Click checked k >= 1 and -n >= 1
        raise ConfigError(f"every -k must be at most -n/--samples ({samples}), got {ks}")
    lo, hi = parse_range(difficulty)
    factory = scripted_policy(policy, seed)
    items = _eval_items(dataset, family, split, list(range(lo, hi + 1)), limit, seed)
    with progress() as bar:
        job = bar.add_task(f"eval {policy}", total=len(items))
        results = evaluate(items, factory, samples, on_task=lambda r: bar.advance(job))
    table = Table(
        "family",
        "difficulty",
        "tasks",
        *(f"pass@{x}" for x in sorted(set(ks))),
        *(f"pass^{x}" for x in sorted(set(ks))),
        title=f"policy {policy}, n={samples}",
    )
    for row in summarize(results, ks):
        cells = [f"{m:.3f} ± {h:.3f}" if h == h else f"{m:.3f}" for m, h in row.pass_at.values()]
        cells += [f"{m:.3f}" for m, _ in row.pass_hat.values()]
        add_row(table, row.family, row.difficulty, str(row.tasks), *cells)
    console.print(table)


def _eval_items(
    dataset: Path | None, family: str | None, split: str | None, difficulties: list[int], limit: int, seed: int
) -> list[tuple[Any, Any]]:
    """The (task, world) pairs to evaluate: from the dataset, or synthesized from world seeds ``seed, seed+1, …``.

    Raises:
        ConfigError: When the dataset holds no task matching the filters.
    """
    from toolgym.data.dataset import Dataset
    from toolgym.synth import get_family

    if dataset is None:
        fam = get_family(family or "trip")
        from toolgym.spec import on_the_fly_split
        from toolgym.synth.fly import SynthSource

        src = SynthSource(fam, difficulties, split)
        seeds = (s for s in itertools.count(seed) if split is None or on_the_fly_split(fam.id, s) == split)
        picked = itertools.islice(seeds, limit)  # the split is honoured by world, as in datasets
        return [src.get(f"{fam.id}-fly-s{s}-d{difficulties[i % len(difficulties)]}") for i, s in enumerate(picked)]
    items = []
    with Dataset(dataset, read_only=True) as ds:
        for tid in ds.task_ids(family, split=split, difficulties=difficulties)[:limit]:
            task = ds.task(tid)
            items.append((task, get_family(task.family).load_world(ds.world_data(task.world_id))))
    if not items:
        raise ConfigError(f"{dataset} has no tasks matching family={family}, split={split}, difficulty={difficulties}")
    return items
