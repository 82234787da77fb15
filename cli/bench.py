"""``toolgym bench …``: each benchmark of :mod:`toolgym.bench` printed beside its baseline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from toolgym.cli.common import add_row, console, err_console
from toolgym.cli.errors import check_writable, cli_errors, interrupt_hint


@cli_errors
def bench_env(
    steps: Annotated[int, typer.Option(help="timed calls per row")] = 3000,
    family: Annotated[
        list[str] | None, typer.Option(help="also a d5 read step and reset of this family (repeatable)")
    ] = None,
) -> None:
    """Env step and reset vs a plain-Python floor, a re-templating step and SkyRL-Gym's SQL step."""
    from toolgym.bench.env import run_env_bench, sql_target_lines
    from toolgym.synth import get_family

    for f in family or ():
        get_family(f)  # an unknown id fails here, before any work
    rows = run_env_bench(steps, families=tuple(family or ()))
    ours = rows[0].median_us
    table = Table("path", "median µs", "p90 µs", "× toolgym step", "what", title="toolgym bench env")
    for r in rows:
        ratio = f"{r.median_us / ours:.2f}" if r.median_us == r.median_us else "-"
        add_row(table, r.name, f"{r.median_us:.1f}", f"{r.p90_us:.1f}", ratio, r.note)  # notes hold [extras]
    console.print(table)
    console.print("targets: step ≤ 200 µs median, reset ≤ 1000 µs median")
    for line in sql_target_lines(rows):
        console.print(line)


