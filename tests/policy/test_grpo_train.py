"""GRPO rollouts and loop on a micro model: records, filters, faults, a 2-step smoke run, resume, CLI."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from toolgym.cli import app
from toolgym.errors import ConfigError, TrainingDivergedError
from toolgym.policy import grpo_rollout, grpo_train
from toolgym.policy.checkpoint import load_checkpoint, save_checkpoint
from toolgym.policy.generate import SamplingParams
from toolgym.policy.grpo import action_logprobs, make_train_batch
from toolgym.policy.grpo_rollout import RolloutBatch, RolloutEpisode, rollout
from toolgym.policy.grpo_tasks import Curriculum, TaskPool
from toolgym.policy.grpo_train import CHECKPOINT, METRICS, PLOT, GRPOConfig, select, train_grpo


@pytest.fixture(scope="module")
def items():
    """Two trip tasks of difficulty 1, synthesized on the fly (the train split's first seeds)."""
    return TaskPool(family="trip", difficulties=[1]).draw(2, Curriculum())


@pytest.fixture(scope="module")
def micro(tmp_path_factory, items):
    """A micro checkpoint whose 2000-id tokenizer has seen the prompts (obs0 ~1.3k tokens)."""
    from toolgym.envs.sources import MemorySource
    from toolgym.envs.toolenv import make_env
    from toolgym.policy.corpus import stdlib_corpus
    from toolgym.policy.model import ModelConfig, Transformer
    from toolgym.policy.tokenizer import Tokenizer

    prompts = [make_env("trip", source=MemorySource([it])).reset(seed=0)[0] for it in items]
    tok = Tokenizer.train(stdlib_corpus(max_bytes=100_000, val_fraction=0.5).train + prompts * 3, vocab_size=2000)
    model = Transformer(ModelConfig.micro(vocab_size=tok.vocab_size), seed=0).eval()
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "micro", model, tok)


def _batch(episodes, pad_id):
    return make_train_batch(
        [e.ids for e in episodes], [e.action for e in episodes], [e.logprobs for e in episodes],
        [e.keep for e in episodes], [e.routing for e in episodes], pad_id,
    )  # fmt: skip


def test_rollout_records_are_what_the_trainer_recomputes(micro, items):
    ck = load_checkpoint(micro)
    params = SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=6)
    rb = rollout(ck.model, ck.tokenizer, items, 3, params, seed=0, env_kwargs={"max_turns": 2})
    assert len(rb.episodes) == 6 and not rb.env_errors
    assert [(e.group, e.sample) for e in rb.episodes] == [(g, i) for g in range(2) for i in range(3)]
    for e in rb.episodes:
        assert e.routing is not None and e.keep is not None
        assert len(e.routing) == len(e.ids) and len(e.keep) == int(e.action.sum()) > 0
        assert not e.action[0] and e.turns == 2 and e.truncated and e.reward == 0.0  # noise never submits
    assert sum(int(e.action.sum()) for e in rb.episodes) == rb.generated
    # the samples of one task share the prompt, and differ in what they sampled
    a, b = rb.episodes[0], rb.episodes[1]
    first = int(a.action.nonzero()[0])
    assert torch.equal(a.ids[:first], b.ids[:first]) and not torch.equal(a.ids, b.ids)
    # the whole-context training forward under the records reproduces the sampler's log-probs
    out = action_logprobs(ck.model, _batch(rb.episodes, ck.tokenizer.pad_id), 1.0)
    logp_old = torch.cat([e.logprobs[e.action] for e in rb.episodes])
    torch.testing.assert_close(out.logp, logp_old, rtol=0, atol=2e-4)
    assert out.routing_agreement is not None and out.routing_agreement > 0.99


def test_an_env_that_raises_is_dropped_and_counted(micro, items, monkeypatch):
    real = grpo_rollout.make_env

    class Flaky:
        def __init__(self, env):
            self.env, self.sample, self.steps = env, None, 0

        def reset(self, seed, options):
            self.sample = seed
            return self.env.reset(seed=seed, options=options)

        def step(self, action):
            self.steps += 1
            if self.sample == 1 and self.steps == 2:
                raise RuntimeError("world store went away")
            return self.env.step(action)

        def close(self):
            self.env.close()

    monkeypatch.setattr(grpo_rollout, "make_env", lambda *a, **k: Flaky(real(*a, **k)))
    ck = load_checkpoint(micro)
    rb = rollout(
        ck.model, ck.tokenizer, items, 2, SamplingParams(max_new_tokens=4), seed=0, env_kwargs={"max_turns": 3}
    )
    assert [(e.group, e.sample) for e in rb.episodes] == [(0, 0), (1, 0)]
    assert len(rb.env_errors) == 2 and all("world store went away" in line for line in rb.env_errors)


