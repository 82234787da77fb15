"""``toolgym bench serve``: latency of one request to ``toolgym serve`` vs the same generation in process.

One real env conversation (a trip episode, difficulty 1, after ``turns`` reference actions: its
``info["messages"]``, ``info["tools"]`` and the env's text) is answered ``requests`` times each way,
alternating so both see the same machine load:

* **served**: the official ``openai`` client sends the conversation to a real uvicorn server
  (:class:`~toolgym.policy.serve.BackgroundServer`, a thread in this process, on a free port of
  127.0.0.1) with ``temperature=0`` and a fixed ``max_tokens``: HTTP, JSON, request validation,
  rendering the messages to the markup, generation, parsing the action into ``tool_calls``, and
  the client's parsing of the reply;
* **in process**: the server's own generation function (:meth:`Engine.generate
  <toolgym.policy.serve.Engine.generate>`: tokenize, one ``Session`` row, greedy until
  ``<|end|>`` or the budget) on the env's text, which is what ``--policy model`` does for one row.

Both generate the same tokens (greedy on the same context; checked: the completion token counts
must agree), so the difference of the medians is the serving overhead per request. Both go
through the same engine, whose prefix cache holds the conversation after the warm-up: the
timings are of a turn whose context is cached (as every turn after an episode's first is), so
the overhead is not hidden behind a prefill. One untimed
warm-up request each way comes first. Without ``--checkpoint`` the micro checkpoint of
:func:`toolgym.bench.eval.micro_checkpoint` is built in a temporary directory.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from toolgym.bench.eval import Log, bench_checkpoint


class ServeBenchConfig(BaseModel):
    """Settings of ``toolgym bench serve``."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: Path | None = Field(None, description="checkpoint directory; None: build the micro one")
    requests: int = Field(20, ge=1, description="timed requests per path")
    max_tokens: int = Field(16, ge=1, description="token budget of each generation")
    turns: int = Field(1, ge=0, description="reference actions taken before the conversation is sent")
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    threads: int = Field(1, ge=1, description="torch intra-op threads")


@dataclass
class LatencyRow:
    """One path's latencies per request.

    Attributes:
        name: ``served`` or ``in process``.
        seconds: wall seconds of each timed request, in order.
        prompt_tokens: tokens of the context.
        completion_tokens: tokens generated per request.
    """

    name: str
    seconds: list[float]
    prompt_tokens: int
    completion_tokens: int

    @property
    def median_ms(self) -> float:
        """Median latency in milliseconds."""
        return 1000 * statistics.median(self.seconds)

    @property
    def p90_ms(self) -> float:
        """90th-percentile latency in milliseconds (nearest rank)."""
        ordered = sorted(self.seconds)
        return 1000 * ordered[min(len(ordered) - 1, max(0, round(0.9 * len(ordered)) - 1))]


def conversation(turns: int) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """``(env text, messages, tools)`` of trip task s0 at difficulty 1 after ``turns`` reference actions.

    Raises:
        ConfigError: the episode ends within ``turns`` actions (a finished episode has no next
            turn to generate: the served text would differ from the env's by the closing markup).
    """
    import toolgym
    from toolgym.envs.toolenv import make_env
    from toolgym.errors import ConfigError

    env = make_env("trip", difficulty=1, render_mode="ansi")
    obs, info = env.reset(seed=0)
    agent = toolgym.POLICIES.get("reference")(seed=0)(env.task, env.world, 0)
    for done in range(turns):
        obs, _, term, trunc, info = env.step(agent.act(obs, info))
        if term or trunc:
            raise ConfigError(f"--turns {turns}: the reference episode ends after {done + 1} actions; use fewer turns")
    return env.render(), info["messages"], info["tools"]


def run_serve_bench(config: ServeBenchConfig, log: Log = lambda line: None) -> list[LatencyRow]:
    """Time ``config.requests`` served and in-process generations of the same conversation.

    Returns:
        ``[served, in process]``.

    Raises:
        ConfigError: a missing ``fastapi``/``uvicorn``/``openai``.
        CheckpointError: a missing, corrupt or mismatched checkpoint.
        RuntimeError: when the two paths generate different numbers of tokens (not the same work).
    """
    from toolgym.errors import ConfigError
    from toolgym.policy.checkpoint import load_checkpoint
    from toolgym.policy.model_policy import resolve_device
    from toolgym.policy.openai_policy import INSTALL_HINT, wire_messages

    try:
        import openai

        from toolgym.policy.serve import BackgroundServer, Engine, ServeConfig, create_app
    except ImportError as exc:
        raise ConfigError(f"toolgym bench serve needs fastapi, uvicorn and openai ({INSTALL_HINT}): {exc}") from None
    with bench_checkpoint(config.checkpoint, config.threads, log) as checkpoint:
        device = resolve_device(config.device)
        budget = config.max_tokens
        engine = Engine(
            load_checkpoint(checkpoint, device=device),
            ServeConfig(name="bench", device=device, max_tokens=budget, max_tokens_limit=budget),
        )
        text, messages, tools = conversation(config.turns)
        wire = wire_messages(messages)
        with BackgroundServer(create_app(engine)) as url:
            client: Any = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)

            def served() -> tuple[int, int]:
                r = client.chat.completions.create(
                    model="bench", messages=wire, tools=tools, temperature=0, max_tokens=budget
                )
                return r.usage.prompt_tokens, r.usage.completion_tokens

            def local() -> tuple[int, int]:
                return engine.generate(text, 0.0, 1.0, budget, None)[1:3]

            rows = [LatencyRow("served", [], 0, 0), LatencyRow("in process", [], 0, 0)]
            for i in range(config.requests + 1):  # the first round warms up, untimed
                for row, fn in zip(rows, (served, local), strict=True):
                    start = time.perf_counter()
                    row.prompt_tokens, row.completion_tokens = fn()
                    if i:
                        row.seconds.append(time.perf_counter() - start)
                if i:
                    log(f"request {i}: served {rows[0].seconds[-1] * 1000:.0f} ms, in process "
                        f"{rows[1].seconds[-1] * 1000:.0f} ms")  # fmt: skip
        if (rows[0].prompt_tokens, rows[0].completion_tokens) != (rows[1].prompt_tokens, rows[1].completion_tokens):
            raise RuntimeError(
                f"served and in-process generations differ: {rows[0].prompt_tokens}+{rows[0].completion_tokens} "
                f"vs {rows[1].prompt_tokens}+{rows[1].completion_tokens} tokens"
            )
        return rows
