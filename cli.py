"""The ``toolgym`` command: one Typer app, each command a thin function over library code.

Commands: ``families``, ``synth``, ``show``, ``tasks``, ``play``, ``eval``, ``export``,
``bench …`` and ``train lm``.
Every error a user can cause (a bad argument, an unknown name, a corrupt or locked dataset, a
path that cannot be read or written) is printed as one line starting with ``error:`` on stderr
and exits with code 2; nothing prints a traceback for it (:mod:`toolgym.cli_errors` says how).
Seeds are range-checked by Click (``0 <= seed < 2**63``), before any file is created.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from toolgym.cli_errors import OneLineErrors, check_writable, cli_errors, parse_range
from toolgym.errors import ConfigError, UnknownNameError

SEED_MAX = 2**63 - 1  # seeds are stored as signed 64-bit integers (DuckDB BIGINT, numpy, torch)
app = typer.Typer(
    cls=OneLineErrors,
    help="Synthesized, verified tool-use environments for RL of language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks, each measured side by side with its baseline.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
train_app = typer.Typer(help="Train the in-repo policy.", no_args_is_help=True)
app.add_typer(train_app, name="train")
# Wide when piped (logs, CI, closing notes): rich would otherwise wrap tables at 80 columns.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, soft_wrap=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )


@app.command()
@cli_errors
def families() -> None:
    """List the registered families and their env ids."""
    from toolgym.synth import FAMILIES, get_family

    table = Table("family", "env id", "summary")
    for fid in FAMILIES:
        f = get_family(fid)
        _add_row(table, fid, f.env_id, f.summary)
    console.print(table)


@app.command()
@cli_errors
def synth(
    family: Annotated[str, typer.Option(help="family id (see `toolgym families`)")] = "trip",
    count: Annotated[int, typer.Option(help="tasks to ship")] = 1000,
    difficulty: Annotated[str, typer.Option(help="difficulty or range, e.g. 3 or 1-5")] = "1-5",
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="run seed: same seed and settings, same rows")] = 0,
    workers: Annotated[int | None, typer.Option(help="processes (default: every core)")] = None,
    out: Annotated[Path, typer.Option(help="dataset file (created, or resumed)")] = Path("data/toolgym.duckdb"),
    tasks_per_world: Annotated[int, typer.Option(help="candidate tasks per world")] = 4,
    holdout: Annotated[bool, typer.Option(help="put every world of this family in the test split")] = False,
    random_tries: Annotated[int, typer.Option(help="random-agent gate tries per task")] = 8,
    bluff_tries: Annotated[int, typer.Option(help="bluff gate tries per task")] = 2,
) -> None:
    """Synthesize tasks (reference run + quality gates) into a DuckDB dataset; resumable."""
    from toolgym.synth.pipeline import SynthConfig, synthesize

    extra = {"workers": workers} if workers is not None else {}
    config = SynthConfig(
        family=family,
        count=count,
        difficulty=parse_range(difficulty),
        seed=seed,
        tasks_per_world=tasks_per_world,
        holdout=holdout,
        random_tries=random_tries,
        bluff_tries=bluff_tries,
        **extra,
    )
    check_writable(out, "--out")  # after the settings are valid, before any file is created
    with _progress() as bar:
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


def _load(task_id: str, dataset: Path | None) -> tuple[Any, Any, Any]:
    """(task, world, trajectory or None) from a dataset, or synthesized for an on-the-fly id."""
    from toolgym.synth import get_family
    from toolgym.synth.dataset import Dataset

    if dataset is None:
        fam = get_family(task_id.split("-", 1)[0]) if "-" in task_id else None
        if fam is None:
            raise ConfigError(f"{task_id!r} is not an on-the-fly task id; pass -d/--dataset to read it from a dataset")
        from toolgym.envs.sources import SynthSource

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


@app.command()
@cli_errors
def show(
    task_id: Annotated[
        str | None, typer.Argument(help="task id (dataset id, or <family>-fly-s<seed>-d<difficulty>)")
    ] = None,
    dataset: Annotated[Path | None, typer.Option("--dataset", "-d", help="dataset file")] = None,
    full: Annotated[bool, typer.Option(help="print whole tool observations")] = False,
) -> None:
    """Show a task (prompt, tools, hardness, reference trajectory), or without one a dataset's summary."""
    if task_id is None:
        if dataset is None:
            raise ConfigError("give a task id, or -d/--dataset to summarize a dataset")
        _summary(dataset)
        return
    task, _, traj = _load(task_id, dataset)
    console.rule(f"{task.task_id}  ({task.env_id}, difficulty {task.difficulty}, split {task.split})")
    console.print(task.prompt, markup=False)
    console.rule("tools")
    for t in task.tools:
        params = ", ".join(t["function"]["parameters"].get("properties", {}))
        console.print(f"{t['function']['name']}({params}): {t['function']['description']}", markup=False)
    console.rule("hardness")
    console.print(json.dumps({k: v for k, v in task.meta.items() if k != "planted"}), markup=False)
    if traj is None:
        return
    console.rule(f"reference trajectory: {traj.turns} turns, {traj.tool_calls} tool calls, reward {traj.reward}")
    for act, obs in zip(traj.actions, traj.observations[1:], strict=True):
        console.print(act, markup=False, style="cyan")
        console.print(obs if full or len(obs) < 600 else obs[:600] + f"… ({len(obs)} chars)", markup=False)


