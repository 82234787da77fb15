"""The ``toolgym`` command: one Typer app, each command a thin function over library code.

Commands: ``families``, ``synth``, ``show``, ``tasks``, ``play``, ``eval``, ``export``,
``serve``, ``bench …`` and ``train lm``.
Every error a user can cause (a bad argument, an unknown name, a corrupt or locked dataset, a
path that cannot be read or written) is printed as one line starting with ``error:`` on stderr
and exits with code 2; nothing prints a traceback for it (:mod:`toolgym.cli.errors` says how).
Seeds are range-checked by Click (``0 <= seed < 2**63``), before any file is created.

One module per command group, and this module's table below registers each command with one line
(in the order ``toolgym --help`` lists them)::

    families families                        the catalog: every family and archetype, with an example prompt
    synth    synth                           synthesizing a dataset
    data     show, tasks, export             reading a dataset (and load_task, for show and play)
    play     play                            a human plays a task in the terminal
    eval     eval                            pass@k / pass^k of a policy
    serve    serve                           the in-repo policy as an OpenAI-compatible server
    serve_mcp  mcp                           a task's tools over MCP (stdio), submit returning the reward
    bench    bench env|synth|sandbox|model|eval|train|learn   the benchmarks of toolgym.bench, printed as tables
    train    train lm, train sft, train grpo  training the in-repo policy (LM, SFT cold start, GRPO)
    common   consoles, progress bar, table rows, the seed bound
    errors   one ``error:`` line for every usage error; range parsing; output-path checks
"""

from __future__ import annotations

import typer

from toolgym.cli import bench, data, eval, families, play, serve, serve_mcp, synth, train
from toolgym.cli.common import SEED_MAX
from toolgym.cli.errors import OneLineErrors

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


@app.callback()
def _load_plugins() -> None:
    """Before any command: register the families installed plugins list (``toolgym.synth.load_plugins``).

    A plugin that fails to import or register is one ``warning:`` line on stderr naming it and the
    cause; every other command and family stays usable (using the broken family then fails as an
    unknown family, one ``error:`` line).
    """
    from toolgym.synth import load_plugins

    for name, why in load_plugins().items():
        typer.echo(f"warning: plugin family {name!r} not loaded ({why})", err=True)


app.command()(families.families)
app.command()(synth.synth)
app.command()(data.show)
app.command()(data.tasks)
app.command()(play.play)
app.command(name="eval")(eval.eval_)
app.command()(data.export)
app.command()(serve.serve)
app.command()(serve_mcp.mcp)
bench_app.command("env")(bench.bench_env)
bench_app.command("synth")(bench.bench_synth)
bench_app.command("sandbox")(bench.bench_sandbox)
bench_app.command("model")(bench.bench_model)
bench_app.command("eval")(bench.bench_eval)
bench_app.command("serve")(bench.bench_serve)
bench_app.command("train")(bench.bench_train)
bench_app.command("learn")(bench.bench_learn)
bench_app.command("grpo")(bench.bench_grpo)
train_app.command("lm")(train.train_lm)
train_app.command("sft")(train.train_sft)
train_app.command("grpo")(train.train_grpo)


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["SEED_MAX", "app", "main"]
