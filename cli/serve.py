"""``toolgym serve``: the in-repo policy as an OpenAI-compatible server (``toolgym.policy.serve``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from toolgym.cli.common import SEED_MAX, console
from toolgym.cli.errors import cli_errors


@cli_errors
def serve(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint directory (toolgym train …)")],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port (0: a free one)")] = 8000,
    device: Annotated[str | None, typer.Option(help="cpu | cuda (default: cuda when available)")] = None,
    name: Annotated[str | None, typer.Option(help="model id clients pass (default: the directory's name)")] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="token budget of a request that sets none")] = 256,
    max_tokens_limit: Annotated[int, typer.Option(min=1, help="the most tokens a request may ask for")] = 4096,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="seed of requests that carry none")] = 0,
    cache_rows: Annotated[int, typer.Option(min=1, help="conversations the prefix cache keeps")] = 4,
) -> None:
    """Serve a checkpoint at /v1/chat/completions (tools, tool_calls, reasoning_content) until Ctrl-C."""
    from toolgym.errors import ConfigError
    from toolgym.policy.serve import ServeConfig
    from toolgym.policy.serve import serve as run

    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device not in ("cpu", "cuda"):
        raise ConfigError(f"--device must be cpu or cuda, got {device!r}")
    config = ServeConfig(
        name=name or checkpoint.resolve().name,
        device=device,
        seed=seed,
        max_tokens=max_tokens,
        max_tokens_limit=max_tokens_limit,
        cache_rows=cache_rows,
    )
    run(str(checkpoint), host, port, config, on_ready=lambda url: console.print(f"serving {config.name} at {url}"))