def _summary(dataset: Path) -> None:
    """Manifest, task counts per family/split/difficulty, and what each gate dropped."""
    from toolgym.synth.dataset import Dataset

    with Dataset(dataset, read_only=True) as ds:
        summary = ds.summary()
    for family, m in summary["manifests"].items():
        config = {k: v for k, v in m["config"].items() if k != "family"}
        console.print(
            f"{family}: toolgym {m['toolgym_version']}, family v{m['family_version']}, config {config}", markup=False
        )
    table = Table("family", "split", "difficulty", "tasks", title=Text(str(dataset)))
    for row in summary["tasks"]:
        _add_row(table, row["family"], row["split"], row["difficulty"], row["count"])
    console.print(table)
    gates = Table("family", "candidates", "shipped", "dropped by", title="quality gates")
    for family, counts in summary["gates"].items():
        dropped = {k: v for k, v in counts.items() if k != "shipped"}
        _add_row(gates, family, sum(counts.values()), counts.get("shipped", 0), dropped or "-")
    console.print(gates)
    console.print(f"list the task ids with: toolgym tasks -d {dataset} [--family F] [--split S]", markup=False)


def _add_row(table: Table, *cells: Any) -> None:
    """Add a row whose cells are printed as plain text (never parsed as Rich markup)."""
    table.add_row(*(Text(str(c)) for c in cells))


@app.command()
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
    from toolgym.synth import unknown
    from toolgym.synth.dataset import Dataset, check_split

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


@app.command()
@cli_errors
def play(
    task_id: Annotated[str, typer.Argument(help="task id")],
    dataset: Annotated[Path | None, typer.Option("--dataset", "-d", help="dataset file")] = None,
) -> None:
    """Play a task in the terminal: `tool key=value …` or `tool {json}` per turn, `help` for more, `quit` to stop.

    Lines are read from stdin, so a game can be scripted by piping them in. An empty line, `help`
    and typing mistakes use no turn; end of input stops the game.
    """
    from toolgym.play import play_episode

    task, world, _ = _load(task_id, dataset)
    play_episode(task, world, console)


@app.command(name="eval")
@cli_errors
def eval_(
    policy: Annotated[str, typer.Option(help="reference | null | random | bluff")] = "reference",
    dataset: Annotated[Path | None, typer.Option("--dataset", "-d", help="dataset (default: synthesize tasks)")] = None,
    family: Annotated[str | None, typer.Option(help="only this family")] = None,
    split: Annotated[str | None, typer.Option(help="train | val | test")] = None,
    difficulty: Annotated[str, typer.Option(help="difficulty or range")] = "1-5",
    samples: Annotated[int, typer.Option("-n", "--samples", min=1, help="episodes per task (n of pass@k)")] = 4,
    k: Annotated[list[int] | None, typer.Option("-k", min=1, help="k values (repeatable)")] = None,
    limit: Annotated[int, typer.Option(help="at most this many tasks")] = 50,
    seed: Annotated[
        int, typer.Option(min=0, max=SEED_MAX, help="seed of the policy's samples / of synthesized tasks")
    ] = 0,
) -> None:
    """Evaluate a policy: unbiased pass@k and pass^k by family and difficulty."""
    from toolgym.policy.evaluate import evaluate, scripted_policy, summarize
    from toolgym.synth.dataset import check_split

    check_split(split)
    ks = k or sorted({1, samples})
    if max(ks) > samples:  # Click checked k >= 1 and -n >= 1
        raise ConfigError(f"every -k must be at most -n/--samples ({samples}), got {ks}")
    lo, hi = parse_range(difficulty)
    factory = scripted_policy(policy, seed)
    items = _eval_items(dataset, family, split, list(range(lo, hi + 1)), limit, seed)
    with _progress() as bar:
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
        _add_row(table, row.family, row.difficulty, str(row.tasks), *cells)
    console.print(table)


