"""Batched policies: one object acting for many episodes at once (the in-repo model's shape).

Two kinds of policy plug into ``toolgym eval`` (each entry of ``toolgym.POLICIES`` returns one):

* a :data:`~toolgym.policy.evaluate.PolicyFactory` ``(task, world, sample) -> Policy``: one policy
  object per episode (the scripted baselines, an OpenAI-compatible endpoint); the runner may run
  such episodes in threads, as many at once as the factory's ``concurrency`` attribute says;
* a :class:`BatchPolicy`: ``slots`` episodes stepped in lockstep, one :meth:`BatchPolicy.act` call
  per round for every live slot (batched generation with a KV cache per slot), each slot refilled
  with the next (task, sample) as soon as its episode ends. A BatchPolicy may also offer
  ``step(observations: dict[int, str]) -> dict[int, str]`` (continuous batching: feed the slots
  that have a new observation, return whichever actions are done, keep decoding the rest; see
  :meth:`toolgym.policy.model_policy.ModelPolicy.step`), which the runner then uses instead.

:func:`toolgym.policy.runner.run_episodes` drives both. Importing this module does not import torch.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from toolgym.spec import TaskSpec


@runtime_checkable
class BatchPolicy(Protocol):
    """Acts for up to `slots` episodes at once; the eval runner steps the envs in lockstep."""

    slots: int

    def begin(self, slot: int, task: TaskSpec, sample: int) -> None:
        """A new episode starts in `slot` (forget what the slot held)."""
        ...

    def act(self, slots: list[int], observations: list[str]) -> list[str]:
        """One action per listed slot.

        `observations[i]` is exactly the text the env returned to slot i since its last action
        (after `begin`: the reset observation), so the policy's context is obs0 + act1 + obs1 + …
        (token-exact, no re-rendering).
        """
        ...

    def tokens(self, slot: int) -> int:
        """Tokens generated so far in the slot's current episode."""
        ...

    def close(self) -> None:
        """Release what the policy holds (model, caches)."""
        ...


def is_batch_policy(policy: Any) -> bool:
    """Whether ``policy`` is a :class:`BatchPolicy` (has ``slots``, ``begin``, ``act``, ``tokens``, ``close``).

    A :data:`~toolgym.policy.evaluate.PolicyFactory` is a plain callable and is not one.
    """
    return isinstance(policy, BatchPolicy)
