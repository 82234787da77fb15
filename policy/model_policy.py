"""The ``model`` policy: the in-repo policy from a checkpoint, acting for many episodes at once.

One :class:`~toolgym.policy.generate.Session` row per slot (a :class:`~toolgym.policy.batch.BatchPolicy`):

* ``begin(slot, task, sample)`` seeds the slot's own ``torch.Generator`` from ``(seed, task id,
  sample)``; the row's entries stay until the slot's first observation replaces them, keeping
  whatever prefix it shares with them (see *Prefix sharing*).
* ``act(slots, observations)`` encodes each observation *alone* and appends it to its row, so
  the row's context is ``tokens(obs0) + act1 + tokens(obs1) + ...`` with each action's tokens
  exactly as sampled (never re-tokenized: markup strings are single special tokens and every
  observation starts and ends on one, so this equals tokenizing the whole text whenever the
  sampled tokens are what the tokenizer would produce). Then one batched, KV-cached ``generate``
  samples every listed slot's action until it emits ``<|end|>`` (kept: ToolEnv then starts
  the next observation with ``<|tool|>``) or spends ``max_new_tokens`` (then the action does
  not end with ``<|end|>`` and ToolEnv's next observation starts with it, which the row
  appends like any observation).
* Every random draw of a slot comes from the slot's generator, one number per sampled token,
  so with the same logits an episode samples the same actions whatever else shares the batch.
  Greedy decoding (``temperature=0``) draws nothing; it is batch-independent as far as the
  logits are (tested: batch 1 and batch 4 give identical actions).

**Prefix sharing** (automatic prefix caching, as vLLM and SGLang do it). A slot's first
observation (the prompt: system text with the toolset, then the user's request) is usually
shared, whole or in part, with what other rows of the cache hold: the ``-n`` samples of one task
have the same prompt, and tasks of one family share the system text. ``begin`` keeps the row's
old entries; the slot's first ``act`` copies the longest prefix any row holds (its own old
episode included) and appends only the rest. Fresh slots of one ``act`` whose prompts share more
with each other than with any row are served in levels: a slot copies its *parent*'s prefix once
the parent's own append is done, and appends what differs (one model call per level). Cache entries of a
prefix depend on the prefix alone, so sharing changes the cost, not the tokens' entries (up to
the rounding of a different batch shape, as with any batching).

**Context overflow** (decision). RoPE positions are computed per call, so the model has no
hard position limit; the bound is ``max_context`` tokens per episode (default 8192; the cache
grows to it). A turn runs only if the new observation *and* a full action budget
(``max_new_tokens``) fit: ``length + len(obs) + max_new_tokens <= max_context``. Otherwise the
slot is *out of context*: the observation is not appended, and this and every later action of
the episode is the bare ``<|end|>`` (a turn with no call, which ToolEnv answers with its
no-call error), so the episode fails cleanly (it cannot submit) and ends at the env's
``max_turns`` without any model work. Actions are never cut short by the context bound,
so a long context never turns into a half-written call; ``out_of_context(slot)`` tells a runner.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from toolgym.envs.markup import END
from toolgym.errors import ConfigError, one_line
from toolgym.policy.checkpoint import Checkpoint, load_checkpoint
from toolgym.policy.generate import SamplingParams, Session
from toolgym.spec import TaskSpec


class ModelPolicyConfig(BaseModel):
    """Options of ``--policy model`` (unknown keys are errors).

    Attributes:
        checkpoint: the checkpoint directory (``toolgym train …`` output).
        device: ``cpu``, ``cuda``, or ``auto`` (cuda when available).
        temperature: logits are divided by it; 0 is greedy.
        top_p: nucleus mass kept, in (0, 1].
        max_new_tokens: token budget of one action.
        seed: with the task id and sample index, seeds each episode's sampling.
        slots: episodes acting at once (the batch size of generation).
        max_context: tokens per episode (observations and actions); see the module docstring.
    """

    model_config = ConfigDict(extra="forbid")

    checkpoint: Path
    device: Literal["cpu", "cuda", "auto"] = "auto"
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(256, ge=1)
    seed: int = 0
    slots: int = Field(16, ge=1)
    max_context: int = Field(8192, ge=2)


#: A fresh slot waits for another slot's append (one more model call) only to share this many more tokens.
MIN_SHARED = 32


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading ids ``a`` and ``b`` have in common."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = (torch.as_tensor(a[:n]) != torch.as_tensor(b[:n])).nonzero()
    return int(diff[0]) if len(diff) else n


def longest_prefix(ids: list[int], rows: list[list[int]], limit: int, prefer: int | None = None) -> tuple[int, int]:
    """``(n, r)``: the row ``r`` of ``rows`` sharing the longest prefix with ``ids``, at most ``limit`` tokens.

    Ties go to ``prefer`` (a slot's own row: nothing to copy), then to the highest index.
    """
    n, _, r = max((min(common_prefix(ids, row), limit), r == prefer, r) for r, row in enumerate(rows))
    return n, r


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; ``cpu``, ``cuda`` and ``cuda:N`` as given.

    Raises:
        ConfigError: another name, or ``cuda`` asked for where torch sees no CUDA device (or no
            device ``N``).
    """
    import re

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise ConfigError(f"device must be cpu, cuda, cuda:N or auto, not {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA device; use --device cpu or auto")
    if ":" in device and int(device[5:]) >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r} asked for, but torch sees {torch.cuda.device_count()} CUDA devices")
    return device