def _eval_items(
    dataset: Path | None, family: str | None, split: str | None, difficulties: list[int], limit: int, seed: int
) -> list[tuple[Any, Any]]:
    from toolgym.synth import get_family
    from toolgym.synth.dataset import Dataset

    if dataset is None:
        fam = get_family(family or "trip")
        from toolgym.envs.sources import SynthSource
        from toolgym.synth.pipeline import on_the_fly_split

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


@app.command()
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
    from toolgym.synth.export import export as run_export

    check_writable(out, "--out")
    counts = run_export(dataset, out, format, split)
    parts = ", ".join(f"{name}.{format} {n}" for name, n in counts.items())
    console.print(f"wrote {sum(counts.values())} rows to {out}/ ({parts})", markup=False)


@bench_app.command("env")
@cli_errors
def bench_env(steps: Annotated[int, typer.Option(help="timed calls per row")] = 3000) -> None:
    """Env step and reset vs a plain-Python floor, a re-templating step and SkyRL-Gym's SQL step."""
    from toolgym.envs.bench import run_env_bench

    rows = run_env_bench(steps)
    ours = rows[0].median_us
    table = Table("path", "median µs", "p90 µs", "× toolgym step", "what", title="toolgym bench env")
    for r in rows:
        ratio = f"{r.median_us / ours:.2f}" if r.median_us == r.median_us else "-"
        _add_row(table, r.name, f"{r.median_us:.1f}", f"{r.p90_us:.1f}", ratio, r.note)  # notes hold [extras]
    console.print(table)
    console.print("targets: step ≤ 200 µs median, reset ≤ 1000 µs median")


