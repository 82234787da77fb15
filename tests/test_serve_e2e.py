"""End to end through the CLI: ``train lm`` → ``serve`` → ``eval --policy openai`` equals ``eval --policy model``.

The openai eval runs twice, once per API of the server: Chat Completions (``--api chat``) and
Responses (``--api responses``, ``POST /v1/responses``); both must equal the in-process eval.

A micro checkpoint (:func:`toolgym.bench.eval.micro_checkpoint`: a 4096-id BPE and the
``ModelConfig.micro`` model) is trained a few steps with ``toolgym train lm --init``, served by a
real ``toolgym serve`` process on 127.0.0.1, and evaluated twice on the same on-the-fly trip tasks
and seeds with greedy sampling: through the endpoint (``--policy openai``, every request a whole
conversation over HTTP) and in process (``--policy model``, batched, KV-cached, token-exact).

What "the actions are equal" means (decision). Both evals write each episode's whole text
``obs0 + act1 + obs1 + …`` to ``results.jsonl``. The openai path's actions are the server's
replies re-rendered from ``tool_calls``/``content``/``reasoning_content``
(:func:`~toolgym.policy.openai_policy.action_text`), i.e. canonical markup, while the model path
keeps the sampled text as it is. Each action is therefore compared after the same canonical
re-rendering (parse, render), which is the identity on every action the chat API can carry (the
env's chat view renders such conversations byte for byte, ``tests/policy/test_serve.py``); then
the rewards, verdict reasons, turn and call counts are compared as they are, and the whole texts
after the same per-action re-rendering. When a model emits text the chat API cannot carry (markup
inside content, a partial UTF-8 sequence, a token split other than the tokenizer's own), the
server necessarily sees a different context from the in-process policy's; that is a property of
every OpenAI-compatible path, not of toolgym, and this test's checkpoint and tasks do not hit it
(the assertions say so if they ever do).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("fastapi")
pytest.importorskip("openai")

from toolgym.cli import app  # noqa: E402
from toolgym.envs import markup as mk  # noqa: E402
from toolgym.policy.openai_policy import action_text  # noqa: E402

runner = CliRunner()
#: Tasks, samples, turns and tokens per action: real generations, well under a minute on a shared CPU.
EVAL = ("--family", "trip", "--difficulty", "1", "--limit", "2", "-n", "2", "--max-turns", "3", "--seed", "0")
SAMPLING = ("--temperature", "0", "--max-new-tokens", "8")


def invoke(*args: object) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A micro checkpoint trained 3 steps by ``toolgym train lm`` (from the micro init)."""
    from toolgym.bench.eval import micro_checkpoint

    root = tmp_path_factory.mktemp("e2e")
    init = micro_checkpoint(root / "init")
    out = root / "lm"
    log = invoke(
        "train", "lm", "--init", init, "--out", out, "--steps", 3, "--batch-size", 2, "--seq-len", 32,
        "--eval-every", 3, "--corpus-bytes", 150_000,
    )  # fmt: skip
    assert "3 steps" in log
    return out


def wait_ready(proc: subprocess.Popen, timeout: float = 60) -> str:
    """The API base the server prints once it listens, after ``/v1/models`` answers."""
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("serving lm at http://127.0.0.1:"):
        proc.kill()
        raise AssertionError(f"toolgym serve did not start: {line!r} {proc.communicate()[1]!r}")
    base = line.split(" at ", 1)[1].strip()
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(base + "/models", timeout=5) as r:
                assert [m["id"] for m in json.loads(r.read())["data"]] == ["lm"]
                return base
        except (urllib.error.URLError, ConnectionError):
            assert proc.poll() is None and time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.05)


def canonical(action: str) -> str:
    """An action as the chat API carries it: parsed, then rendered (what the openai path writes)."""
    p = mk.parse_action(action)
    calls = [] if p.fatal else [(c.name, mk.dumps(c.arguments)) for c in p.tool_calls]
    return action_text(p.content, p.reasoning, calls, ended=p.ended)


def pieces(text: str, turns: int) -> tuple[list[str], list[str]]:
    """``(observations, actions)`` of an episode text: each action follows the ``<|assistant|>`` closing an observation.

    An action ends where the env's reply starts, at ``<|tool|>``; the ``<|end|>`` before it (the
    action's own, or the env's closing of an action cut at its token budget) stays with the action.
    """
    obs, acts, rest = [], [], text
    for _ in range(turns):
        head, sep, rest = rest.partition(mk.ASSISTANT)
        assert sep, "an episode text with fewer actions than turns"
        obs.append(head + sep)
        cut = rest.find(mk.TOOL)
        cut = len(rest) if cut < 0 else cut
        acts.append(rest[:cut])  # with its <|end|>, its own or the env's (the same on both paths)
        rest = rest[cut:]
    obs.append(rest)
    return obs, acts


def results(out: Path) -> dict[tuple[str, int], dict]:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return {(r["task_id"], r["sample"]): r for r in rows}


@pytest.fixture(scope="module")
def local(checkpoint, tmp_path_factory) -> dict[tuple[str, int], dict]:
    """The in-process eval (``--policy model``) the served evals are compared to, by (task, sample)."""
    out = tmp_path_factory.mktemp("model")
    invoke("eval", "--policy", "model", "--checkpoint", checkpoint, "--device", "cpu", *EVAL, *SAMPLING, "--out", out)
    return results(out)


@pytest.mark.slow
@pytest.mark.parametrize("api", ["chat", "responses"])
def test_eval_through_toolgym_serve_equals_the_in_process_model_policy(checkpoint, local, api, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "toolgym.cli", "serve", str(checkpoint), "--host", "127.0.0.1", "--port", "0"]
    server = subprocess.Popen(
        [*cmd, "--device", "cpu", "--max-tokens", "8", "--max-tokens-limit", "64"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        base = wait_ready(server)
        invoke("eval", "--policy", "openai", "--api", api, "--base-url", base, *EVAL, *SAMPLING, "--out", tmp_path)
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert server.returncode in (0, -15), err  # uvicorn exits cleanly on SIGTERM

    served = results(tmp_path)
    assert len(served) == 4 and served.keys() == local.keys()
    generated = 0
    for key, a in served.items():
        b = local[key]
        for field in ("reward", "reason", "turns", "tool_calls"):
            assert a[field] == b[field], (key, field)
        assert a["turns"] == 3 and a["reason"] == "truncated"  # 8 tokens of a 3-step model never submit
        obs_a, acts_a = pieces(a["text"], a["turns"])
        obs_b, acts_b = pieces(b["text"], b["turns"])
        assert acts_a == [canonical(x) for x in acts_b], key
        assert obs_a == obs_b, key
        assert b["tokens"] and b["tokens"] <= 3 * 8
        generated += sum(len(x) for x in acts_b)
    assert generated > 0  # real generations, not empty turns
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["settings"]["max_turns"] == 3 and summary["policy"]["options"]["temperature"] == 0.0
    assert summary["policy"]["options"]["api"] == api
