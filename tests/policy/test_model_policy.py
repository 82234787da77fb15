"""The ``model`` policy on real ToolEnv episodes: batch independence, token-exact context, errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import toolgym
from toolgym.bench.eval import bench_episodes, drive
from toolgym.envs import markup as mk
from toolgym.envs.sources import MemorySource
from toolgym.envs.toolenv import make_env
from toolgym.errors import CheckpointError, ConfigError
from toolgym.policy import kernel
from toolgym.policy.checkpoint import load_checkpoint, save_checkpoint
from toolgym.policy.generate import SamplingParams, Session
from toolgym.policy.model import ModelConfig, Transformer
from toolgym.policy.model_policy import ModelPolicy, ModelPolicyConfig, model_policy


@pytest.fixture(scope="module")
def episodes():
    """Three trip tasks x two samples, synthesized on the fly."""
    return bench_episodes("trip", 1, 3, 2)


@pytest.fixture(scope="module")
def micro(tmp_path_factory, episodes):
    """A micro checkpoint: a 2000-id BPE that has seen the prompts (short obs0), a sharpened random model.

    The head is scaled up so greedy argmaxes are far from ties (a random-init head gives nearly
    flat logits), which is what a trained model looks like to the batch-independence test.
    """
    from toolgym.policy.corpus import stdlib_corpus
    from toolgym.policy.tokenizer import Tokenizer

    prompts = [make_env("trip", source=MemorySource([(t, w)])).reset(seed=0)[0] for t, w, _ in episodes[::2]]
    tok = Tokenizer.train(stdlib_corpus(max_bytes=100_000, val_fraction=0.5).train + prompts * 3, vocab_size=2000)
    model = Transformer(ModelConfig.micro(vocab_size=tok.vocab_size, n_shared_experts=2), seed=0).eval()
    with torch.no_grad():
        model.head.weight.mul_(30)
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "micro", model, tok)


def policy(ck, **options) -> ModelPolicy:
    return model_policy(checkpoint=str(ck), device="cpu", **{"max_new_tokens": 6, "seed": 0, **options})


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_actions_do_not_depend_on_the_batch(micro, episodes, temperature):
    runs = [drive(policy(micro, slots=s, temperature=temperature), episodes, max_turns=3) for s in (1, 4)]
    assert [e.actions for e in runs[0]] == [e.actions for e in runs[1]]
    assert [e.reward for e in runs[0]] == [e.reward for e in runs[1]]
    assert all(len(e.actions) == 3 for e in runs[0])  # noise never submits: truncated at max_turns
    if temperature > 0:  # each episode samples from its own (seed, task, sample) stream
        assert runs[0][0].actions != runs[0][1].actions
        other = drive(policy(micro, slots=4, temperature=temperature, seed=1), episodes, max_turns=3)
        assert [e.actions for e in other] != [e.actions for e in runs[0]]


def test_prefix_sharing_serves_repeated_prompts_from_the_cache_token_exactly(micro, episodes):
    """Samples of a task share their prompt (leaders and followers in one act, or a slot's old row)."""
    prompt = {}
    for task, world, sample in episodes:
        env = make_env("trip", source=MemorySource([(task, world)]))
        prompt[(task.task_id, sample)] = env.reset(seed=sample)[0]
    p = policy(micro, slots=4, max_new_tokens=3, temperature=0)
    ids = {k: p.tokenizer.encode_prompt(v) for k, v in prompt.items()}
    jobs = episodes[:4]  # task 0 samples 0, 1 and task 1 samples 0, 1: two leaders, two followers
    for slot, (task, _, sample) in enumerate(jobs):
        p.begin(slot, task, sample)
    p.act([0, 1, 2, 3], [prompt[(t.task_id, s)] for t, _, s in jobs])
    lengths = [len(ids[(t.task_id, s)]) for t, _, s in jobs]
    assert p.shared >= lengths[1] - 1 + lengths[3] - 1  # each follower appended one token
    assert p.prefilled <= lengths[0] + lengths[2] + 2
    for slot, (task, _, sample) in enumerate(jobs):  # every row holds its own context, exactly
        ctx = p.context(slot)
        assert ctx[: lengths[slot]] == ids[(task.task_id, sample)] and len(ctx) == lengths[slot] + 3
        full = p.model(torch.tensor([ctx])).logits[0, -1]
        torch.testing.assert_close(p.session.last_logits[slot], full, atol=1e-4, rtol=1e-4)
    before = p.prefilled
    task, _, sample = episodes[4]  # slot 0 starts task 2: it shares the system text with a row
    p.begin(0, task, sample)
    p.act([0], [prompt[(task.task_id, sample)]])
    n = len(ids[(task.task_id, sample)])
    assert 0 < p.prefilled - before < n and p.context(0)[:n] == ids[(task.task_id, sample)]


def test_context_is_bos_then_obs_tokens_plus_sampled_tokens(micro, episodes):
    p = policy(micro, slots=2, max_new_tokens=5)
    task, world, sample = episodes[0]
    env = make_env("trip", source=MemorySource([(task, world)]), max_turns=3)
    obs, _ = env.reset(seed=sample)
    p.begin(1, task, sample)
    expected: list[int] = []
    done = False
    while not done:
        before = p.tokens(1)
        (action,) = p.act([1], [obs])
        ctx = p.context(1)
        expected += p.tokenizer.encode(obs) if expected else p.tokenizer.encode_prompt(obs)  # <|bos|> first
        sampled = ctx[len(expected) :]
        assert len(sampled) == p.tokens(1) - before == 5  # budget spent: no <|end|> sampled
        assert p.tokenizer.decode(sampled) == action and not action.endswith(mk.END)
        expected += sampled
        assert ctx == expected
        obs, _, term, trunc, _ = env.step(action)
        assert obs.startswith(mk.END)  # the env closes the turn the action left open
        done = term or trunc
    # the cache row holds exactly this context: its last logits equal a fresh full forward
    full = p.model(torch.tensor([expected])).logits[0, -1]
    torch.testing.assert_close(p.session.last_logits[1], full, atol=1e-4, rtol=1e-4)
    assert p.session.lengths[1] == len(expected)


def test_an_action_ends_with_end_and_the_env_does_not_repeat_it(micro, episodes, tmp_path, monkeypatch):
    ck = load_checkpoint(micro)
    lift = torch.zeros(ck.model.config.vocab_size)
    lift[ck.tokenizer.end_id] = 1e4  # a model that always says <|end|> first, on both paths:
    ck.model.head.register_forward_hook(lambda module, args, out: out + lift)  # the module path
    step = kernel.decode_step  # and the one-token kernel path (decode, one-token appends)

    def lifted(*args, **kwargs):
        out = step(*args, **kwargs)
        out.logits += lift
        return out

    monkeypatch.setattr(kernel, "decode_step", lifted)
    p = ModelPolicy(ck, SamplingParams(temperature=0, max_new_tokens=8), slots=2)
    logs = drive(p, episodes[:2], max_turns=2)
    for log in logs:
        assert log.actions == [mk.END, mk.END] and log.tokens == 2
        assert all(o.startswith(mk.TOOL) for o in log.observations[1:])
    assert p.context(1).count(ck.tokenizer.end_id) == p.tokenizer.encode(log.observations[0]).count(
        ck.tokenizer.end_id
    ) + 2 + sum(p.tokenizer.encode(o).count(ck.tokenizer.end_id) for o in log.observations[1:-1])


def test_tokens_count_per_episode_and_reset_on_begin(micro, episodes):
    p = policy(micro, slots=3)
    logs = drive(p, episodes, max_turns=2)
    assert [e.tokens for e in logs] == [12] * len(episodes)  # 2 turns x 6 tokens
    task, _, _ = episodes[0]
    p.begin(0, task, 0)
    assert p.tokens(0) == 0 and p.context(0) == [] and p.tokens(1) == 12


def test_out_of_context_fails_the_episode_with_empty_turns(micro, episodes):
    task, world, sample = episodes[0]
    obs0 = make_env("trip", source=MemorySource([(task, world)])).reset(seed=sample)[0]
    n0 = len(load_checkpoint(micro).tokenizer.encode_prompt(obs0))  # <|bos|> + obs0
    p = policy(micro, slots=2, max_context=n0 + 6 + 10)  # obs0 and one action fit, obs1 does not
    (log,) = drive(p, [episodes[0]], max_turns=4)
    assert log.actions[0] != mk.END and log.actions[1:] == [mk.END] * 3
    assert log.reward == 0.0 and log.tokens == 6 and p.out_of_context(0)
    assert p.session.lengths[0] == n0 + 6  # nothing appended past the bound
    p2 = policy(micro, slots=1, max_context=n0 + 5)  # not even obs0 and one action fit
    assert drive(p2, [episodes[0]], max_turns=2)[0].actions == [mk.END, mk.END]


def test_act_refuses_bad_slots(micro, episodes):
    p = policy(micro, slots=2)
    with pytest.raises(ConfigError, match="begin"):
        p.act([0], ["x"])
    p.begin(0, episodes[0][0], 0)
    with pytest.raises(ConfigError, match="distinct"):
        p.act([0, 0], ["x", "y"])
    with pytest.raises(ConfigError, match="out of range"):
        p.begin(2, episodes[0][0], 0)
    p.close()
    with pytest.raises(ConfigError, match="closed"):
        p.tokens(0)


def test_registered_with_validated_options(micro):
    entry = toolgym.POLICIES.get("model")
    assert isinstance(entry(checkpoint=str(micro), seed=3, slots=2, device="cpu"), ModelPolicy)
    with pytest.raises(ConfigError, match="--checkpoint"):
        entry(seed=0)
    with pytest.raises(ConfigError, match="base_url"):
        entry(checkpoint=str(micro), seed=0, base_url="http://x")
    with pytest.raises(ConfigError, match="temperature"):
        entry(checkpoint=str(micro), seed=0, temperature=-1)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            entry(checkpoint=str(micro), seed=0, device="cuda")


@settings(max_examples=25, deadline=None)
@given(st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz_"), min_size=1, max_size=12))
def test_any_unknown_option_is_a_config_error_naming_it(name):
    if name in ModelPolicyConfig.model_fields:
        return
    with pytest.raises(ConfigError, match=name):
        model_policy(checkpoint="/nonexistent", **{name: 1})  # options fail before the checkpoint loads


def test_corrupt_or_missing_checkpoint_files_are_named(micro, tmp_path):
    import shutil

    bad = shutil.copytree(micro, tmp_path / "bad")
    (bad / "model.safetensors").write_bytes((bad / "model.safetensors").read_bytes()[:500])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        model_policy(checkpoint=str(bad), seed=0, device="cpu")
    (bad / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json"):
        model_policy(checkpoint=str(bad), seed=0, device="cpu")
    with pytest.raises(CheckpointError, match="No checkpoint directory"):
        model_policy(checkpoint=str(tmp_path / "absent"), seed=0)


def test_per_row_generators_make_a_row_independent_of_the_others(tiny):
    """Session.generate with one generator per row: row 0 samples the same with or without row 1."""
    prompt = list(range(20, 40))

    def row0(active: list[bool]) -> list[int]:
        s = Session(tiny, 2, stop_ids=[4])
        s.append([prompt, prompt[::-1]])
        gens = [torch.Generator().manual_seed(7), torch.Generator().manual_seed(8)]
        turn = s.generate(SamplingParams(max_new_tokens=12), gens, active=active)[0]
        assert turn is not None
        return turn.tokens.tolist()

    assert row0([True, True]) == row0([True, False])
    s = Session(tiny, 2, stop_ids=[4])
    s.append([prompt, []])  # row 1 has no context yet: only an active row needs one
    assert s.generate(SamplingParams(max_new_tokens=3), torch.Generator(), active=[True, False])[1] is None
    with pytest.raises(ConfigError, match="one generator per row"):
        s.generate(SamplingParams(), [torch.Generator()], active=[True, False])
    with pytest.raises(ConfigError, match="needs context"):
        s.generate(SamplingParams(), torch.Generator())


class Lockstep:
    """A model policy seen through the plain BatchPolicy protocol (no ``step``): act() rounds."""

    def __init__(self, inner: ModelPolicy):
        self.inner, self.slots = inner, inner.slots

    def begin(self, slot, task, sample):
        self.inner.begin(slot, task, sample)

    def act(self, slots, observations):
        return self.inner.act(slots, observations)

    def tokens(self, slot):
        return self.inner.tokens(slot)

    def close(self):
        self.inner.close()


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_continuous_batching_plays_the_same_episodes_as_lockstep_rounds(micro, episodes, temperature):
    """step() (an env stepped as soon as its action is done) vs act() rounds: the same actions and rewards.

    Actions of different lengths (some rows say <|end|> early) make the two schedules differ:
    rows finish at different steps and new observations join mid-batch.
    """
    lock = drive(Lockstep(policy(micro, slots=3, max_new_tokens=12, temperature=temperature)), episodes, max_turns=3)
    p = policy(micro, slots=3, max_new_tokens=12, temperature=temperature)
    cont = drive(p, episodes, max_turns=3)
    assert [e.actions for e in cont] == [e.actions for e in lock]
    assert [e.reward for e in cont] == [e.reward for e in lock] and [e.tokens for e in cont] == [e.tokens for e in lock]
    lengths = {len(p.tokenizer.encode(a)) for e in cont for a in e.actions}
    assert len(lengths) > 1  # the schedules really differed
    assert not p._partial  # every action was finished and handed out
    task, world, sample = episodes[0]
    p.begin(0, task, sample)
    p._partial[0] = [5]  # as if a step() had left slot 0 mid-action
    with pytest.raises(ConfigError, match="mid-action"):
        p.step({0: "obs"})
