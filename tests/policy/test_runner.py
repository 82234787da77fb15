"""The eval runner: a factory in sequence, in threads, and a BatchPolicy in lockstep slots give the same episodes."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolgym.cli.eval import _eval_items
from toolgym.envs.agents import NullAgent
from toolgym.envs.rollout import ProgramPolicy
from toolgym.policy.batch import BatchPolicy, is_batch_policy
from toolgym.policy.evaluate import evaluate, scripted_policy
from toolgym.policy.runner import EpisodeRecord, run_episodes
from toolgym.synth import get_family


def _episode_policy(task, sample):
    """Even samples replay the reference (reward 1, several turns), odd ones submit nothing (reward 0, one turn)."""
    if sample % 2:
        return NullAgent()
    return ProgramPolicy(get_family(task.family).reference(task.params, task.tool_config))


def factory(task, world, sample):
    return _episode_policy(task, sample)


class FakeBatch:
    """A deterministic BatchPolicy: one episode policy per slot, and a log of what the runner asked."""

    def __init__(self, slots):
        self.slots = slots
        self.agents = {}
        self.generated = {}
        self.begins = []  # (slot, task_id, sample)
        self.rounds = []  # the slot lists act got
        self.seen = {}  # (task_id, sample) -> the observations act got for that episode
        self.episode = {}  # slot -> (task_id, sample)
        self.closed = False

    def begin(self, slot, task, sample):
        assert 0 <= slot < self.slots
        self.agents[slot] = (_episode_policy(task, sample), {"tools": task.tools})
        self.generated[slot] = 0
        self.episode[slot] = (task.task_id, sample)
        self.seen[task.task_id, sample] = []
        self.begins.append((slot, task.task_id, sample))

    def act(self, slots, observations):
        assert len(slots) == len(set(slots)) == len(observations)
        self.rounds.append(list(slots))
        out = []
        for slot, obs in zip(slots, observations, strict=True):
            self.seen[self.episode[slot]].append(obs)
            agent, info = self.agents[slot]
            action = agent.act(obs, info)
            self.generated[slot] += len(action)
            out.append(action)
        return out

    def tokens(self, slot):
        return self.generated[slot]

    def close(self):
        self.closed = True


@pytest.fixture(scope="module")
def items():
    return _eval_items(None, "trip", None, [1, 2, 3], 5, 0)


def _jobs(items, samples):
    return [(t, w, i) for t, w in items for i in range(samples)]


def _by_key(records):
    return {(r.task_id, r.sample): r for r in records}


def test_the_fake_is_a_batch_policy_and_a_factory_is_not():
    assert is_batch_policy(FakeBatch(2)) and isinstance(FakeBatch(2), BatchPolicy)
    assert not is_batch_policy(factory) and not is_batch_policy(scripted_policy("reference"))


def test_sequential_records_carry_reward_reason_turns_and_text(items):
    records = run_episodes(_jobs(items[:2], 2), factory)
    assert [(r.task_id, r.sample) for r in records] == [(t.task_id, i) for t, _ in items[:2] for i in range(2)]
    ok, null = records[0], records[1]
    assert ok.reward == 1.0 and ok.reason and ok.turns >= 2 and ok.tool_calls >= 2 and ok.tokens is None
    assert null.reward == 0.0 and null.turns == 1 and null.tool_calls == 1
    assert ok.text.startswith("<|system|>") and ok.text.count("<tool_call>") >= ok.tool_calls
    assert isinstance(ok, EpisodeRecord) and set(ok.to_json()) >= {"task_id", "sample", "reward", "text", "tokens"}


def test_batched_runner_equals_sequential_and_refills_slots(items):
    jobs = _jobs(items, 3)
    seq = _by_key(run_episodes(jobs, factory))
    fake = FakeBatch(slots=4)
    records = run_episodes(jobs, fake)
    got = _by_key(records)
    assert got.keys() == seq.keys() and len(records) == len(jobs)
    for key, r in got.items():
        s = seq[key]
        assert (r.reward, r.reason, r.turns, r.tool_calls, r.text) == (
            s.reward,
            s.reason,
            s.turns,
            s.tool_calls,
            s.text,
        )
        assert r.tokens == sum(len(a) for a in record_actions[key])
    assert len(fake.begins) == len(jobs)  # every job began in some slot ...
    assert all(n >= 2 for n in Counter(slot for slot, _, _ in fake.begins).values())  # ... slots were reused
    assert max(map(len, fake.rounds)) == 4 and fake.rounds[-1] != list(range(4))  # all slots busy, then draining
    # continuous refill: while jobs remain every slot is busy in every round
    refill_rounds = fake.rounds[: len(fake.rounds) - max(r.turns for r in records)]
    assert refill_rounds and all(r == [0, 1, 2, 3] for r in refill_rounds)


record_actions: dict = {}


@pytest.fixture(autouse=True)
def _record_actions(monkeypatch):
    """Keep each sequential episode's actions, keyed by (task_id, sample), for the token count check."""
    import toolgym.policy.runner as runner

    real = runner.record_of

    def spy(task, sample, traj, tokens):
        record_actions[task.task_id, sample] = list(traj.actions)
        return real(task, sample, traj, tokens)

    monkeypatch.setattr(runner, "record_of", spy)


