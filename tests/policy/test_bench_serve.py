"""``toolgym bench serve`` on tiny settings: a real server and the in-process generation, side by side."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

pytest.importorskip("fastapi")
pytest.importorskip("openai")

from toolgym.bench.serve import LatencyRow, ServeBenchConfig, conversation  # noqa: E402
from toolgym.cli import app  # noqa: E402


def test_bench_serve_prints_both_paths_and_the_overhead():
    result = CliRunner().invoke(app, ["bench", "serve", "--requests", "2", "--max-tokens", "2", "--turns", "0"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any("toolgym bench serve" in line for line in lines)
    header = next(line for line in lines if "median ms" in line)
    assert all(c in header for c in ("path", "requests", "prompt tokens", "new tokens", "p90 ms", "× in process"))
    served = next(line for line in lines if line.lstrip("│┃ ").startswith("served"))
    local = next(line for line in lines if line.lstrip("│┃ ").startswith("in process"))
    cells = [[c.strip() for c in row.strip("│┃ ").split("│")] for row in (served, local)]
    assert [c[1] for c in cells] == ["2", "2"]  # requests
    assert cells[0][2] == cells[1][2] and int(cells[0][2]) > 1000  # the same trip prompt (~2.3k tokens)
    assert cells[0][3] == cells[1][3] and 1 <= int(cells[0][3]) <= 2  # the same greedy generation
    assert cells[1][6] == "1.00" and float(cells[0][4]) > 0
    assert "serving overhead:" in result.output and "ms per request" in result.output


def test_latency_row_percentiles_and_config():
    row = LatencyRow("x", [0.001 * i for i in range(1, 11)], 1, 1)
    assert row.median_ms == pytest.approx(5.5) and row.p90_ms == pytest.approx(9.0)
    assert LatencyRow("x", [0.004], 1, 1).p90_ms == pytest.approx(4.0)
    with pytest.raises(ValueError, match="extra"):
        ServeBenchConfig(request=3)  # type: ignore[call-arg]


def test_the_conversation_is_a_real_env_turn():
    text, messages, tools = conversation(1)
    assert messages[0]["role"] == "system" and messages[-1]["role"] == "tool" and tools
    assert text.endswith("<|assistant|>")


def test_turns_past_the_episode_s_end_are_a_clear_error():
    """A finished episode has no next turn: the served text would differ from the env's (it was a RuntimeError)."""
    from toolgym.errors import ConfigError

    with pytest.raises(ConfigError, match="the reference episode ends after"):
        conversation(1000)
