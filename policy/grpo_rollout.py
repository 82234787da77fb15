"""GRPO rollouts: G episodes per task through the real envs, with what training needs per token.

One :class:`~toolgym.policy.generate.Session` holds every episode of a rollout batch (tasks x G
rows). The G rows of a task share their prompt: the first row prefills it and the others copy
its cache entries (and their routing) but for the last token, which each appends (a row needs
its own logits before ``generate``). Then lockstep rounds: one batched ``generate`` for every
live row, each row's env stepped with the decoded action, the observations appended in one
batched ``append``. A rollout is a fixed batch (no queue of jobs to refill slots from), so
lockstep wastes nothing that continuous batching would win back: a row that has stopped simply
leaves the decode batch.

Per episode a :class:`RolloutEpisode` records the whole context's ids, which tokens the policy
sampled, the sampler's log-probs and top-p kept sets of those tokens (Keep Sampling Mask), the
experts every token was routed to (Keep Routing; prompt and observation tokens included, since
the training forward runs over the whole context), the verifier's reward, and the facts the
filters read.

Decisions:

* **Void turn**: a turn in which the env ran no tool call (``info["tool_calls"] == 0``): no
  parsable call and, since the answer is given by calling ``submit``, no answer either.
* **Truncated episode**: it ended without a verdict: the env's turn limit, or the context bound
  (the next observation plus a full action budget no longer fit ``max_context``; the episode is
  then stopped at once, reward 0, as ``ModelPolicy`` would only play bare ``<|end|>`` turns to
  the turn limit). An action cut by ``max_new_tokens`` does not truncate the episode: the env
  answers it like any other turn.
* **An env that raises** (in reset or step) drops that episode: it is counted in
  ``RolloutBatch.env_errors`` with the error's one-line text, and the rest of its group goes on.
* Sampling is seeded per episode from (seed, task id, sample), as ``ModelPolicy`` does, so an
  episode's tokens do not depend on its batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from toolgym.envs.sources import MemorySource
from toolgym.envs.toolenv import make_env
from toolgym.errors import one_line
from toolgym.policy.generate import SamplingParams, Session, Turn
from toolgym.policy.model import Transformer
from toolgym.policy.model_policy import episode_seed
from toolgym.policy.tokenizer import Tokenizer
from toolgym.spec import TaskSpec


@dataclass
class RolloutEpisode:
    """One episode of a rollout, token by token.

    Attributes:
        task_id: its task.
        group: index of its task in the rollout batch (the GRPO group).
        sample: index within the group (also the env's reset seed).
        ids: [L] the context obs0 act1 obs1 ... as fed to the model.
        action: [L] bool, True on the tokens the policy sampled.
        logprobs: [L] the sampler's log-prob of each sampled token (0 elsewhere).
        keep: [n_action, V] bool top-p kept set of each sampled token, or None (top_p 1).
        routing: [L, n_moe, K] experts of every token, or None (no MoE).
        reward: the verifier's score (0 when truncated).
        truncated: ended without a verdict (turn limit or context bound; see the module docstring).
        void_turns: turns in which no tool call ran.
        turns: actions taken.
        tool_calls: calls run over the episode.
    """

    task_id: str
    group: int
    sample: int
    ids: Tensor
    action: Tensor
    logprobs: Tensor
    keep: Tensor | None
    routing: Tensor | None
    reward: float
    truncated: bool
    void_turns: int
    turns: int
    tool_calls: int


@dataclass
class RolloutBatch:
    """Every finished episode of one rollout, and where its time went.

    Attributes:
        episodes: in (group, sample) order; episodes whose env raised are absent.
        env_errors: one line per dropped episode (task id, sample, the error).
        generated: tokens sampled.
        seconds: {"generate": sampling and decode, "append": prefill of prompts and
            observations, "env": env resets and steps, tokenization included}.
    """

    episodes: list[RolloutEpisode]
    env_errors: list[str] = field(default_factory=list)
    generated: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class _Row:
    """The growing record of one live episode."""

    task: TaskSpec
    group: int
    sample: int
    env: Any
    ids: list[int] = field(default_factory=list)
    action: list[bool] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    keep: list[Tensor] = field(default_factory=list)
    routing: list[Tensor] = field(default_factory=list)
    void_turns: int = 0
    turns: int = 0
    tool_calls: int = 0
    pending: list[int] = field(default_factory=list)  # the next observation's ids

    def add(self, ids: list[int], routing: Tensor | None, turn: Turn | None = None) -> None:
        """Record environment tokens (``turn`` None) or a sampled turn."""
        self.ids += ids
        self.action += [turn is not None] * len(ids)
        self.logprobs += turn.logprobs.tolist() if turn is not None else [0.0] * len(ids)
        if turn is not None and turn.keep_mask is not None:
            self.keep.append(turn.keep_mask)
        if routing is not None:
            self.routing.append(routing)

    def finish(self, reward: float, truncated: bool) -> RolloutEpisode:
        """The episode's record."""
        return RolloutEpisode(
            task_id=self.task.task_id,
            group=self.group,
            sample=self.sample,
            ids=torch.tensor(self.ids, dtype=torch.long),
            action=torch.tensor(self.action, dtype=torch.bool),
            logprobs=torch.tensor(self.logprobs, dtype=torch.float32),
            keep=torch.cat(self.keep) if self.keep else None,
            routing=torch.cat(self.routing) if self.routing else None,
            reward=reward,
            truncated=truncated,
            void_turns=self.void_turns,
            turns=self.turns,
            tool_calls=self.tool_calls,
        )


@torch.no_grad()
def rollout(
    model: Transformer,
    tokenizer: Tokenizer,
    items: list[tuple[TaskSpec, Any]],
    group_size: int,
    params: SamplingParams,
    *,
    seed: int,
    max_context: int = 4096,
    env_kwargs: dict[str, Any] | None = None,
    first_sample: int = 0,
    env_maker: Callable[..., Any] | None = None,
) -> RolloutBatch:
    """Run ``group_size`` episodes of each (task, world) and record them (see the module docstring).

    Args:
        model: the policy (its weights at this rollout: pi_old).
        tokenizer: its tokenizer.
        items: the tasks of the batch, each with its world object.
        group_size: G, episodes per task (reset seeds 0..G-1).
        params: temperature, top-p and the action token budget.
        seed: with the task id and sample index, seeds each episode's sampling.
        max_context: tokens per episode (see *Truncated episode*).
        env_kwargs: ToolEnv options (``max_turns``, …).
        first_sample: the samples run are ``first_sample .. first_sample + group_size - 1`` (their
            reset seeds and sampling seeds), so a group can be run piecewise with the same tokens.
        env_maker: makes each episode's env, as ``make_env`` (None, the default) does; a Ray pool's
            ``make_env`` runs them on actors (a lost episode is one of ``env_errors``).

    Returns:
        A ``RolloutBatch``.
    """
    clock = {"env": 0.0}
    errors: list[str] = []
    firsts = _reset_all(
        items, range(first_sample, first_sample + group_size), tokenizer, env_kwargs or {}, errors, clock, env_maker
    )
    rows = [row for row, _ in firsts]
    batch = RolloutBatch([], errors)
    if not rows:
        batch.seconds = {"generate": 0.0, "append": 0.0, "env": clock["env"]}
        return batch
    session = Session(model, len(rows), stop_ids=[tokenizer.end_id], pad_id=tokenizer.pad_id)
    _prefill(session, firsts)
    gens = [torch.Generator().manual_seed(episode_seed(seed, r.task.task_id, r.sample)) for r in rows]
    live = [True] * len(rows)
    finished: dict[int, RolloutEpisode] = {}
    try:
        while any(live):
            turns = session.generate(params, gens, active=live)
            feed: list[list[int]] = [[] for _ in rows]
            for b, turn in enumerate(turns):
                if turn is not None:
                    batch.generated += len(turn.tokens)
                    done = _step(rows[b], turn, tokenizer, params.max_new_tokens, max_context, errors, clock)
                    if isinstance(done, RolloutEpisode):
                        finished[b] = done
                    if done is not None:
                        live[b] = False
                    else:
                        feed[b] = rows[b].pending
            if any(feed):
                for b, routing in enumerate(session.append(feed)):
                    if feed[b]:
                        rows[b].add(feed[b], routing)
    finally:
        for row in rows:
            row.env.close()
    batch.episodes = [finished[b] for b in sorted(finished)]
    batch.seconds = {**session.seconds, "env": clock["env"]}
    return batch


def _reset_all(
    items: list[tuple[TaskSpec, Any]],
    samples: range,
    tokenizer: Tokenizer,
    env_kwargs: dict[str, Any],
    errors: list[str],
    clock: dict[str, float],
    env_maker: Callable[..., Any] | None = None,
) -> list[tuple[_Row, list[int]]]:
    """One env per episode, reset: (row, prompt ids) per episode whose env did not raise.

    An env that raises is closed, left out, and its error added to ``errors``; the time spent
    is added to ``clock["env"]``.
    """
    firsts: list[tuple[_Row, list[int]]] = []
    for g, (task, world) in enumerate(items):
        for i in samples:
            t0 = time.perf_counter()
            env = None
            try:
                env = (env_maker or make_env)(task.family, source=MemorySource([(task, world)]), **env_kwargs)
                obs, _ = env.reset(seed=i, options={"task_id": task.task_id})
                firsts.append((_Row(task, g, i, env), tokenizer.encode_prompt(obs)))
            except Exception as exc:  # an env that raises is dropped and counted, never fatal
                errors.append(f"{task.task_id} sample {i}: reset raised {type(exc).__name__}: {one_line(exc)}")
                if env is not None:
                    env.close()
            finally:
                clock["env"] += time.perf_counter() - t0
    return firsts


def _step(
    row: _Row,
    turn: Turn,
    tokenizer: Tokenizer,
    max_new_tokens: int,
    max_context: int,
    errors: list[str],
    clock: dict[str, float],
) -> RolloutEpisode | bool | None:
    """Record a sampled turn and step the row's env with it.

    Returns:
        The finished episode; True when its env raised (dropped, error added to ``errors``); None
        when it goes on (its next observation's ids are in ``row.pending``).
    """
    ids = turn.tokens.tolist()
    row.add(ids, turn.routing, turn)
    t0 = time.perf_counter()
    try:
        obs, reward, terminated, truncated, info = row.env.step(tokenizer.decode(ids))
        row.pending = [] if terminated or truncated else tokenizer.encode(obs)
    except Exception as exc:  # dropped and counted
        errors.append(f"{row.task.task_id} sample {row.sample}: step raised {type(exc).__name__}: {one_line(exc)}")
        return True
    finally:
        clock["env"] += time.perf_counter() - t0
    calls = int(info.get("tool_calls", 0))
    row.turns += 1
    row.tool_calls += calls
    row.void_turns += calls == 0
    out_of_context = len(row.ids) + len(row.pending) + max_new_tokens > max_context
    if terminated or truncated or out_of_context:
        return row.finish(float(reward), truncated or (out_of_context and not terminated))
    return None


def _prefill(session: Session, firsts: list[tuple[_Row, list[int]]]) -> None:
    """Append each row's prompt; rows after the first of a group copy its prefix (and routing).

    The first row of each group appends its whole prompt; a later row whose prompt equals it
    copies all but the last token from that row and appends the last one itself.
    """
    leader: dict[int, int] = {}
    feed: list[list[int]] = [[] for _ in firsts]
    for b, (row, ids) in enumerate(firsts):
        lead = leader.setdefault(row.group, b)
        feed[b] = ids if lead == b or firsts[lead][1] != ids or len(ids) < 2 else []
    routes = session.append(feed)
    moves, tails = [], [[] for _ in firsts]  # type: ignore[var-annotated]
    for b, (row, ids) in enumerate(firsts):
        if feed[b]:
            row.add(ids, routes[b])
            continue
        lead = leader[row.group]
        moves.append((b, lead, len(ids) - 1))
        lead_routing = firsts[lead][0].routing
        row.add(ids[:-1], lead_routing[0][: len(ids) - 1] if lead_routing else None)
        tails[b] = ids[-1:]
    if moves:
        session.copy_prefixes(moves)
        for b, routing in enumerate(session.append(tails)):
            if tails[b]:
                firsts[b][0].add(tails[b], routing)
