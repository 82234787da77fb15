"""The reference replay: a reference's write calls, run again on a fresh world (layer L3).

A state check compares an episode's final state with the state the reference solution's writes
produce (:mod:`toolgym.verifiers.state` has the design). This module computes that state: it
parses the calls back out of a reference trajectory's actions (:func:`toolgym.envs.markup.parse_action`,
the parser the env uses), keeps the calls of tools of kind ``"write"`` in order, and runs them
directly through the task's toolset, without an env, on a fresh copy of the world
(:func:`toolgym.envs.runtime.fresh_world` via ``open_context``, as every episode of a toolset with
a write tool gets). The benchmarks take a stored reference's final state from here too. Reads are skipped (they cannot
change the state), as is everything after ``submit`` (the env runs none of it either).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from toolgym.envs import markup as mk
from toolgym.envs.runtime import Runtime, final_state, open_context
from toolgym.envs.tools import Toolset
from toolgym.errors import ReferenceSolutionError
from toolgym.spec import TaskSpec, Trajectory
from toolgym.verifiers.state import fill_expected_state, unfilled_state_checks

__all__ = ["replay_writes", "with_expected_state", "write_actions"]


def replay_writes(runtime: Runtime, world: Any, task: TaskSpec, actions: Sequence[str], strict: bool = True) -> Any:
    """A fresh context of ``task`` with the write calls of ``actions`` run on it, in order.

    Args:
        runtime: The task's family.
        world: The task's world (not modified: the replay runs on a fresh copy).
        task: The task (its tool config gives the toolset).
        actions: The assistant turns of an episode (a reference trajectory's ``actions``).
        strict: Whether a failed write is an error (a reference's writes all succeed). With
            False a failed write is skipped, as the env left it: any episode's state can be
            replayed (the vandal gate's), given that a write that fails changes nothing.

    Returns:
        The context after the writes (the shared world itself when the toolset has no write
            tool: there is nothing to replay); release it with ``runtime.close_context``.

    Raises:
        ReferenceSolutionError: A replayed write failed (the reference's writes depend on
            something the replay does not reproduce), naming the call and its error.
    """
    toolset = Toolset(runtime.tools(task.tool_config))
    context = open_context(runtime, world, task, toolset.has_write_tools)  # fresh when there is a write
    writes = {name for name, t in toolset.tools.items() if t.kind == "write"}
    try:
        for turn, calls in _turns_before_submit(actions):
            for call in (c for c in calls if c.name in writes):
                ok, result = toolset.call(context, call.name, call.arguments)
                if not ok and strict:
                    where = f"task {task.task_id}: replaying the reference's write {call.name} of turn {turn}"
                    raise ReferenceSolutionError(f"{where} failed: {result}")
    except BaseException:
        runtime.close_context(context)
        raise
    return context


def write_actions(actions: Sequence[str], writes: Sequence[str]) -> list[str]:
    """The write calls of ``actions`` (those named in ``writes``), one action per turn that had any.

    What an agent must replay to leave a reference's state, reads dropped (they change nothing)
    and everything from ``submit`` on dropped: the perturbed-answer gate replays these.
    """
    names, out = frozenset(writes), []
    for _, calls in _turns_before_submit(actions):
        kept = [(c.name, c.arguments) for c in calls if c.name in names]
        if kept:
            out.append(mk.render_action(kept))
    return out


def _turns_before_submit(actions: Sequence[str]) -> Iterator[tuple[int, list[Any]]]:
    """``(turn, calls)`` of each action (turns from 1), cut at the first ``submit`` (the env runs nothing after it)."""
    for turn, action in enumerate(actions, 1):
        calls = mk.parse_action(action).tool_calls
        stop = next((i for i, c in enumerate(calls) if c.name == "submit"), None)
        yield turn, calls[:stop]
        if stop is not None:
            return


def with_expected_state(runtime: Runtime, task: TaskSpec, world: Any, reference: Trajectory) -> TaskSpec:
    """``task`` with every unfilled state check's ``expected_hash`` from the replayed reference.

    Args:
        runtime: The task's family.
        task: A task whose verifier may hold state checks without ``expected_hash``.
        world: The task's world.
        reference: A run of the task's reference program (its actions are replayed; its verdict
            is not consulted).

    Returns:
        The task with its verifier filled (:func:`toolgym.verifiers.state.fill_expected_state`),
        or ``task`` itself when no state check lacks a hash.

    Raises:
        ReferenceSolutionError: A replayed write failed (see :func:`replay_writes`).
    """
    if not unfilled_state_checks(task.verifier_spec):
        return task
    context = replay_writes(runtime, world, task, reference.actions)
    try:
        verifier = fill_expected_state(task.verifier_spec, final_state(context))
    finally:
        runtime.close_context(context)
    return task.model_copy(update={"verifier_spec": verifier})
