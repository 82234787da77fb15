"""What the env side needs from a family: the :class:`Runtime` protocol (layer L3).

Data flows one way (DESIGN.md): ``synth`` produces specs, ``envs`` turns a spec into a live
episode *through the family's runtime*. This protocol is that runtime as the env side sees it:
the few members :class:`~toolgym.envs.toolenv.ToolEnv` and the task sources call, and nothing
about synthesis (worlds and tasks are made in ``synth``). Every
:class:`~toolgym.synth.family.Family` satisfies it structurally, so ``envs`` types its code
against this protocol and gets the instance from the central table with :func:`toolgym.family`,
never importing ``synth``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from toolgym.envs.tools import Tool
from toolgym.spec import TaskSpec

__all__ = ["Runtime"]


class Runtime(Protocol):
    """A family as an env runs it: tools per task, a context per episode, worlds from their data."""

    @property
    def id(self) -> str:
        """The family id (the key of ``toolgym.FAMILIES``; task ids of on-the-fly tasks start with it)."""
        ...

    def tools(self, tool_config: dict[str, Any]) -> Sequence[Tool]:
        """The toolset of a task (``submit`` included), from its tool config."""
        ...

    def load_world(self, data: dict[str, Any]) -> Any:
        """Rebuild a world object from its JSON data (a dataset row's ``data``)."""
        ...

    def episode_context(self, world: Any, task: TaskSpec) -> Any:
        """What the tools of one episode receive (the world, or a fresh copy for write tools)."""
        ...

    def close_context(self, context: Any) -> None:
        """Release what :meth:`episode_context` opened (sandboxes, files)."""
        ...