def episode_seed(seed: int, task_id: str, sample: int) -> int:
    """A stable 63-bit seed for one episode (Python's ``hash`` of str is salted per process)."""
    digest = hashlib.sha256(f"model\x1f{seed}\x1f{task_id}\x1f{sample}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class ModelPolicy:
    """The in-repo policy acting for ``slots`` episodes at once (a ``BatchPolicy``).

    Attributes:
        slots: episodes that can act at once (rows of the session).
        params: sampling settings of every action.
        max_context: the per-episode token bound (see the module docstring).
        prefilled: observation tokens run through the model so far.
        shared: observation tokens a new episode took from the cache by prefix sharing instead.
    """

    def __init__(
        self, checkpoint: Checkpoint, params: SamplingParams, *, slots: int = 16, seed: int = 0, max_context: int = 8192
    ) -> None:
        """Build the session over a loaded checkpoint.

        Raises:
            ConfigError: slots < 1, or max_context too small for one action.
        """
        if slots < 1 or max_context <= params.max_new_tokens:
            raise ConfigError(
                f"need slots >= 1 and max_context > max_new_tokens; got {slots}, {max_context}, {params.max_new_tokens}"
            )
        self.model, self.tokenizer, self.meta = checkpoint.model, checkpoint.tokenizer, checkpoint.meta
        self.params, self.slots, self.seed, self.max_context = params, slots, seed, max_context
        tok = self.tokenizer
        self.session = Session(self.model, slots, stop_ids=[tok.end_id], pad_id=tok.pad_id, capacity=1024)
        self._generators = [torch.Generator() for _ in range(slots)]
        self._begun = [False] * slots
        self._generated = [0] * slots
        self._full = [False] * slots
        self._fresh = [False] * slots  # begun, first observation not yet appended
        self._partial: dict[int, list[int]] = {}  # slot -> tokens of its unfinished action (see step)
        self._rows: list[list[int]] = [[] for _ in range(slots)]  # ids in each cache row (len == its length)
        self.prefilled = 0  # observation tokens computed (appended to the cache)
        self.shared = 0  # observation tokens served by prefix sharing instead
        self._closed = False

    def _check(self, slot: int) -> None:
        if self._closed:
            raise ConfigError("this model policy is closed")
        if not (isinstance(slot, int) and 0 <= slot < self.slots):
            raise ConfigError(f"slot {slot!r} is out of range: this policy has slots 0..{self.slots - 1}")

    def begin(self, slot: int, task: TaskSpec, sample: int) -> None:
        """A new episode starts in ``slot``: seed its sampling from (seed, task, sample).

        The row's cache entries stay until the slot's first ``act``, which may reuse a prefix of
        them (see the module docstring).
        """
        self._check(slot)
        self._generators[slot].manual_seed(episode_seed(self.seed, task.task_id, sample))
        self._begun[slot], self._generated[slot], self._full[slot], self._fresh[slot] = True, 0, False, True
        self._partial.pop(slot, None)  # an action cut off by a new episode is dropped

    def act(self, slots: list[int], observations: list[str]) -> list[str]:
        """One action per listed slot, generated for all of them in one batch.

        Args:
            slots: distinct slots, each begun and none mid-action.
            observations: per listed slot, the env's text since its last action.

        Returns:
            Per listed slot, the action text (ending with ``<|end|>`` unless the budget ran out).

        Raises:
            ConfigError: mismatched lengths, a repeated slot, a slot with no episode, or one mid-action.
        """
        if len(slots) != len(observations) or len(set(slots)) != len(slots):
            raise ConfigError(f"act needs distinct slots, one observation each; got {slots} and {len(observations)}")
        done = self.step(dict(zip(slots, observations, strict=True)), wait_all=True)
        return [done[s] for s in slots]

    def step(self, observations: dict[int, str], *, wait_all: bool = False) -> dict[int, str]:
        """Continuous batching: feed new observations, then decode every row mid-action until one is done.

        Each slot in ``observations`` starts its next action; slots whose action a previous call
        left unfinished continue it in the same batch. The call returns as soon as at least one
        action is done (all of them with ``wait_all``), so a runner can step that env and feed
        the next observation while the other rows keep their place in the batch: no row waits
        for the longest action of a round. A row's tokens do not depend on when it is stepped
        (its draws come from its own generator, one per token).

        Args:
            observations: ``{slot: the env's text since its last action}`` for slots that
                need an action and are not mid-action.
            wait_all: return only when every row mid-action is done.

        Returns:
            ``{slot: action text}`` for the actions that are done (out-of-context slots at once).

        Raises:
            ConfigError: a slot with no episode, or one mid-action given an observation.
        """
        for s in observations:
            self._check(s)
            if not self._begun[s]:
                raise ConfigError(f"slot {s} has no episode: call begin(slot, task, sample) first")
            if s in self._partial:
                raise ConfigError(f"slot {s} is mid-action: it takes no observation until its action is returned")
        feed: list[list[int]] = [[] for _ in range(self.slots)]
        active = [s in self._partial for s in range(self.slots)]
        fresh: list[tuple[int, list[int]]] = []
        actions: dict[int, str] = {}
        for s, ids in zip(observations, self.tokenizer.encode_batch(list(observations.values())), strict=True):
            if self._fresh[s]:
                ids = [self.tokenizer.bos_id, *ids]  # a context starts as SFT rows do (Tokenizer.encode_prompt)
            base = 0 if self._fresh[s] else len(self._rows[s])
            if not self._full[s] and base + len(ids) + self.params.max_new_tokens > self.max_context:
                self._full[s] = True
            if self._full[s]:
                actions[s] = END  # out of context: an empty turn
                continue
            active[s] = True
            if self._fresh[s]:
                fresh.append((s, ids))
            else:
                feed[s] = ids
        if any(active):
            self._feed(fresh, feed)
            budgets = [self.params.max_new_tokens - len(self._partial.get(s, ())) for s in range(self.slots)]
            turns = self.session.generate(
                self.params, self._generators, active=active, budgets=budgets, min_done=None if wait_all else 1
            )
            for s, turn in enumerate(turns):
                if turn is None:
                    continue
                ids = turn.tokens.tolist()
                self._rows[s] += ids
                self._generated[s] += len(ids)
                part = self._partial.pop(s, []) + ids
                if turn.stopped or len(part) >= self.params.max_new_tokens:
                    actions[s] = self.tokenizer.decode(part)
                else:
                    self._partial[s] = part
        return actions

    def _feed(self, fresh: list[tuple[int, list[int]]], feed: list[list[int]]) -> None:
        """Append the observations: fresh slots' prompts by prefix sharing, the others as they are."""
        levels = self._share_prefixes(fresh, feed)
        self._append(feed)
        for level in levels:  # each slot copies its parent's prefix, appended just before
            self.session.copy_prefixes([(s, parent, n) for s, parent, n, _ in level])
            feed = [[] for _ in range(self.slots)]
            for s, parent, n, ids in level:
                self._rows[s], feed[s] = self._rows[parent][:n], ids[n:]
            self._append(feed)

    def _share_prefixes(
        self, fresh: list[tuple[int, list[int]]], feed: list[list[int]]
    ) -> list[list[tuple[int, int, int, list[int]]]]:
        """Give each fresh slot the longest prefix of its first observation the cache can share.

        Each fresh slot, in order, takes the longest prefix any row holds now (its own old row
        included): level 0, appended at once with the rest of ``feed``. A slot whose prompt
        shares at least :data:`MIN_SHARED` more tokens with an earlier fresh slot's prompt waits
        for that slot's append and copies from it: one level deeper (samples of one task below
        the first of them, the first sample of each other task below the first task: the
        shared system text). At least one token is always left to append (the row needs the
        logits after its last token).

        Returns:
            Levels 1, 2, …: the slots to serve after the previous level's append, as
            ``(slot, parent slot, shared tokens, observation ids)``.
        """
        moves, depth, later = [], {}, []
        for i, (s, ids) in enumerate(fresh):
            limit = max(len(ids) - 1, 0)
            n, src = longest_prefix(ids, self._rows, limit, prefer=s)
            m, parent = max(((min(common_prefix(ids, pids), limit), ps) for ps, pids in fresh[:i]), default=(0, -1))
            if m >= n + MIN_SHARED:
                depth[s] = depth[parent] + 1
                later.append((s, parent, m, ids))
                self.shared += m
            else:
                depth[s] = 0
                moves.append((s, src, n))
                feed[s] = ids[n:]
                self.shared += n
        self.session.copy_prefixes(moves)
        shared = [self._rows[src][:n] for _, src, n in moves]  # read every source before any write
        for (s, _, _), prefix in zip(moves, shared, strict=True):
            self._rows[s] = prefix
        levels: list[list[tuple[int, int, int, list[int]]]] = [[] for _ in range(max(depth.values(), default=0))]
        for move in later:
            levels[depth[move[0]] - 1].append(move)
        return levels

    def _append(self, feed: list[list[int]]) -> None:
        """Append each row's ids to the session and to the row's bookkeeping."""
        self.session.append(feed)
        for s, ids in enumerate(feed):
            self.prefilled += len(ids)
            if ids:
                self._rows[s] = self._rows[s] + ids
                self._fresh[s] = False

    def tokens(self, slot: int) -> int:
        """Tokens generated so far in the slot's current episode."""
        self._check(slot)
        return self._generated[slot]

    def context(self, slot: int) -> list[int]:
        """The slot's episode context ids: tokens(obs0) + act1 + tokens(obs1) + … (what its cache row holds)."""
        self._check(slot)
        return [] if self._fresh[slot] else list(self._rows[slot])

    def out_of_context(self, slot: int) -> bool:
        """True once the slot's episode no longer fits ``max_context`` (its actions are then bare ``<|end|>``)."""
        self._check(slot)
        return self._full[slot]

    def close(self) -> None:
        """Drop the cache (GPU memory is freed once nothing else holds the model)."""
        self.session.cache = self.model.new_cache(1, 0)
        self._closed = True


def model_policy(**options: Any) -> ModelPolicy:
    """The ``model`` entry of ``toolgym.POLICIES``: validate the options, load the checkpoint.

    Args:
        **options: ``ModelPolicyConfig`` fields (``checkpoint`` required).

    Raises:
        ConfigError: a missing checkpoint option, an unknown option, a bad value, or cuda unavailable.
        CheckpointError: the checkpoint is missing, corrupt or mismatched (naming the file).
    """
    if "checkpoint" not in options:
        raise ConfigError("policy 'model' needs a checkpoint directory: --checkpoint DIR")
    try:
        config = ModelPolicyConfig(**options)
    except ValidationError as exc:
        raise ConfigError(f"policy 'model': {one_line(exc)}") from None
    params = SamplingParams(config.temperature, config.top_p, config.max_new_tokens)
    checkpoint = load_checkpoint(config.checkpoint, device=resolve_device(config.device))
    return ModelPolicy(checkpoint, params, slots=config.slots, seed=config.seed, max_context=config.max_context)