def test_the_batch_policy_sees_exactly_the_env_text_since_its_last_action(items):
    fake = FakeBatch(slots=2)
    records = run_episodes(_jobs(items[:3], 2), fake)
    for r in records:
        seen, acts = fake.seen[r.task_id, r.sample], record_actions[r.task_id, r.sample]
        assert len(seen) == len(acts) == r.turns
        context = "".join(o + a for o, a in zip(seen, acts, strict=True))
        assert r.text.startswith(context) and len(r.text) > len(context)  # then the final observation


def test_threads_give_the_same_records_each_thread_with_its_own_envs(items, monkeypatch):
    import toolgym.policy.runner as runner

    jobs = _jobs(items, 2)
    seq = _by_key(run_episodes(jobs, factory))
    threads_of_env = {}
    real_reset = runner._Envs.reset

    def reset(self, task, world, sample):
        env, obs, info = real_reset(self, task, world, sample)
        threads_of_env.setdefault(id(env), set()).add(threading.get_ident())
        return env, obs, info

    monkeypatch.setattr(runner._Envs, "reset", reset)
    got = _by_key(run_episodes(jobs, factory, concurrency=3))
    assert {k: (r.reward, r.text) for k, r in got.items()} == {k: (r.reward, r.text) for k, r in seq.items()}
    assert all(len(t) == 1 for t in threads_of_env.values())  # no env is shared between threads
    assert len({t for ts in threads_of_env.values() for t in ts}) > 1


def test_a_factory_s_concurrency_attribute_is_its_default(items, monkeypatch):
    import toolgym.policy.runner as runner

    calls = []
    monkeypatch.setattr(runner, "_run_threads", lambda jobs, f, emit, n, kw, *_: calls.append(n))

    def endpoint(task, world, sample):
        return factory(task, world, sample)

    endpoint.concurrency = 5
    run_episodes(_jobs(items[:1], 1), endpoint)
    assert calls == [5]
    with pytest.raises(ValueError, match="concurrency must be at least 1"):
        run_episodes(_jobs(items[:1], 1), factory, concurrency=0)


def test_a_batch_policy_returning_the_wrong_number_of_actions_is_an_error(items):
    class Short(FakeBatch):
        def act(self, slots, observations):
            return super().act(slots, observations)[:-1]

    with pytest.raises(ValueError, match="returned 1 actions for 2 slots"):
        run_episodes(_jobs(items[:2], 1), Short(slots=2))
    with pytest.raises(ValueError, match="at least 1 slot"):
        run_episodes(_jobs(items[:2], 1), FakeBatch(slots=0))


def test_evaluate_takes_a_batch_policy_and_orders_tasks_like_items(items):
    done = []
    want = evaluate(items, scripted_policy("reference"), samples=2)
    got = evaluate(items, FakeBatch(slots=3), samples=2, on_task=done.append)
    assert [r.task_id for r in got] == [t.task_id for t, _ in items] == [r.task_id for r in want]
    assert all(r.rewards == [1.0, 0.0] for r in got) and all(r.rewards == [1.0, 1.0] for r in want)
    assert sorted(r.task_id for r in done) == sorted(t.task_id for t, _ in items)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(slots=st.integers(1, 6), tasks=st.integers(1, 5), samples=st.integers(1, 3))
def test_property_any_slot_count_gives_the_sequential_rewards(items, slots, tasks, samples):
    jobs = _jobs(items[:tasks], samples)
    seq = {k: r.reward for k, r in _by_key(run_episodes(jobs, factory)).items()}
    fake = FakeBatch(slots)
    got = {k: r.reward for k, r in _by_key(run_episodes(jobs, fake)).items()}
    assert got == seq and len(fake.begins) == len(jobs)
    assert Counter(s for s, _, _ in fake.begins).keys() == set(range(min(slots, len(jobs))))
