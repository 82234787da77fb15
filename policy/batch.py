"""The batched-policy protocol: one object acts for many episodes at once (the in-repo model)."""

from __future__ import annotations

from typing import Protocol

from toolgym.spec import TaskSpec


class BatchPolicy(Protocol):
    """Acts for up to `slots` episodes at once; the eval runner steps the envs in lockstep."""
    slots: int
    def begin(self, slot: int, task: TaskSpec, sample: int) -> None:
        """A new episode starts in `slot` (forget what the slot held)."""
    def act(self, slots: list[int], observations: list[str]) -> list[str]:
        """One action per listed slot. `observations[i]` is exactly the text the env returned to
        slot i since its last action (after `begin`: the reset observation), so the policy's
        context is obs0 + act1 + obs1 + … (token-exact, no re-rendering)."""
    def tokens(self, slot: int) -> int:
        """Tokens generated so far in the slot's current episode."""
    def close(self) -> None: ...
