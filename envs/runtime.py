"""What the env side needs from a family: the :class:`Runtime` protocol (layer L3).

Data flows one way (DESIGN.md): ``synth`` produces specs, ``envs`` turns a spec into a live
episode *through the family's runtime*. This protocol is that runtime as the env side sees it:
the few members :class:`~toolgym.envs.toolenv.ToolEnv` and the task sources call, and nothing
about synthesis (worlds and tasks are made in ``synth``). Every
:class:`~toolgym.synth.family.Family` satisfies it structurally, so ``envs`` types its code
against this protocol and gets the instance from the central table with :func:`toolgym.family`,
never importing ``synth``.

Beside the protocol, the two rules every caller of a runtime shares (the env, the reference
replay of :mod:`toolgym.envs.replay`, the benchmarks):

* **Isolation** (:func:`open_context`): an episode whose toolset has a tool of kind
  ``"write"`` gets a fresh copy of the world, whatever the family's ``episode_context`` does by
  default, so no family has to remember to copy. The copy is a reload from the world's JSON
  (``load_world(loads(dumps(world.to_json())))``): measured ~10x cheaper than ``copy.deepcopy``
  (a 21 KB trip world: 0.14 ms against 1.5 ms; a 16-item toy world: 1.4 µs against 12 µs), and
  the episode then sees exactly the world a dataset-backed env would load. A family whose
  ``episode_context`` returns its own context (not the world itself: the code family's sandboxed
  ``CodeContext``) keeps it. Read-only toolsets share the world, uncopied: the hot path.
* **Final state** (:func:`final_state`): what the verifier sees at the end of an episode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import orjson

from toolgym.envs.tools import Tool
from toolgym.spec import TaskSpec, dump_world_data

__all__ = ["Runtime", "final_state", "fresh_world", "open_context"]


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
        """What the tools of one episode receive: the world itself, or a context of the family's own.

        Callers go through :func:`open_context`, which copies the world for write toolsets.
        """
        ...

    def close_context(self, context: Any) -> None:
        """Release what :meth:`episode_context` opened (sandboxes, files)."""
        ...


def fresh_world(runtime: Runtime, world: Any) -> Any:
    """A new world object equal to ``world``, sharing no mutable part with it.

    Rebuilt from a JSON round trip of ``world.to_json()`` (see the module docstring for why not
    ``copy.deepcopy``); world data is JSON by contract, since datasets store it so.

    Raises:
        WorldDataError: ``world.to_json()`` holds something JSON cannot encode (a set, an
            object, a non-string key); the message names the family and the value
            (:func:`toolgym.spec.dump_world_data`). Synthesis checks every world once before
            its first candidate (NaN and infinity included), so this only fires for worlds made
            elsewhere.
    """
    return runtime.load_world(orjson.loads(dump_world_data(runtime.id, world.to_json())))


def open_context(runtime: Runtime, world: Any, task: TaskSpec, writes: bool) -> Any:
    """The context of one episode, isolated from every other episode when its toolset writes.

    Args:
        runtime: The task's family.
        world: The (shared, cached) world object of the task.
        task: The task.
        writes: Whether the task's toolset has a write tool (``Toolset.has_write_tools``,
            computed once per toolset).

    Returns:
        ``runtime.episode_context(world, task)``; when that is the shared world itself and
        ``writes`` is true, a :func:`fresh_world` copy instead. Release it with
        ``runtime.close_context``.
    """
    context = runtime.episode_context(world, task)
    if writes and context is world:
        return fresh_world(runtime, world)
    return context


def final_state(context: Any) -> Any:
    """The state a verifier sees at the end of an episode: the episode's context, as it is then.

    The live object, not its JSON: the itinerary checks call the world's lookups, and the state
    check takes the ``to_json()`` view itself (:func:`toolgym.verifiers.state.state_view`). The
    env, the reference replay and the benchmarks all pass their context through here, so they
    judge the same thing; it must be taken before ``close_context`` (a closed sandbox is gone).
    """
    return context