def test_the_context_bound_truncates_the_episode(micro, items):
    ck = load_checkpoint(micro)
    params = SamplingParams(max_new_tokens=4)
    rb = rollout(ck.model, ck.tokenizer, items[:1], 2, params, seed=0, max_context=1, env_kwargs={"max_turns": 5})
    assert all(e.turns == 1 and e.truncated and e.reward == 0 for e in rb.episodes)


def _episode(group: int, sample: int, reward: float, void: int = 0, truncated: bool = False) -> RolloutEpisode:
    ids = torch.tensor([3, 4, 5])
    return RolloutEpisode(
        task_id=f"t{group}", group=group, sample=sample, ids=ids, action=torch.tensor([False, True, True]),
        logprobs=torch.zeros(3), keep=None, routing=None, reward=reward, truncated=truncated,
        void_turns=void, turns=1, tool_calls=1 - min(void, 1),
    )  # fmt: skip


def test_filters_drop_and_count_with_the_whole_group_as_baseline():
    eps = [
        _episode(0, 0, 1.0), _episode(0, 1, 0.0, void=1), _episode(0, 2, 0.0, truncated=True), _episode(0, 3, 0.0),
        _episode(3, 0, 0.0), _episode(3, 1, 0.0),  # zero variance (group ids need not be dense)
        _episode(5, 0, 0.5), _episode(5, 1, 0.0, void=2, truncated=True),
    ]  # fmt: skip
    sel = select(RolloutBatch(eps), GRPOConfig())
    assert sel.counts == {"zero_variance_groups": 1, "void_episodes": 2, "truncated_episodes": 1}
    assert [(e.group, e.sample) for e in sel.episodes] == [(0, 0), (0, 3), (5, 0)]
    torch.testing.assert_close(sel.advantages, torch.tensor([0.75, -0.25, 0.25]))
    assert sel.group.tolist() == [0, 0, 1]
    off = GRPOConfig(filter_zero_variance=False, filter_void_turns=False, filter_truncated=False)
    assert len(select(RolloutBatch(eps), off).episodes) == 8


def test_task_walk_is_a_function_of_the_cursor():
    pool = TaskPool(family="trip", difficulties=[1, 2])
    a, b = Curriculum(), Curriculum()
    two = pool.draw(2, a) + pool.draw(2, a)
    assert [t.task_id for t, _ in two] == [t.task_id for t, _ in pool.draw(4, b)] and a.cursor == b.cursor == 4
    assert [t.difficulty for t, _ in two] == [1, 2, 1, 2] and len({t.task_id for t, _ in two}) == 4


def test_curriculum_levels_retirement_and_its_limits():
    from types import SimpleNamespace

    pool = TaskPool(family="trip", difficulties=[1, 2])
    tasks = [SimpleNamespace(task_id=f"t{i}", difficulty=1 + i % 2) for i in range(6)]  # t0 t2 t4 are d1
    pool._items = [(t, None) for t in tasks]
    state = Curriculum(level=1)
    got = [t.task_id for t, _ in pool.draw(3, state)]
    assert sorted(got) == ["t0", "t2", "t4"]
    state.update(pass_rate=0.4, solved=["t0", "t2"], threshold=0.5, top=2)
    assert state.level == 1 and state.retired == ["t0", "t2"]
    assert {t.task_id for t, _ in pool.draw(4, state)} == {"t4"}  # retired tasks are skipped
    state.update(pass_rate=0.5, solved=["t4"], threshold=0.5, top=2)
    assert state.level == 2
    state.level = 1  # every d1 task retired: drawn anyway rather than stalling
    assert len(pool.draw(2, state)) == 2
    state.update(pass_rate=1.0, solved=[], threshold=0.5, top=1)
    assert state.level == 1  # never past the top of the range
    with pytest.raises(ConfigError, match="difficulty 3"):
        pool.draw(1, Curriculum(level=3))


def _rewarded(monkeypatch):
    """Real rollouts, with reward 1 for sample 0 of every task (a random model never submits)."""
    real = grpo_train.rollout

    def fake(*args, **kwargs):
        rb = real(*args, **kwargs)
        for e in rb.episodes:
            e.reward = 1.0 if e.sample == 0 else 0.0
        return rb

    monkeypatch.setattr(grpo_train, "rollout", fake)


SMOKE = dict(
    tasks_per_step=2, group_size=2, updates_per_step=2, max_new_tokens=6, max_turns=1, lr=3e-3, kl_coef=0.1,
    device="cpu", filter_void_turns=False, filter_truncated=False, checkpoint_every=1, micro_batch=1,
)  # fmt: skip


def _run(out, micro, steps, difficulties=(1,), **over):
    pool = TaskPool(family="trip", difficulties=list(difficulties))
    return train_grpo(out, GRPOConfig(steps=steps, **{**SMOKE, **over}), init=micro, pool=pool, progress=False)