@bench_app.command("synth")
@cli_errors
def bench_synth(
    count: Annotated[int, typer.Option(help="tasks per run")] = 600,
    workers: Annotated[int, typer.Option(help="workers of the parallel run")] = 2,
    family: Annotated[str, typer.Option(help="family id")] = "trip",
) -> None:
    """Shipped tasks/s with 1 vs N workers (all gates on), and the hardness table per difficulty."""
    from toolgym.synth import get_family
    from toolgym.synth.bench import hardness, kind_table, run_throughput

    get_family(family)  # an unknown id fails here, before any work
    single, _ = run_throughput(count // 2, 1, family=family)
    multi, path = run_throughput(count, workers, family=family)
    table = Table("workers", "shipped", "seconds", "tasks/s", "dropped", title=f"toolgym bench synth ({family}, d1-5)")
    for r in (single, multi):
        _add_row(table, str(r.workers), str(r.shipped), f"{r.seconds:.1f}", f"{r.rate:.0f}", str(r.dropped))
    console.print(table)
    console.print(f"speed-up {multi.rate / single.rate:.2f}x on {workers} workers; target ≥ 100 shipped tasks/s")
    table = Table(
        "difficulty",
        "tasks",
        "log10 candidates",
        "random pass",
        "ref calls",
        "ref turns",
        "verify µs",
        title="hard to solve, easy to verify",
    )
    for h in hardness(path):
        _add_row(
            table,
            str(h.difficulty),
            str(h.tasks),
            "-" if h.log10_candidates != h.log10_candidates else f"{h.log10_candidates:.1f}",  # NaN: not reported
            f"{h.random_pass:.4f} (n={h.random_samples})",
            f"{h.ref_calls:.0f}",
            f"{h.ref_turns:.0f}",
            f"{h.verify_us:.0f}",
        )
    console.print(table)
    console.print(kind_table(path, family))


@bench_app.command("sandbox")
@cli_errors
def bench_sandbox(
    repeats: Annotated[int, typer.Option(help="timed calls per fast row")] = 40,
    docker: Annotated[
        bool | None, typer.Option("--docker/--no-docker", help="docker rows (default: when an engine answers)")
    ] = None,
) -> None:
    """Plain subprocess vs a local sandbox call vs the warm Python kernel vs docker exec, side by side."""
    from toolgym.bench.sandbox import run_sandbox_bench, targets_line

    rows = run_sandbox_bench(repeats, docker)
    base = rows[0].median_ms
    table = Table("path", "median ms", "p90 ms", "× plain", "n", "what", title="toolgym bench sandbox")
    for r in rows:
        timed = r.n > 0
        _add_row(
            table,
            r.name,
            f"{r.median_ms:.2f}" if timed else "-",
            f"{r.p90_ms:.2f}" if timed else "-",
            f"{r.median_ms / base:.2f}" if timed else "-",
            str(r.n),
            r.note,
        )
    console.print(table)
    console.print(targets_line(rows))


@bench_app.command("model")
@cli_errors
def bench_model(
    contexts: Annotated[
        str | None, typer.Option(help="context lengths, comma-separated [default: 1024,4096,16384,32768]")
    ] = None,
    batches: Annotated[str, typer.Option(help="decode batch sizes (rows sharing one prompt)")] = "1,8",
    quality: Annotated[bool, typer.Option("--quality/--no-quality", help="train dense vs DSA, compare loss")] = True,
    quick: Annotated[
        bool, typer.Option("--quick", help="contexts 1024,4096,16384 (unless given), no quality check, 2 FFN reps")
    ] = False,
    pretrain_steps: Annotated[int, typer.Option(help="shared dense pre-training steps")] = 400,
    branch_steps: Annotated[int, typer.Option(help="steps of each branch (dense vs DSA)")] = 150,
    decode_block: Annotated[
        int, typer.Option(help="timed decode steps per model in a row after an untimed one (0: alternate every step)")
    ] = 4,
    threads: Annotated[int, typer.Option(help="intra-op threads (1 is steadiest on a shared CPU)")] = 1,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the report here")] = None,
) -> None:
    """DSA vs dense attention (prefill, decode, cache), MoE vs dense FFN, expert balance, quality."""
    from dataclasses import asdict

    from toolgym.policy.bench import ModelBenchConfig, parse_int_list, report_tables, run_model_bench

    default_contexts = "1024,4096,16384" if quick else "1024,4096,16384,32768"
    config = ModelBenchConfig(
        contexts=parse_int_list(contexts or default_contexts),
        decode_batch_sizes=parse_int_list(batches),
        decode_block=decode_block,
        quality=quality and not quick,
        pretrain_steps=pretrain_steps,
        branch_steps=branch_steps,
        threads=threads,
        **({"ffn_reps": 2} if quick else {}),
    )
    if json_out is not None:
        check_writable(json_out, "--json")  # before the minutes of benchmarking, not after
    report = run_model_bench(config, log=lambda line: err_console.print(line, markup=False, highlight=False))
    for table in report_tables(report):
        console.print(table)
    if json_out is not None:
        json_out.write_text(json.dumps(asdict(report), indent=2))


@train_app.command("lm")
@cli_errors
def train_lm(
    out: Annotated[Path, typer.Option(help="checkpoint directory (replaced atomically)")] = Path("runs/lm"),
    init: Annotated[Path | None, typer.Option(help="continue from this checkpoint")] = None,
    stage: Annotated[str, typer.Option(help="dense | indexer_warmup | sparse")] = "dense",
    steps: Annotated[int, typer.Option(help="optimizer steps")] = 300,
    batch_size: Annotated[int, typer.Option(help="sequences per step")] = 8,
    seq_len: Annotated[int, typer.Option(help="tokens per sequence")] = 512,
    lr: Annotated[float, typer.Option(help="peak learning rate")] = 3e-3,
    eval_every: Annotated[int, typer.Option(help="steps between held-out evals")] = 100,
    checkpoint_every: Annotated[int, typer.Option(help="steps between checkpoints (0: at the end)")] = 100,
    corpus_bytes: Annotated[int, typer.Option(help="standard-library corpus size")] = 8_000_000,
    vocab_size: Annotated[int, typer.Option(help="tokenizer size of a fresh model")] = 4096,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="seed of weights and batches")] = 0,
) -> None:
    """Train the policy LM on the offline standard-library corpus (dense, indexer warm-up or sparse)."""
    from toolgym.policy.train_lm import LMTrainConfig, pretrain

    config = LMTrainConfig(
        stage=stage,
        steps=steps,
        batch_size=batch_size,
        seq_len=seq_len,
        lr=lr,  # type: ignore[arg-type]
        eval_every=eval_every,
        checkpoint_every=checkpoint_every,
        seed=seed,
    )
    check_writable(out, "--out")  # before training, not when the first checkpoint is written
    result = pretrain(out, config, init=init, corpus_bytes=corpus_bytes, vocab_size=vocab_size)
    console.print(
        f"{stage}: {result.steps} steps in {result.seconds:.0f}s, held-out loss {result.val_loss:.4f}"
        + (f", indexer KL {result.val_index_loss:.4f}" if result.val_index_loss is not None else "")
        + f"; checkpoint at {out}"
    )


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
