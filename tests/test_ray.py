"""Ray (the ``toolgym[ray]`` extra) against a real local Ray runtime: synthesis and the rollout pool.

One Ray runtime of 2 CPUs serves the module (the session fixture ``ray_runtime``; it skips the
module when Ray is not installed). Actors are really killed (``ray.kill``) in the middle of an
episode: the episode is replayed once on a fresh actor and scores as it would have; killed again
(or with no actor left) it is dropped and counted, never scored 0.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from toolgym.envs.rollout import run_episode
from toolgym.envs.sources import MemorySource
from toolgym.envs.toolenv import make_env
from toolgym.errors import EpisodeLost
from toolgym.policy.evaluate import reference_policy
from toolgym.policy.runner import run_episodes
from toolgym.synth import get_family
from toolgym.synth.config import SynthConfig
from toolgym.synth.fly import SynthSource
from toolgym.synth.run import synthesize

pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[dev,ray]'")

from toolgym.envs.raypool import RayRolloutPool  # noqa: E402 - after the skip: it needs ray at run time

SMALL = SynthConfig(family="trip", seed=7, difficulty=(1, 2), tasks_per_world=2, random_tries=1, bluff_tries=1)


def tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of a dataset, every row, in one order."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
        return {n: con.execute(f"SELECT * FROM {n} ORDER BY ALL").fetchall() for n in names}
    finally:
        con.close()


def test_ray_synthesis_writes_the_local_pools_rows_and_resumes(ray_runtime, tmp_path):
    local, ray_run = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"
    synthesize(SMALL.model_copy(update={"count": 4, "executor": "local", "workers": 1}), local)
    first = synthesize(SMALL.model_copy(update={"count": 2, "executor": "ray", "workers": 2}), ray_run)
    more = synthesize(SMALL.model_copy(update={"count": 4, "executor": "ray", "workers": 2}), ray_run)
    assert (first.shipped, more.existing, more.shipped) == (2, 2, 2)
    expected = tables(local)
    assert len(expected["tasks"]) == 4 and expected["worlds"] and expected["trajectories"]
    assert tables(ray_run) == expected, "Ray's rows (resumed halfway) differ from the local pool's"
    assert ray_runtime.is_initialized(), "the executor left a runtime it did not start"


def fly(difficulty: int, seed: int = 0) -> tuple[Any, Any]:
    """An on-the-fly trip task and its world."""
    return SynthSource(get_family("trip"), [difficulty], None).get(f"trip-fly-s{seed}-d{difficulty}")


def kill(handle: Any) -> None:
    """``ray.kill`` an actor and wait until a call on it fails: the kill is asynchronous, and a call
    submitted at once can still be served (CI saw a step succeed on a just-killed actor)."""
    import ray

    ray.kill(handle)
    for _ in range(300):
        try:
            ray.get(handle.__ray_ready__.remote(), timeout=10)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
            return
        time.sleep(0.1)
    raise AssertionError("a killed Ray actor still answered after 30 s")


class KillAt:
    """The reference policy, killing every actor holding a slot of ``pool`` before its ``at``-th action."""

    def __init__(self, inner: Any, pool: RayRolloutPool, at: int) -> None:
        self.inner, self.pool, self.at, self.turn = inner, pool, at, 0

    def act(self, observation: str, info: dict[str, Any]) -> str:
        self.turn += 1
        if self.turn == self.at:
            for actor in self.pool.actors:
                if len(actor.free) < self.pool.slots:  # one of its slots is leased
                    kill(actor.handle)
        return self.inner.act(observation, info)


def test_a_killed_actor_mid_episode_is_replayed_once_and_scores_as_it_would_have(ray_runtime):
    task, world = fly(3)
    make = reference_policy(seed=0)
    opts = {"task_id": task.task_id}
    expected = run_episode(make_env("trip", source=MemorySource([(task, world)])), make(task, world, 0), 0, opts)
    assert expected.reward == 1.0 and expected.turns >= 2
    with RayRolloutPool(actors=2, slots=1) as pool:
        env = pool.make_env("trip", source=MemorySource([(task, world)]))
        traj = run_episode(env, KillAt(make(task, world, 0), pool, at=2), 0, opts)
        assert (traj.reward, traj.text) == (expected.reward, expected.text)
        assert pool.stats == {"episodes": 1, "actor_deaths": 1, "retried": 1, "dropped": 0}
        assert all(len(a.free) == 1 for a in pool.actors), "the episode's slot was not released"


def test_an_actor_killed_again_drops_the_episode_and_counts_it(ray_runtime):
    task, world = fly(3, seed=1)
    with RayRolloutPool(actors=2, slots=1, respawn=False) as pool:
        env = pool.make_env("trip", source=MemorySource([(task, world)]))
        policy = reference_policy(seed=0)(task, world, 0)
        obs, info = env.reset(seed=0, options={"task_id": task.task_id})
        env.step(policy.act(obs, info))
        for actor in pool.actors:  # the leased one and the one the retry would take
            kill(actor.handle)
        with pytest.raises(EpisodeLost, match="died, and again on the retry"):
            env.step("anything")
        assert pool.stats == {"episodes": 1, "actor_deaths": 2, "retried": 1, "dropped": 1}


def test_the_eval_runner_leaves_lost_episodes_out_and_the_pool_counts_them(ray_runtime):
    items = [fly(1, seed=s) for s in range(3)]
    jobs = [(t, w, i) for t, w in items for i in range(2)]
    with RayRolloutPool(actors=1, slots=1, respawn=False) as pool:
        make = reference_policy(seed=0)
        doomed = jobs[3]

        def factory(task: Any, world: Any, i: int) -> Any:
            policy = make(task, world, i)
            return KillAt(policy, pool, at=1) if (task.task_id, i) == (doomed[0].task_id, doomed[2]) else policy

        records = run_episodes(jobs, factory, env_maker=pool.make_env)
    # episodes 0-2 ran; the 4th lost its only actor (no respawn), and so did every one after it
    assert [(r.task_id, r.sample) for r in records] == [(t.task_id, i) for t, _, i in jobs[:3]]
    assert all(r.reward == 1.0 for r in records)
    assert pool.stats["dropped"] == 3 and pool.stats["actor_deaths"] == 1


def test_an_unreachable_address_is_one_error_line_and_exit_code_2(tmp_path):
    out = tmp_path / "x.duckdb"
    cmd = [sys.executable, "-m", "toolgym.cli", "synth", "--count", "2", "--out", str(out)]
    r = subprocess.run([*cmd, "--executor", "ray", "--address", "127.0.0.1:1"], capture_output=True, text=True)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach a Ray runtime at '127.0.0.1:1'"), r.stderr
    assert "ray start --head" in lines[0]
    assert not out.exists()
    r = subprocess.run([*cmd, "--address", "127.0.0.1:1"], capture_output=True, text=True)
    assert r.returncode == 2 and "needs --executor ray" in r.stderr


def test_toolgym_eval_runs_its_envs_on_ray_actors(ray_runtime, tmp_path):
    from typer.testing import CliRunner

    from toolgym.cli import app

    args = ["eval", "--policy", "reference", "--limit", "2", "-n", "2", "--difficulty", "1"]
    r = CliRunner().invoke(app, [*args, "--executor", "ray", "--out", str(tmp_path / "ray")])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert (summary["episodes"], summary["dropped"], summary["complete"]) == (4, 0, True)
    assert summary["table"][-1]["pass@1"][0] == 1.0
    assert ray_runtime.is_initialized(), "eval left a runtime it did not start"
    r = CliRunner().invoke(app, [*args, "--executor", "dask"])
    assert r.exit_code == 2 and "local or ray" in r.output


@pytest.mark.slow
def test_a_grpo_rollout_on_ray_actors_is_the_local_rollout(ray_runtime):
    import torch

    from toolgym.policy.corpus import stdlib_corpus
    from toolgym.policy.generate import SamplingParams
    from toolgym.policy.grpo_rollout import rollout
    from toolgym.policy.model import ModelConfig, Transformer
    from toolgym.policy.tokenizer import Tokenizer

    items = [fly(1, seed=s) for s in range(2)]
    prompts = [make_env("trip", source=MemorySource([it])).reset(seed=0)[0] for it in items]
    tok = Tokenizer.train(stdlib_corpus(max_bytes=50_000, val_fraction=0.5).train + prompts * 3, vocab_size=1000)
    model = Transformer(ModelConfig.micro(vocab_size=tok.vocab_size), seed=0).eval()
    params = SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=6)
    local = rollout(model, tok, items, 2, params, seed=0, env_kwargs={"max_turns": 2})
    with RayRolloutPool(actors=2, slots=2, env_kwargs={"max_turns": 2}) as pool:
        remote = rollout(model, tok, items, 2, params, seed=0, env_kwargs={"max_turns": 2}, env_maker=pool.make_env)
        assert pool.stats["episodes"] == 4 and all(len(a.free) == 2 for a in pool.actors)
    assert len(local.episodes) == len(remote.episodes) == 4 and not remote.env_errors
    for a, b in zip(local.episodes, remote.episodes, strict=True):
        assert torch.equal(a.ids, b.ids) and (a.reward, a.turns) == (b.reward, b.turns)
