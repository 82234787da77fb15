"""``toolgym eval``: a policy's unbiased pass@k and pass^k on dataset tasks or synthesized ones."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from toolgym.cli.common import COUNT_MAX, SEED_MAX, SPEED_OPTIONS, add_row, console, policy_options, progress
from toolgym.cli.errors import check_writable, cli_errors, interrupt_hint, parse_range
from toolgym.errors import ConfigError


@cli_errors
def eval_(
    policy: Annotated[
        str, typer.Option(help="a registered policy: reference | null | random | bluff | …")
    ] = "reference",
    dataset: Annotated[Path | None, typer.Option("--dataset", "-d", help="dataset (default: synthesize tasks)")] = None,
    family: Annotated[str | None, typer.Option(help="only this family")] = None,
    split: Annotated[str | None, typer.Option(help="train | val | test")] = None,
    difficulty: Annotated[str, typer.Option(help="difficulty or range")] = "1-5",
    samples: Annotated[
        int, typer.Option("-n", "--samples", min=1, max=COUNT_MAX, help="episodes per task (n of pass@k)")
    ] = 4,
    k: Annotated[list[int] | None, typer.Option("-k", min=1, help="k values (repeatable)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=COUNT_MAX, help="at most this many tasks (>= 1)")] = 50,
    max_turns: Annotated[
        int | None,
        typer.Option(min=1, max=COUNT_MAX, help="turns per episode (default: the env's limit, stated to the model)"),
    ] = None,
    seed: Annotated[
        int, typer.Option(min=0, max=SEED_MAX, help="seed of the policy's samples / of synthesized tasks")
    ] = 0,
    out: Annotated[
        Path | None, typer.Option(help="output directory (default runs/eval/<policy>-<settings hash>); reruns resume")
    ] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="checkpoint directory (model policies)")] = None,
    device: Annotated[str | None, typer.Option(help="cpu | cuda (model policies)")] = None,
    temperature: Annotated[float | None, typer.Option(help="sampling temperature")] = None,
    top_p: Annotated[float | None, typer.Option(help="nucleus sampling mass")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="most tokens generated per action")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint (openai policy)")] = None,
    model: Annotated[str | None, typer.Option(help="model name at the endpoint")] = None,
    api_key_env: Annotated[str | None, typer.Option(help="environment variable holding the API key")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, help="episodes at once (endpoint policies)")] = None,
    timeout: Annotated[float | None, typer.Option(help="seconds per request (endpoint policies)")] = None,
    api: Annotated[
        str | None, typer.Option(help="chat | responses: the endpoint's API (openai policy; default chat)")
    ] = None,
) -> None:
    """Evaluate a policy: unbiased pass@k and pass^k by family and difficulty; results.jsonl, summary.json, report."""
    from toolgym.spec import check_split

    check_split(split)
    ks = sorted(set(k or {1, samples}))
    if max(ks) > samples:  # Click checked k >= 1 and -n >= 1
        raise ConfigError(f"every -k must be at most -n/--samples ({samples}), got {ks}")
    lo, hi = parse_range(difficulty)
    given = locals()
    options: dict[str, Any] = {"seed": seed} | policy_options(given)
    if api is not None:  # only when given: the options (and the run directory) of chat runs stay as they were
        if api not in ("chat", "responses"):
            raise ConfigError(f"--api must be chat or responses, got {api!r}")
        options["api"] = api
    settings = {
        "policy": policy,
        "options": {o: (str(v) if isinstance(v, Path) else v) for o, v in options.items() if o not in SPEED_OPTIONS},
        "dataset": None if dataset is None else str(dataset.resolve()),
        "split": split,
        "family": family,
        "difficulty": [lo, hi],
        "samples": samples,
        "limit": limit,
    }
    if max_turns is not None:  # only when given: runs made without it keep their default directory
        settings["max_turns"] = max_turns
    if out is not None:
        check_writable(out, "--out")
    from toolgym.policy.evaluate import make_policy

    agent = make_policy(policy, **options)
    try:
        items = _eval_items(dataset, family, split, list(range(lo, hi + 1)), limit, seed)
        _run(agent, items, settings, out, ks)
    finally:
        close = getattr(agent, "close", None)
        if callable(close):
            close()


def _header(agent: Any, settings: dict[str, Any], items: list[tuple[Any, Any]]) -> dict[str, Any]:
    """What summary.json says besides the settings: versions and the policy."""
    import toolgym
    from toolgym.synth import get_family

    return {
        "toolgym": toolgym.__version__,
        "families": {f: get_family(f).version for f in sorted({t.family for t, _ in items})},
        "policy": {
            "name": settings["policy"],
            "options": settings["options"],
            "version": str(getattr(agent, "version", f"toolgym {toolgym.__version__}")),
        },
    }


def _run(agent: Any, items: list[tuple[Any, Any]], settings: dict[str, Any], out: Path | None, ks: list[int]) -> None:
    """Run the episodes not yet in ``out`` (resuming), then write the summary and the report and print the table."""
    from toolgym.policy.evaluate import summarize, task_results
    from toolgym.policy.report import write_report
    from toolgym.policy.results import SUMMARY, ResultsLog, default_out, open_run, write_json
    from toolgym.policy.runner import run_episodes

    out = out if out is not None else default_out(settings["policy"], settings)
    check_writable(out, "--out")
    header = _header(agent, settings, items)
    done = open_run(out, settings, header)
    have = {(r.task_id, r.sample) for r in done}
    wanted = {(t.task_id, i) for t, _ in items for i in range(settings["samples"])}
    jobs = [(t, w, i) for t, w in items for i in range(settings["samples"]) if (t.task_id, i) not in have]
    records = [r for r in done if (r.task_id, r.sample) in wanted]
    interrupt_hint(f"{len(records)} episodes so far in {out}; rerun the same command to resume")
    passed = sum(r.reward >= 1.0 for r in records)
    with progress() as bar, ResultsLog(out) as log:
        job = bar.add_task(
            _bar_text(settings["policy"], passed, len(records)), total=len(wanted), completed=len(records)
        )

        def on_episode(record: Any) -> None:
            nonlocal passed
            log.append(record)
            records.append(record)
            passed += record.reward >= 1.0
            bar.update(job, advance=1, description=_bar_text(settings["policy"], passed, len(records)))
            interrupt_hint(f"{len(records)} episodes so far in {out}; rerun the same command to resume")

        env_kwargs = {"max_turns": settings["max_turns"]} if "max_turns" in settings else {}
        run_episodes(jobs, agent, on_episode, **env_kwargs)
    rows = summarize(task_results(records), ks)
    summary = {**header, "settings": settings, "complete": True, "episodes": len(records), "ks": ks}
    summary["table"] = [_row_json(r) for r in rows]
    write_json(out / SUMMARY, summary)
    write_report(out, summary, records, rows, ks)
    _print_table(rows, ks, settings)
    resumed = f" ({len(done)} resumed)" if done else ""
    console.print(f"wrote {out}/results.jsonl, summary.json, report.md{resumed}", highlight=False)


def _row_json(row: Any) -> dict[str, Any]:
    """One table row for summary.json: ``pass@k`` and ``pass^k`` as ``[mean, 95% half-width]`` (null: one task)."""
    return {
        "family": row.family,
        "difficulty": row.difficulty,
        "tasks": row.tasks,
        **{f"pass@{k}": list(v) for k, v in row.pass_at.items()},
        **{f"pass^{k}": list(v) for k, v in row.pass_hat.items()},
        "mean_reward": row.mean_reward,
    }


def _bar_text(policy: str, passed: int, done: int) -> str:
    """The progress bar's description: the running pass rate."""
    return f"eval {policy}: pass {passed}/{done}" + (f" = {passed / done:.1%}" if done else "")


def _print_table(rows: list[Any], ks: list[int], settings: dict[str, Any]) -> None:
    table = Table(
        "family",
        "difficulty",
        "tasks",
        *(f"pass@{x}" for x in ks),
        *(f"pass^{x}" for x in ks),
        title=f"policy {settings['policy']}, n={settings['samples']}",
    )
    for row in rows:
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