def test_two_step_grpo_smoke_run_trains_logs_and_resumes(micro, tmp_path, monkeypatch):
    _rewarded(monkeypatch)
    # a curriculum over difficulties 1-2: pass rate 0.5 at step 1 reaches the threshold
    first = _run(tmp_path / "run", micro, 1, (1, 2), curriculum=True)  # interrupted after step 1 ...
    second = _run(tmp_path / "run", micro, 2, (1, 2), curriculum=True)  # ... and resumed
    assert (first.steps, second.steps) == (1, 1) and (tmp_path / "run" / PLOT).is_file()
    recs = [json.loads(line) for line in (tmp_path / "run" / METRICS).read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2]
    assert [r["difficulty"] for r in recs] == [1, 2]  # the level moved up, and the resume kept it
    for r in recs:
        assert r["updates"] == 2 and r["trained_episodes"] == 4 and r["reward"] == 0.5 and r["pass_rate"] == 0.5
        keys = ["kl", "entropy", "clip_frac", "masked_frac", "routing_agreement", "rollout_tokens_per_s"]
        keys += ["episode_tokens", "seconds_generate", "seconds_env", "seconds_train", "zero_variance_groups"]
        assert all(k in r for k in keys), set(keys) - set(r)
    assert recs[0]["grad_norm"] > 0 and recs[1]["kl"] > 0  # the policy moved away from the reference
    # the second update of a step runs on moved weights: its router no longer picks every rollout expert
    assert 0.5 < recs[0]["routing_agreement"] < 1
    final = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert final.meta["step"] == 2 and final.meta["kind"] == "grpo" and final.meta["curriculum"]["level"] == 2
    init = load_checkpoint(micro).model.state_dict()
    assert any(not torch.equal(v, final.model.state_dict()[k]) for k, v in init.items())


@pytest.mark.slow
def test_a_resumed_run_equals_an_uninterrupted_one(micro, tmp_path, monkeypatch):
    _rewarded(monkeypatch)
    _run(tmp_path / "whole", micro, 2)
    _run(tmp_path / "split", micro, 1)
    _run(tmp_path / "split", micro, 2)
    a, b = (load_checkpoint(tmp_path / d / CHECKPOINT).model.state_dict() for d in ("whole", "split"))
    assert all(torch.equal(v, b[k]) for k, v in a.items())
    recs = [[json.loads(x) for x in (tmp_path / d / METRICS).read_text().splitlines()] for d in ("whole", "split")]
    assert [r["loss"] for r in recs[0]] == [r["loss"] for r in recs[1]]


def test_a_nan_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(micro, tmp_path, monkeypatch):
    _rewarded(monkeypatch)
    real = grpo_train.grpo_loss
    calls = []

    def poisoned(*args, **kwargs):
        parts = real(*args, **kwargs)
        calls.append(1)
        if len(calls) > 2:  # step 2's first update
            parts.loss = parts.loss * float("nan")
        return parts

    monkeypatch.setattr(grpo_train, "grpo_loss", poisoned)
    with pytest.raises(TrainingDivergedError, match="step 2: loss is nan"):
        _run(tmp_path / "run", micro, 3, micro_batch=2)  # one grpo_loss call per update
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT).meta["step"] == 1
    assert [json.loads(x)["step"] for x in (tmp_path / "run" / METRICS).read_text().splitlines()] == [1]


def _one_error(r, text):
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], r.output


def test_cli_errors_are_one_line(micro, tmp_path):
    base = ["train", "grpo", "--init", str(micro), "--out", str(tmp_path / "o")]
    _one_error(CliRunner().invoke(app, base), "give --family")
    _one_error(CliRunner().invoke(app, [*base, "--family", "trip", "--top-p", "1.5"]), "top_p")
    _one_error(CliRunner().invoke(app, [*base, "--family", "trip", "--difficulty", "0-9"]), "difficulty")
    _one_error(CliRunner().invoke(app, [*base, "-d", str(tmp_path / "no.duckdb")]), "no dataset")


@pytest.mark.parametrize("breaks", ["corrupt", "missing"])
def test_a_broken_init_is_one_line_and_writes_nothing(micro, tmp_path, breaks):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(micro, bad)
    if breaks == "corrupt":
        (bad / "model.safetensors").write_bytes((bad / "model.safetensors").read_bytes()[:1000])
    else:
        (bad / "tokenizer.json").unlink()
    args = ["train", "grpo", "--init", str(bad), "--family", "trip", "--device", "cpu", "--out", str(tmp_path / "o")]
    _one_error(CliRunner().invoke(app, args), "truncated or corrupt" if breaks == "corrupt" else "tokenizer.json")
    assert not (tmp_path / "o").exists()
