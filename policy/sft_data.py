"""SFT data: a dataset's reference trajectories as token rows with a loss mask on action tokens.

Each reference trajectory becomes one row ``<|bos|> obs0 act1 obs1 act2 …``, encoded segment by
segment (every observation starts and ends on a special string, which is one token, so the pieces'
tokens are exactly the whole text's tokens), with ``mask = 1`` exactly on the action tokens: the
assistant's reasoning (``<think>…</think>``, interleaved with its calls and kept in every turn),
its calls and the closing ``<|end|>``. Observations (system, user and tool turns, and the
``<|assistant|>`` marker that opens each turn) are context only.

Decisions:

* **Long episodes are truncated at an action boundary**: the row keeps ``obs0 act1 … obs_i
  act_{i+1}`` for the largest i that fits ``seq_len + 1`` tokens, so the first turns still
  teach; an episode whose first action does not fit is dropped. ``SFTData.truncated`` and
  ``.dropped`` count both.
* **One episode per row, bucketed by length, never packed**: the model has no document mask, so
  packing two episodes in a row would let the second attend to the first. Rows are sorted by
  length and cut into batches of at most ``batch_size`` rows and ``batch_size * seq_len``
  padded tokens (short episodes form larger batches); each batch is padded to its longest row
  with ``<|pad|>`` (mask 0). Pads sit after the real tokens, so causal attention never lets a
  real token see one.
* The batch order is a seeded shuffle per epoch, and the batch of optimizer step s is a function
  of (seed, s) alone (``SFTData.batches(start=s)``), so a resumed run sees the same batches as
  an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from toolgym.errors import ConfigError
from toolgym.policy.tokenizer import Tokenizer
from toolgym.policy.train_lm import Batch
from toolgym.spec import Trajectory


@dataclass
class Episode:
    """One encoded episode.

    Attributes:
        task_id: the task of the reference run.
        ids: [n] token ids (``<|bos|>`` first).
        mask: [n] 1 where ids[i] is an action token, else 0.
        turns: actions kept (fewer than the trajectory's when truncated).
    """

    task_id: str
    ids: list[int]
    mask: list[int]
    turns: int


def encode_episode(tokenizer: Tokenizer, trajectory: Trajectory, max_tokens: int) -> tuple[Episode | None, bool]:
    """Encode a trajectory, truncated at an action boundary to at most ``max_tokens`` tokens.

    Returns:
        (episode, truncated): episode is None when not even ``<|bos|> obs0 act1`` fits.

    Raises:
        ConfigError: the trajectory's observations are not ``len(actions) + 1``.
    """
    if len(trajectory.observations) != len(trajectory.actions) + 1:
        raise ConfigError(
            f"trajectory {trajectory.task_id!r} has {len(trajectory.actions)} actions but "
            f"{len(trajectory.observations)} observations (want one more)"
        )
    pieces = trajectory.pieces()
    enc = tokenizer.encode_batch(pieces)
    ids, mask, turns = [tokenizer.bos_id, *enc[0]], [0] * (1 + len(enc[0])), 0
    for i in range(len(trajectory.actions)):
        act, obs = enc[1 + 2 * i], enc[2 + 2 * i]
        if len(ids) + len(act) > max_tokens:
            break
        ids += act
        mask += [1] * len(act)
        turns += 1
        if i + 1 < len(trajectory.actions):  # the last observation (the verdict) teaches nothing
            if len(ids) + len(obs) > max_tokens:
                break
            ids += obs
            mask += [0] * len(obs)
    if turns == 0:
        return None, True
    return Episode(trajectory.task_id, ids, mask, turns), turns < len(trajectory.actions)


def load_episodes(dataset: object, split: str, tokenizer: Tokenizer, seq_len: int) -> tuple[list[Episode], int, int]:
    """Encode every reference trajectory of a split (``dataset`` is a ``toolgym.data.Dataset``).

    Returns:
        (episodes, truncated, dropped) counts as in the module docstring.
    """
    episodes, truncated, dropped = [], 0, 0
    for task_id in dataset.task_ids(split=split):  # type: ignore[attr-defined]
        ep, cut = encode_episode(tokenizer, dataset.trajectory(task_id), seq_len + 1)  # type: ignore[attr-defined]
        if ep is None:
            dropped += 1
            continue
        truncated += cut
        episodes.append(ep)
    return episodes, truncated, dropped


def make_batch(episodes: list[Episode], pad_id: int) -> Batch:
    """Pad episodes to the longest: tokens [B, L] and loss_mask [B, L - 1] on the targets."""
    L = max(len(e.ids) for e in episodes)
    tokens = torch.full((len(episodes), L), pad_id, dtype=torch.long)
    mask = torch.zeros(len(episodes), L, dtype=torch.float32)
    for b, e in enumerate(episodes):
        tokens[b, : len(e.ids)] = torch.tensor(e.ids)
        mask[b, : len(e.ids)] = torch.tensor(e.mask, dtype=torch.float32)
    return Batch(tokens, mask[:, 1:], n_tokens=sum(len(e.ids) - 1 for e in episodes))


@dataclass
class SFTData:
    """Length-bucketed batches of one split's episodes (see the module docstring).

    Attributes:
        episodes: encoded episodes, sorted by length.
        batch_size: most rows per batch.
        seq_len: tokens per row before padding are at most seq_len + 1.
        pad_id: the tokenizer's ``<|pad|>``.
        truncated: episodes cut at an action boundary.
        dropped: episodes whose first action did not fit.
    """

    episodes: list[Episode]
    batch_size: int
    seq_len: int
    pad_id: int
    truncated: int = 0
    dropped: int = 0
    groups: list[list[int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.episodes = sorted(self.episodes, key=lambda e: (len(e.ids), e.task_id))
        budget, group = self.batch_size * (self.seq_len + 1), list[int]()
        for i, e in enumerate(self.episodes):  # longest row of a group is its last (sorted)
            if group and (len(group) == self.batch_size or (len(group) + 1) * len(e.ids) > budget):
                self.groups.append(group)
                group = []
            group.append(i)
        if group:
            self.groups.append(group)

    @property
    def tokens(self) -> int:
        """Real (unpadded) tokens over all episodes."""
        return sum(len(e.ids) for e in self.episodes)

    def batch(self, group: int) -> Batch:
        """The padded batch of one length bucket."""
        return make_batch([self.episodes[i] for i in self.groups[group]], self.pad_id)

    def batches(self, seed: int, start: int = 0) -> Iterator[Batch]:
        """Endless training batches from step ``start``: a seeded shuffle of the buckets per epoch.

        Raises:
            ConfigError: when there are no episodes.
        """
        if not self.groups:
            raise ConfigError("no episodes to train on")
        n, step = len(self.groups), start
        while True:
            epoch, i = divmod(step, n)
            order = torch.randperm(
                n, generator=torch.Generator().manual_seed((seed + epoch * 0x9E3779B97F4A7C15) % 2**63)
            ).tolist()
            yield self.batch(order[i])
            step += 1
