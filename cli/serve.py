"""``toolgym serve``: the in-repo policy as an OpenAI-compatible server (``toolgym.policy.serve``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from toolgym.cli.common import SEED_MAX, console
from toolgym.cli.errors import cli_errors


def served_name(checkpoint: Path) -> str:
    """The model id clients pass: the checkpoint directory's name, or its run's (``runs/sft/checkpoint`` -> ``sft``)."""
    path = checkpoint.resolve()
    return path.parent.name if path.name == "checkpoint" and path.parent.name else path.name


@cli_errors
def serve(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint directory (toolgym train …)")],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port (0: a free one)")] = 8000,
    device: Annotated[str | None, typer.Option(help="cpu | cuda | auto (default auto: cuda when available)")] = None,
    name: Annotated[
        str | None,
        typer.Option(help="model id clients pass (default: the directory's name, or the run's for DIR/checkpoint)"),
    ] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="token budget of a request that sets none")] = 256,
    max_tokens_limit: Annotated[int, typer.Option(min=1, help="the most tokens a request may ask for")] = 4096,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="seed of requests that carry none")] = 0,
    cache_rows: Annotated[int, typer.Option(min=1, help="conversations the prefix cache keeps")] = 4,
    max_context: Annotated[int, typer.Option(min=2, help="most tokens of a prompt plus its max_tokens")] = 8192,
) -> None:
    """Serve a checkpoint at /v1/chat/completions (tools, tool_calls, reasoning_content) until Ctrl-C (exit 0)."""
    from toolgym.errors import ConfigError
    from toolgym.policy.model_policy import resolve_device
    from toolgym.policy.serve import ServeConfig
    from toolgym.policy.serve import serve as run

    if device not in (None, "auto", "cpu", "cuda"):
        raise ConfigError(f"--device must be cpu, cuda or auto, got {device!r}")
    device = resolve_device(device or "auto")  # cuda where torch sees none: one error line, as eval
    config = ServeConfig(
        name=name or served_name(checkpoint),
        device=device,
        seed=seed,
        max_tokens=max_tokens,
        max_tokens_limit=max_tokens_limit,
        cache_rows=cache_rows,
        max_context=max_context,
    )
    run(str(checkpoint), host, port, config, on_ready=lambda url: console.print(f"serving {config.name} at {url}"))
    console.print("stopped")  # Ctrl-C, the normal way to stop a server: exit 0, no error line
