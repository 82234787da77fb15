"""``toolgym synth``: synthesizing a family's tasks into a dataset (``toolgym families`` lists the families)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

import toolgym
from toolgym.cli.common import (
    COUNT_MAX,
    SEED_MAX,
    ApiKeyEnvOption,
    BaseUrlOption,
    CheckpointOption,
    ConcurrencyOption,
    DeviceOption,
    MaxNewTokensOption,
    ModelOption,
    TemperatureOption,
    TimeoutOption,
    TopPOption,
    console,
    policy_options,
    progress,
)
from toolgym.cli.errors import check_writable, cli_errors, interrupt_hint, parse_range
from toolgym.errors import ConfigError


@cli_errors
def synth(
    family: Annotated[str, typer.Option(help="family id (see `toolgym families`)")] = "trip",
    count: Annotated[int, typer.Option(help="tasks to ship")] = 1000,
    difficulty: Annotated[str, typer.Option(help="difficulty or range, e.g. 3 or 1-5")] = "1-5",
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="run seed: same seed and settings, same rows")] = 0,
    workers: Annotated[int | None, typer.Option(help="processes (default: every core)")] = None,
    executor: Annotated[str, typer.Option(help="how worlds run: serial, local or ray (toolgym.EXECUTORS)")] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray head to join, HOST:PORT or auto (--executor ray; default: a local runtime)")
    ] = None,
    out: Annotated[Path, typer.Option(help="dataset file (created, or resumed)")] = Path("datasets/toolgym.duckdb"),
    tasks_per_world: Annotated[
        int | None, typer.Option(help="candidate tasks per world [default: the family's, <= COUNT/10/difficulties]")
    ] = None,
    holdout: Annotated[bool, typer.Option(help="put every world of this family in the test split")] = False,
    holdout_archetypes: Annotated[
        str, typer.Option(help="archetypes whose worlds all go to the test split, comma-separated (domains)")
    ] = "",
    random_tries: Annotated[int, typer.Option(help="random-agent gate tries per task")] = 8,
    bluff_tries: Annotated[int, typer.Option(help="bluff gate tries per task")] = 2,
    solvable_by: Annotated[
        str | None,
        typer.Option(help="keep only tasks some but not every one of K samples of this policy solves"),
    ] = None,
    k: Annotated[
        int | None,
        typer.Option("--k", min=2, max=COUNT_MAX, help="samples of the --solvable-by policy per task [default: 8]"),
    ] = None,
    checkpoint: CheckpointOption = None,
    device: DeviceOption = None,
    temperature: TemperatureOption = None,
    top_p: TopPOption = None,
    max_new_tokens: MaxNewTokensOption = None,
    base_url: BaseUrlOption = None,
    model: ModelOption = None,
    api_key_env: ApiKeyEnvOption = None,
    concurrency: ConcurrencyOption = None,
    timeout: TimeoutOption = None,
    max_turns: Annotated[
        int | None,
        typer.Option(min=1, max=COUNT_MAX, help="turns per episode of the --solvable-by policy (default: the env's)"),
    ] = None,
) -> None:
    """Synthesize tasks (reference run + quality gates [+ solvability filter]) into a DuckDB dataset; resumable.

    The policy options (``--checkpoint`` … ``--timeout``, as ``toolgym eval`` takes them) configure
    the ``--solvable-by`` policy, and ``--max-turns`` its episodes; given without it they are refused.
    """
    from toolgym.synth.config import SynthConfig
    from toolgym.synth.run import synthesize

    extra = _filter_settings(solvable_by, k, locals()) | ({"workers": workers} if workers is not None else {})
    per_world = default_tasks_per_world(family, count, difficulty) if tasks_per_world is None else tasks_per_world
    config = SynthConfig(
        family=family,
        count=count,
        difficulty=parse_range(difficulty),
        seed=seed,
        tasks_per_world=per_world,
        holdout=holdout,
        holdout_archetypes=[a.strip() for a in holdout_archetypes.split(",") if a.strip()],
        random_tries=random_tries,
        bluff_tries=bluff_tries,
        executor=executor,
        **extra,
    )
    toolgym.EXECUTORS.get(executor)  # an unknown name is an error before any file is created
    if solvable_by is not None:
        toolgym.POLICIES.get(solvable_by)
    check_writable(out, "--out")  # after the settings are valid, before any file is created
    solver = _solver(config)  # the policy checks its options (and loads a checkpoint) before any file is created
    interrupt_hint("the dataset keeps every committed batch; rerun the same command to resume")
    try:
        with _ray_runtime(executor, address, config.workers), progress() as bar:
            job = bar.add_task(f"synth {family}", total=count)
            stats = synthesize(config, out, lambda done, total: bar.update(job, completed=done), solver)
    finally:
        if solver is not None:
            solver.close()
    _report(stats, out, family, count)


@contextmanager
def _ray_runtime(executor: str, address: str | None, workers: int) -> Iterator[None]:
    """With ``--executor ray``, the Ray runtime joined for the block (left after it); otherwise nothing.

    The runtime is the one at ``address`` (None: ``RAY_ADDRESS``, else a local one of ``workers`` CPUs).

    Raises:
        ConfigError: ``--address`` without ``--executor ray``; Ray is not installed.
        ExecutorError: ``address`` cannot be reached (one line, before the dataset is created).
    """
    if executor != "ray":
        if address is not None:
            raise ConfigError(f"--address {address} is the Ray head to join: it needs --executor ray")
        yield
        return
    from toolgym.envs.raypool import connect, disconnect

    joined = connect(address, num_cpus=workers)
    try:
        yield
    finally:
        if joined:
            disconnect()


def _filter_settings(solvable_by: str | None, k: int | None, given: dict[str, Any]) -> dict[str, Any]:
    """The solvability filter's fields of the SynthConfig (none without ``--solvable-by``).

    Args:
        solvable_by: The ``--solvable-by`` policy, or None.
        k: ``--k`` (None: not given; 8 with a filter).
        given: The command's parameters (the policy options among them).

    Raises:
        ConfigError: A policy option or ``--k`` was given without ``--solvable-by`` (naming each).
    """
    options = {o: str(v) if isinstance(v, Path) else v for o, v in policy_options(given).items()}
    if given.get("max_turns") is not None:  # an env limit, recorded with the filter's settings
        options["max_turns"] = given["max_turns"]
    if solvable_by is None:
        if k is not None:
            options = {"k": k, **options}
        if options:
            named = ", ".join(f"--{o.replace('_', '-')} {v}" for o, v in options.items())
            raise ConfigError(f"{named}: policy options need --solvable-by POLICY (the filter's policy)")
        return {}
    return {"solvable_by": solvable_by, "solvable_k": 8 if k is None else k, "solvable_options": options}


def _report(stats: Any, out: Path, family: str, count: int) -> None:
    """Print what the run did (one line)."""
    if stats.shipped == 0 and stats.existing >= count:
        console.print(
            f"{out} is already complete: it holds {stats.existing} {family} tasks (--count {count}); nothing to do",
            markup=False,
        )
        return
    resumed = "" if stats.resumed_from is None else f" (resumed: {stats.existing} were already there)"
    rate = stats.shipped / stats.seconds if stats.seconds else 0.0
    shown = f"{rate:.0f}" if rate >= 10 else f"{rate:.2g}"  # 166, 2.7, 0.43 (.3g wrote 1.23e+03)
    console.print(
        f"shipped {stats.shipped} tasks to {out}{resumed} in {stats.seconds:.1f}s ({shown} tasks/s); "
        f"candidates {stats.candidates}, dropped {stats.dropped or 'none'}",
        markup=False,
    )


def _solver(config: Any) -> Any:
    """The solvability filter's solver for ``config`` (None without ``--solvable-by``).

    Raises:
        ConfigError: The policy refuses an option (naming it and those it takes).
    """
    if config.solvable_by is None:
        return None
    from toolgym.policy.solvable import policy_solver

    return policy_solver(config)


def default_tasks_per_world(family: str, count: int, difficulty: str) -> int:
    """Candidate tasks per world when ``--tasks-per-world`` is not given.

    The family's own figure (4 to 64: a world that is costly to build serves many tasks), but at
    most ``count / (10 x difficulties)``: otherwise ``--count 20`` of a 32-task family shipped
    one world, one difficulty and one split (a newcomer's report, issue 13).
    """
    from toolgym.synth import get_family

    lo, hi = parse_range(difficulty)
    return max(1, min(get_family(family).tasks_per_world, count // (10 * (hi - lo + 1))))