@cli_errors
def bench_synth(
    count: Annotated[int, typer.Option(help="tasks per run")] = 600,
    workers: Annotated[int, typer.Option(help="workers of the parallel run")] = 2,
    family: Annotated[str, typer.Option(help="family id")] = "trip",
) -> None:
    """Shipped tasks/s with 1 vs N workers (all gates on), and the hardness table per difficulty."""
    from toolgym.bench.synth import SYNTH_TARGETS, distinctness, hardness, kind_table, run_throughput
    from toolgym.synth import get_family

    get_family(family)  # an unknown id fails here, before any work
    single, _ = run_throughput(count // 2, 1, family=family)
    multi, path = run_throughput(count, workers, family=family)
    table = Table("workers", "shipped", "seconds", "tasks/s", "dropped", title=f"toolgym bench synth ({family}, d1-5)")
    for r in (single, multi):
        add_row(table, str(r.workers), str(r.shipped), f"{r.seconds:.1f}", f"{r.rate:.0f}", str(r.dropped))
    console.print(table)
    target = SYNTH_TARGETS.get(family)
    goal = f"; target ≥ {target} shipped tasks/s on 2 workers" if target else ""
    console.print(f"speed-up {multi.rate / single.rate:.2f}x on {workers} workers{goal}")
    d = distinctness(path, family)
    table = Table(
        "worlds",
        "distinct toolsets",
        "distinct schemas",
        "archetypes",
        "most worlds on one toolset",
        "yield",
        "drops by gate",
        title=f"distinct environments ({workers}-worker run)",
    )
    add_row(
        table,
        str(d.worlds),
        str(d.toolsets),
        str(d.schemas),
        str(d.archetypes),
        str(d.max_worlds_per_toolset),
        f"{d.yield_:.1%} ({d.shipped}/{d.candidates})",
        ", ".join(f"{k} {v}" for k, v in sorted(d.dropped.items())) or "-",
    )
    console.print(table)
    rows = hardness(path)
    worlds = any(h.world for h in rows)  # a column only for families that report world stats (search)
    table = Table(
        "difficulty",
        "tasks",
        "log10 candidates",
        "random pass",
        "ref calls",
        "ref turns",
        "ref chars",
        "ref writes",
        "ref tools",
        "verify µs",
        "heuristic",
        *(["world"] if worlds else []),
        title="hard to solve, easy to verify",
    )
    for h in rows:
        add_row(
            table,
            str(h.difficulty),
            str(h.tasks),
            "-" if h.log10_candidates != h.log10_candidates else f"{h.log10_candidates:.1f}",  # NaN: not reported
            f"{h.random_pass:.4f} (n={h.random_samples})",
            f"{h.ref_calls:.0f}",
            f"{h.ref_turns:.0f}",
            f"{h.ref_chars:.0f}",
            f"{h.ref_writes:.0f}",
            f"{h.ref_tools:.0f}",
            f"{h.verify_us:.0f}",
            "–" if h.heuristic is None else f"{h.heuristic:.2f} (n={h.heuristic_tasks})",
            *([", ".join(f"{k} {v:,.6g}" for k, v in h.world.items())] if worlds else []),
        )
    console.print(table)
    console.print(kind_table(path, family))


@cli_errors
def bench_ray(
    count: Annotated[int, typer.Option(min=1, help="tasks per run")] = 200,
    family: Annotated[str, typer.Option(help="family id")] = "trip",
) -> None:
    """Synthesis tasks/s with the local pool vs Ray, at 1 and 2 workers, side by side (needs toolgym[ray])."""
    from toolgym.bench.ray import OVERHEAD_TARGET, compare, overhead
    from toolgym.synth import get_family

    get_family(family)  # an unknown id fails here, before any work
    rows = compare(count, family)
    table = Table("executor", "workers", "shipped", "seconds", "tasks/s", title=f"toolgym bench ray ({family}, d1-5)")
    for r in rows:
        add_row(table, r.executor, str(r.workers), str(r.shipped), f"{r.seconds:.1f}", f"{r.rate:.1f}")
    console.print(table)
    console.print(
        f"Ray overhead: {overhead(rows, 1):+.0%} at 1 worker, {overhead(rows, 2):+.0%} at 2 "
        f"(target ≤ {OVERHEAD_TARGET:.0%} at 2); the runs shipped the same tasks",
        highlight=False,
    )


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
        add_row(
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


@cli_errors
def bench_codeagent(
    repeats: Annotated[int, typer.Option(min=1, help="timed calls per row")] = 10,
    difficulty: Annotated[int, typer.Option(min=1, max=5, help="difficulty of the task's package")] = 3,
) -> None:
    """The codeagent family's run_tests and judge beside a plain pytest of the same tests, side by side."""
    from toolgym.bench.codeagent import run_codeagent_bench, targets_line

    rows = run_codeagent_bench(repeats, difficulty)
    table = Table("path", "median ms", "p90 ms", "n", "what", title="toolgym bench codeagent")
    for r in rows:
        add_row(table, r.name, f"{r.median_ms:.1f}", f"{r.p90_ms:.1f}", str(r.n), r.note)
    console.print(table)
    console.print(targets_line(rows))


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

    from toolgym.bench.model import ModelBenchConfig, parse_int_list, report_tables, run_model_bench

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


@cli_errors
def bench_eval(
    checkpoint: Annotated[Path | None, typer.Option(help="checkpoint directory (default: a micro one, built)")] = None,
    slots: Annotated[str, typer.Option(help="slot counts to compare, comma-separated")] = "1,16",
    family: Annotated[str, typer.Option(help="family of the tasks synthesized on the fly")] = "trip",
    difficulty: Annotated[int, typer.Option(min=1, help="their difficulty")] = 1,
    tasks: Annotated[int, typer.Option(help="tasks synthesized on the fly")] = 4,
    samples: Annotated[int, typer.Option(help="episodes per task")] = 4,
    max_new_tokens: Annotated[int, typer.Option(help="token budget of one action")] = 64,
    max_turns: Annotated[int, typer.Option(help="turns per episode")] = 4,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "cpu",
    threads: Annotated[int, typer.Option(help="intra-op threads (1 is steadiest on a shared CPU)")] = 1,
) -> None:
    """The model policy's episodes/s and generated tokens/s at 1 slot vs many, on the same episodes."""
    from toolgym.bench.eval import EvalBenchConfig, run_eval_bench
    from toolgym.bench.model import parse_int_list

    config = EvalBenchConfig(
        checkpoint=checkpoint,
        family=family,
        difficulty=difficulty,
        slots=parse_int_list(slots),
        tasks=tasks,
        samples=samples,
        max_new_tokens=max_new_tokens,
        max_turns=max_turns,
        device=device,
        threads=threads,
    )
    runs = run_eval_bench(config, log=lambda line: err_console.print(line, markup=False, highlight=False))
    base = runs[0]
    table = Table(
        "slots",
        "episodes",
        "tokens",
        "seconds",
        "append s",
        "generate s",
        "episodes/s",
        "tokens/s",
        "× first",
        "generate × first",
        title="toolgym bench eval",
    )
    for r in runs:
        add_row(
            table,
            str(r.slots),
            str(r.episodes),
            str(r.tokens),
            f"{r.seconds:.1f}",
            f"{r.append_s:.1f}",
            f"{r.generate_s:.1f}",
            f"{r.episodes_per_s:.2f}",
            f"{r.tokens_per_s:.0f}",
            f"{r.tokens_per_s / base.tokens_per_s:.2f}",
            f"{base.generate_s / r.generate_s:.2f}" if r.generate_s > 0 else "-",
        )
    console.print(table)
    console.print(
        "target: ≥ 5× generated tokens/s at 16 slots vs 1. 'append s' (prefill of prompts and tool results)"
        " is the same work at every slot count and compute-bound on a CPU, so it bounds the end-to-end ratio;"
        " 'generate × first' is the speed-up of sampling and decode alone."
    )


@cli_errors
def bench_serve(
    checkpoint: Annotated[Path | None, typer.Option(help="checkpoint directory (default: a micro one, built)")] = None,
    requests: Annotated[int, typer.Option(help="timed requests per path")] = 20,
    max_tokens: Annotated[int, typer.Option(help="token budget of each generation")] = 16,
    turns: Annotated[int, typer.Option(help="reference actions before the conversation is sent (trip, d1)")] = 1,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "cpu",
    threads: Annotated[int, typer.Option(help="intra-op threads (1 is steadiest on a shared CPU)")] = 1,
) -> None:
    """Latency per request of toolgym serve (HTTP, openai client) vs the same greedy generation in process."""
    from toolgym.bench.serve import ServeBenchConfig, run_serve_bench

    config = ServeBenchConfig(
        checkpoint=checkpoint, requests=requests, max_tokens=max_tokens, turns=turns, device=device, threads=threads
    )
    served, local = run_serve_bench(config, log=lambda line: err_console.print(line, markup=False, highlight=False))
    table = Table(
        "path", "requests", "prompt tokens", "new tokens", "median ms", "p90 ms", "× in process",
        title="toolgym bench serve",
    )  # fmt: skip
    for r in (served, local):
        add_row(
            table,
            r.name,
            str(len(r.seconds)),
            str(r.prompt_tokens),
            str(r.completion_tokens),
            f"{r.median_ms:.1f}",
            f"{r.p90_ms:.1f}",
            f"{r.median_ms / local.median_ms:.2f}",
        )
    console.print(table)
    console.print(f"serving overhead: {served.median_ms - local.median_ms:.1f} ms per request (median)")


@cli_errors
def bench_train(
    models: Annotated[str, typer.Option(help="model configs, comma-separated: micro, default")] = "micro,default",
    steps: Annotated[int, typer.Option(help="timed optimizer steps per row and round")] = 6,
    rounds: Annotated[int, typer.Option(help="lm, sft alternations (sums are compared)")] = 2,
    batch_size: Annotated[int, typer.Option(help="rows per step (both loops)")] = 4,
    seq_len: Annotated[int, typer.Option(help="tokens per row (both loops)")] = 1024,
    family: Annotated[str, typer.Option(help="family of the SFT episodes")] = "code",
    difficulty: Annotated[int, typer.Option(help="difficulty of the SFT episodes")] = 1,
    tasks: Annotated[int, typer.Option(help="tasks synthesized for the SFT rows")] = 16,
    corpus_bytes: Annotated[int, typer.Option(help="standard-library corpus size")] = 1_000_000,
    threads: Annotated[int, typer.Option(help="intra-op threads (1 is steadiest on a shared CPU)")] = 1,
) -> None:
    """SFT tokens/s vs `train lm` tokens/s on the same model and token budget, side by side."""
    from toolgym.bench.train import TrainBenchConfig, run_train_bench
    from toolgym.synth import get_family

    get_family(family)  # an unknown id fails here, before any work
    config = TrainBenchConfig.model_validate(
        {
            "models": [m.strip() for m in models.split(",") if m.strip()],
            "steps": steps,
            "rounds": rounds,
            "batch_size": batch_size,
            "seq_len": seq_len,
            "family": family,
            "difficulty": difficulty,
            "tasks": tasks,
            "corpus_bytes": corpus_bytes,
            "threads": threads,
        }
    )
    rows = run_train_bench(config, log=lambda line: err_console.print(line, markup=False, highlight=False))
    table = Table(
        "model",
        "loop",
        "steps",
        "tokens",
        "pad share",
        "seconds",
        "tokens/s",
        "action tokens/s",
        "× first",
        title=f"toolgym bench train (batch {batch_size} x seq_len {seq_len}, SFT on {family} d{difficulty})",
    )
    base: dict[str, float] = {}
    for r in rows:
        first = base.setdefault(r.model, r.tokens_per_s)
        add_row(
            table,
            r.model,
            r.kind,
            str(r.steps),
            str(r.tokens),
            f"{r.pad_share:.1%}",
            f"{r.seconds:.1f}",
            f"{r.tokens_per_s:.0f}",
            f"{r.action_tokens_per_s:.0f}",
            f"{r.tokens_per_s / first:.2f}",
        )
    console.print(table)
    console.print("target: SFT ≥ 0.8× train lm tokens/s on the same model (× first: vs the model's lm row)")


@cli_errors
def bench_learn(
    out: Annotated[Path, typer.Option(help="run directory (a rerun resumes it)")] = Path("runs/learn"),
    profile: Annotated[str, typer.Option(help="default | lookup (+ lookup warm-up) | micro (tests)")] = "default",
    config: Annotated[
        Path | None, typer.Option("--config", help="a JSON LearnConfig (replaces the profile; see --show-config)")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="stop after this stage: synth|lm|sft|eval_sft|grpo|eval_grpo|no_<stabilizer>")
    ] = None,
    show_config: Annotated[bool, typer.Option("--show-config", help="print the settings as JSON and exit")] = False,
    device: Annotated[
        str | None, typer.Option(help="cpu | cuda | auto: run every model stage there (default: the config's, cpu)")
    ] = None,
) -> None:
    """Synth → LM → SFT → GRPO on domains d1-2, pass@1 on held-out worlds and archetypes; report and curve."""
    from toolgym.bench.learn import run_learn
    from toolgym.bench.learn_config import load_learn_config
    from toolgym.bench.learn_report import pass1_cell
    from toolgym.errors import ConfigError

    learn_config = load_learn_config(profile, config)
    if device is not None:
        if device not in ("cpu", "cuda", "auto"):
            raise ConfigError(f"--device must be cpu, cuda or auto, not {device!r}")
        learn_config = learn_config.on_device(device)  # type: ignore[arg-type]
    if show_config:
        console.print_json(learn_config.model_dump_json())
        return
    check_writable(out, "--out")
    interrupt_hint(f"finished stages are kept in {out}/learn.json; rerun the same command to resume")
    report = run_learn(
        out, learn_config, until, progress=console.is_terminal,
        log=lambda line: err_console.print(line, markup=False, highlight=False),
    )  # fmt: skip
    groups = report["groups"]
    table = Table("checkpoint", *(f"pass@1 {g}" for g in groups), title="toolgym bench learn")
    for ck in ("sft", "grpo"):
        add_row(table, ck, *(pass1_cell(report["pass@1"][f"{ck}/{g}"]) for g in groups))
    console.print(table)
    seconds = ", ".join(f"{name} {d['seconds']:.0f}s" for name, d in report["stages"].items())
    console.print(f"stages: {seconds}; report in {out}/report.md, curve in {out}/learning_curve.png", markup=False)


@cli_errors
def bench_grpo(
    checkpoint: Annotated[
        Path | None, typer.Option(help="policy checkpoint (default: a fresh default-config one)")
    ] = None,
    family: Annotated[str, typer.Option(help="family of the tasks (on the fly)")] = "domains",
    difficulty: Annotated[int, typer.Option(min=1, max=5, help="their difficulty")] = 1,
    tasks: Annotated[int, typer.Option(min=1, help="tasks (GRPO groups)")] = 2,
    group_size: Annotated[int, typer.Option(min=2, help="G; the batched rollout has tasks x G rows")] = 8,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="token budget of an action")] = 48,
    max_turns: Annotated[int, typer.Option(min=1, help="turns per episode")] = 3,
    rounds: Annotated[int, typer.Option(min=1, help="batch-1 / batched alternations (sums compared)")] = 2,
    threads: Annotated[int, typer.Option(min=1, help="torch intra-op threads")] = 2,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "cpu",
) -> None:
    """GRPO rollout tokens/s at batch 1 vs batched (same episodes), and a GRPO step's time by part."""
    from toolgym.bench.grpo import GRPOBenchConfig, run_grpo_bench
    from toolgym.synth import get_family

    get_family(family)  # an unknown id fails here, before any work
    config = GRPOBenchConfig.model_validate(
        {
            "checkpoint": checkpoint, "family": family, "difficulty": difficulty, "tasks": tasks,
            "group_size": group_size, "max_new_tokens": max_new_tokens, "max_turns": max_turns,
            "rounds": rounds, "threads": threads, "device": device,
        }
    )  # fmt: skip
    rows, parts = run_grpo_bench(config, log=lambda line: err_console.print(line, markup=False, highlight=False))
    table = Table("batch", "episodes", "generated tokens", "seconds", "tokens/s", "× batch 1", title="rollout")
    for r in rows:
        add_row(
            table, str(r.batch), str(r.episodes * config.rounds), str(r.generated), f"{r.seconds:.1f}",
            f"{r.tokens_per_s:.0f}", f"{r.tokens_per_s / rows[0].tokens_per_s:.2f}" if rows[0].tokens_per_s else "–",
        )  # fmt: skip
    console.print(table)
    step = Table("part", "seconds", "share", title=f"one GRPO step ({rows[1].batch} episodes)")
    for name in ("generate", "prefill", "env", "train", "other"):
        add_row(step, name, f"{parts[name]:.2f}", f"{parts[name] / parts['total']:.1%}")
    add_row(step, "total", f"{parts['total']:.2f}", "100%")
    console.print(step)
