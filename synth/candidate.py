"""One world's candidates through the reference run and the gates: the unit of parallel work.

A world is generated once for its ``tasks_per_world`` candidates (:func:`synthesize_world`), so
worlds are what an executor (:mod:`toolgym.synth.executors`) hands to its workers; candidate
``(w, k)`` is a pure function of ``(family, seed, w, k)`` (:mod:`toolgym.synth.config`).

Every candidate runs its reference solution through a real ToolEnv (the same parse/dispatch
path a policy uses, so the stored trajectory is a real one) and must score 1; a reference that
fails is a :class:`~toolgym.errors.ReferenceSolutionError` that stops the run, never a warning.
Then the gates of :mod:`toolgym.synth.gates` run; a task that fails one is dropped and
counted under that gate's name. Splits are by world, so held-out worlds never appear in train.
On-the-fly synthesis (:func:`synthesize_on_the_fly`, behind the ``"synth"`` task source) is
the first shippable candidate of world 0 of a one-world run.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
from dataclasses import dataclass, field
from typing import Any

import orjson

from toolgym.envs.agents import VandalAgent
from toolgym.envs.limits import REFERENCE_MARGIN
from toolgym.envs.markup import check_task_text
from toolgym.envs.replay import replay_writes, with_expected_state, write_actions
from toolgym.envs.rollout import ProgramPolicy, run_episode
from toolgym.envs.runtime import final_state
from toolgym.envs.sources import MemorySource
from toolgym.envs.toolenv import ToolEnv, make_env, system_text
from toolgym.errors import ReferenceSolutionError
from toolgym.spec import (
    TaskSpec,
    Trajectory,
    WorldSpec,
    check_world_data,
    derive_seed,
    family_hash,
    world_split,
)
from toolgym.synth import get_family
from toolgym.synth.config import SynthConfig, on_the_fly_config, world_difficulty, world_seed
from toolgym.synth.family import Family
from toolgym.synth.gates import run_gates
from toolgym.verifiers.state import state_hash, unfilled_state_checks


@dataclass
class Outcome:
    """The fate of one candidate."""

    task_index: int
    status: str  # shipped | infeasible | <gate name>
    reason: str = ""
    task: TaskSpec | None = None
    trajectory: Trajectory | None = None


@dataclass
class WorldResult:
    """A world and the outcomes of its candidates."""

    index: int
    world: WorldSpec
    outcomes: list[Outcome] = field(default_factory=list)


def build_task(family: Family, world_id: str, task_id: str, difficulty: int, split: str, draft: Any) -> TaskSpec:
    """Turn a draft into a full task spec (tool schemas and system text included).

    Raises:
        ValueError: The prompt holds a special string of the markup or the system text a role
            marker (:func:`toolgym.envs.markup.check_task_text`), naming the task.
    """
    from toolgym.envs.tools import Toolset

    schemas = Toolset(family.tools(draft.tool_config)).schemas
    task = TaskSpec(
        task_id=task_id,
        world_id=world_id,
        family=family.id,
        env_id=family.env_id,
        difficulty=difficulty,
        split=split,
        system=system_text(schemas, names_rule=family.names_rule),
        prompt=draft.prompt,
        tools=schemas,
        tool_config=draft.tool_config,
        params=draft.params,
        verifier_spec=draft.verifier_spec,
        meta=draft.meta,
    )
    check_task_text(task.task_id, task.prompt, task.system)
    return task


def task_env(family: Family, task: TaskSpec, world: Any) -> ToolEnv:
    """An env for synthesis episodes (no chat-view bookkeeping: trajectories are stored as text)."""
    return make_env(family.id, source=MemorySource([(task, world)]), messages=False)


#: Sampled random-gate tries for a task whose family computed its exact random-pass chance.
EXACT_RANDOM_TRIES = 1


def evaluate_candidate(
    family: Family, task: TaskSpec, world: Any, rng: random.Random, config: SynthConfig, env: ToolEnv | None = None
) -> Outcome:
    """Run the reference and the gates on one task.

    A family that knows the exact chance that a random plausible answer passes
    (``Family.random_pass``) has the task dropped as ``random`` first when the chance is above
    ``config.random_pass_max`` for its difficulty: the sampled random gate cannot tell 2% from
    0.1% in 8 tries.

    A reference that scores 1 but takes more turns than the env's limit less
    :data:`~toolgym.envs.limits.REFERENCE_MARGIN` is dropped as ``long`` (a policy needs room to
    explore; the registry-wide limits test holds every shipped reference to the margin).

    ``env`` may be shared by the tasks of one world (its source must hold this task); by default
    a fresh one is made.
    """
    chance, limit = family.random_pass(world, task), config.random_pass_max[task.difficulty - 1]
    if chance is not None and chance > limit:
        return Outcome(0, "random", f"a random plausible answer passes with probability {chance:.2%} (> {limit:.2%})")
    if env is None:
        env = task_env(family, task, world)
    opts = {"task_id": task.task_id}
    reference = ProgramPolicy(family.reference(task.params, task.tool_config))
    ref = run_episode(env, reference, options=opts)
    if unfilled_state_checks(task.verifier_spec):  # fill the expected state by replay, then rerun (verifiers/state.py)
        task = with_expected_state(family, task, world, ref)
        with task_env(family, task, world) as filled_env:
            return evaluate_candidate(family, task, world, rng, config, filled_env)
    if ref.reward != 1.0:
        reason = ref.info.get("verdict", {}).get("reason", "the episode did not terminate")
        raise ReferenceSolutionError(f"task {task.task_id}: the reference solution scored {ref.reward}: {reason}")
    budget = math.floor(env.config.max_turns * (1 - REFERENCE_MARGIN))
    if ref.turns > budget:  # it fits, but leaves a policy too little room: not shipped (counted)
        return Outcome(0, "long", f"the reference took {ref.turns} turns (> {budget}: the turn limit less the margin)")
    writes = [t.name for t in family.tools(task.tool_config) if t.kind == "write" and t.name != "submit"]
    replay = write_actions(ref.actions[:-1], writes) if writes else None  # reads change nothing: not replayed
    # With the exact chance known (and within the limit), the sampled random gate only cross-checks
    # the machinery: random calls and writes cannot raise a no-write chance that the state check
    # already bounds. One try instead of config.random_tries (8) saves ~7 episodes per task (at
    # difficulty 5 a random episode costs about a tenth of a candidate's time).
    random_tries = config.random_tries if chance is None else min(config.random_tries, EXACT_RANDOM_TRIES)
    vandals, damaged = vandal_gate(family, task, world, ref, reference.answer, rng, config.vandal_tries, writes)
    with family.gate_scope():  # the gate agents' episodes (the generator's own code) may share a sandbox
        report = run_gates(
            lambda a: run_episode(env, a, options=opts),
            ref,
            random_answers=[family.random_answer(world, task, rng) for _ in range(random_tries)],
            bluff_answers=[family.bluff_answer(task, rng) for _ in range(config.bluff_tries)],
            perturbed_answers=family.perturb(world, task, reference.answer, rng),
            rng=rng,
            replay=replay,
            vandals=vandals,
            damaged=damaged,
            extra=[
                (g, functools.partial(ProgramPolicy, p, strict=False)) for g, p in family.gate_agents(world, task, rng)
            ],
        )
    if not report.shipped:
        return Outcome(0, report.failed or "?", report.reason)
    ref.answer = reference.answer
    return Outcome(0, "shipped", "", task, ref)


def schema_hash(schema: dict[str, Any] | None) -> str | None:
    """Content hash of a world schema (``Family.world_schema``), None for None."""
    if schema is None:
        return None
    return hashlib.sha256(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def has_state_check(spec: dict[str, Any]) -> bool:
    """Whether a verifier spec holds a state check (``"all"`` walked)."""
    return spec.get("kind") == "state" or any(has_state_check(sub) for sub in spec.get("checks", ()))


def checks_whole_state(spec: dict[str, Any]) -> bool:
    """Whether passing a verifier spec implies the *whole* final state equals the expected one.

    True for a state check without ``fields``, and for an ``"all"`` holding one (verdicts are
    binary, so a passing ``all`` passed each of its checks).
    """
    if spec.get("kind") == "state":
        return spec.get("fields") is None
    return spec.get("kind") == "all" and any(checks_whole_state(sub) for sub in spec.get("checks", ()))


def vandal_gate(
    family: Family,
    task: TaskSpec,
    world: Any,
    ref: Trajectory,
    answer: Any,
    rng: random.Random,
    tries: int,
    writes: list[str],
) -> tuple[list[Any], Any]:
    """The vandal agents of a task and the test of whether a vandal did damage (``run_gates``).

    Only tasks with a state check and a write tool get vandals (elsewhere writes cannot be
    judged, or cannot happen). A vandal did damage when its writes, replayed on a fresh world
    (failed writes skipped, as the env skipped them), leave a *whole* state that differs from
    the reference's. A check whose ``fields`` leave out a part the toolset can write lets such
    damage score, and the gate drops the task: no collateral change may pass. The reference's
    state is replayed only when a vandal scores, not for every task; and not at all when the
    task's verifier checks the whole state (:func:`checks_whole_state`): a vandal that passes
    such a check left the reference's whole state, so it did no damage (its writes failed or
    were undone). ``writes`` names the task's write tools (``submit`` aside).

    Returns:
        (agent makers, ``damaged(episode) -> bool``).
    """
    if not has_state_check(task.verifier_spec) or not writes or tries == 0:
        return [], lambda ep: True
    before = write_actions(ref.actions[:-1], writes)  # its reads are not replayed: their results seed the pool
    seeds = [rng.getrandbits(64) for _ in range(tries)]
    makers = [
        functools.partial(VandalAgent, random.Random(seed), answer, before, writes, seen=ref.observations)
        for seed in seeds
    ]
    if checks_whole_state(task.verifier_spec):
        return makers, lambda ep: False

    @functools.cache
    def whole_state_hash(actions: tuple[str, ...]) -> str:
        context = replay_writes(family, world, task, actions, strict=False)
        try:
            return state_hash(final_state(context))
        finally:
            family.close_context(context)

    return makers, lambda ep: whole_state_hash(tuple(ep.actions)) != whole_state_hash(tuple(before))


def synthesize_world(config: SynthConfig, w: int, skip: int = 0, first_only: bool = False) -> WorldResult:
    """Generate world ``w`` and evaluate its candidates ``skip…tasks_per_world-1``.

    With ``first_only`` it stops at the first candidate that ships (on-the-fly synthesis needs
    one task; candidates are independent, so the one it returns is the same either way).
    """
    family = get_family(config.family)
    difficulty, seed = world_difficulty(config, w), world_seed(config, w)
    world = family.make_world(seed, difficulty)
    archetype = family.world_archetype(world)
    split = world_split(config, w, archetype)
    world_id = f"{family.id}-s{config.seed}-w{w:06d}"
    data = world.to_json()
    snapshot = check_world_data(family.id, data)  # JSON that round-trips; the world as made
    spec = WorldSpec(
        world_id=world_id,
        family=family.id,
        family_version=family.version,
        seed=seed,
        difficulty=difficulty,
        split=split,
        data=data,
        schema_hash=schema_hash(family.world_schema(world)),
        archetype=archetype,
    )
    result = WorldResult(w, spec)
    tool_configs: list[dict[str, Any]] = []  # of the candidates run, for the message below
    try:
        with family.synthesis_scope():  # its reference and gate episodes: the generator's own code
            _evaluate_world(family, config, w, world, result, skip, first_only, tool_configs)
    except ReferenceSolutionError:  # a mutated shared world is the likelier cause: say so if so
        check_world_unchanged(family, world, snapshot, result.world.world_id, tool_configs)
        raise
    check_world_unchanged(family, world, snapshot, result.world.world_id, tool_configs)
    return result


def check_world_unchanged(
    family: Family, world: Any, snapshot: Any, world_id: str, tool_configs: list[dict[str, Any]]
) -> None:
    """Refuse a world that changed while its candidates ran.

    The episodes of a toolset without a write tool share the world object uncopied
    (:func:`toolgym.envs.runtime.open_context`), so a tool marked read that mutates it leaks
    state from one episode into the next.

    One ``to_json()`` and one comparison per world, not per candidate (synthesis speed).

    Args:
        family: The world's family.
        world: The live world object, after its candidates.
        snapshot: :func:`toolgym.spec.check_world_data` of its data before the first candidate.
        world_id: The world's id (named in the error).
        tool_configs: The tool configs of the candidates that ran (their toolsets decide the message).

    Raises:
        ReferenceSolutionError: The world's data differs from the snapshot; naming the family and,
            when some toolset has no write tool, saying to mark the mutating tool ``@tool("write")``.
    """
    after = world.to_json()
    if after == snapshot:
        return
    try:  # tuples come back as lists: compare what a dataset would store
        if orjson.loads(orjson.dumps(after)) == snapshot:
            return
    except TypeError:  # it now holds something that is not JSON: changed
        pass
    read_only = not tool_configs or any(
        not any(t.kind == "write" for t in family.tools(config)) for config in tool_configs
    )
    raise ReferenceSolutionError(
        f"family {family.id!r}, world {world_id}: the world object changed while its candidates "
        + (
            'ran: a tool marked read changed the world; mark it @tool("write") (episodes of a toolset without a '
            "write tool share one world object, so the change leaks into every later episode)"
            if read_only
            else "ran, though every toolset has a write tool (whose episodes get a copy): make_task, "
            "random_answer, bluff_answer and perturb must not modify the world"
        )
    )


def _evaluate_world(
    family: Family,
    config: SynthConfig,
    w: int,
    world: Any,
    result: WorldResult,
    skip: int,
    first_only: bool,
    tool_configs: list[dict[str, Any]],
) -> None:
    """The candidate loop of :func:`synthesize_world`: appends to ``result.outcomes`` and ``tool_configs``."""
    spec = result.world
    world_id, difficulty, split = spec.world_id, spec.difficulty, spec.split
    env: ToolEnv | None = None
    source: MemorySource | None = None
    seen = _seen_keys(family, config, w, world, difficulty, skip)
    for k in range(skip, config.tasks_per_world):
        rng = random.Random(derive_seed(config.seed, family_hash(family.id), w, k))
        draft = family.make_task(world, difficulty, rng)
        if draft is None:
            result.outcomes.append(Outcome(k, "infeasible", "no valid plan for this start"))
            continue
        key = family.task_key(draft)
        if key is not None:
            if key in seen:
                result.outcomes.append(Outcome(k, "duplicate", "an earlier candidate of this world is the same task"))
                continue
            seen.add(key)
        tool_configs.append(draft.tool_config)
        task = build_task(family, world_id, f"{world_id}-t{k}", difficulty, split, draft)
        if source is None:  # one env per world: its tasks share the env and its toolset cache
            source = MemorySource([(task, world)])
            env = make_env(family.id, source=source, messages=False)
        else:
            source.add(task, world)
        out = evaluate_candidate(family, task, world, rng, config, env)
        out.task_index = k
        result.outcomes.append(out)
        if first_only and out.task is not None:
            break
    if env is not None:
        env.close()


def _seen_keys(family: Family, config: SynthConfig, w: int, world: Any, difficulty: int, skip: int) -> set[str]:
    """The :meth:`Family.task_key` of world ``w``'s candidates before ``skip`` (drafted again on a resume).

    Candidate ``k`` is dropped as a duplicate when a draft of ``0…k-1`` had its key, whatever that
    draft's own fate: so the set is a function of ``(family, seed, w, k)`` and a resume drops
    exactly what an uninterrupted run drops.
    """
    seen: set[str] = set()
    if skip == 0 or type(family).task_key is Family.task_key:  # no key: nothing to draft again
        return seen
    for k in range(skip):
        rng = random.Random(derive_seed(config.seed, family_hash(family.id), w, k))
        draft = family.make_task(world, difficulty, rng)
        key = family.task_key(draft) if draft is not None else None
        if key is not None:
            seen.add(key)
    return seen


def synthesize_on_the_fly(family: Family, seed: int, difficulty: int) -> tuple[TaskSpec, Any]:
    """One shippable task for an env without a dataset (``toolgym/<Family>-v<N>`` with no kwargs)."""
    res = synthesize_world(on_the_fly_config(family.id, seed, difficulty), 0, first_only=True)
    for out in res.outcomes:
        if out.task is not None:
            task = out.task.model_copy(update={"task_id": f"{family.id}-fly-s{seed}-d{difficulty}"})
            return task, family.load_world(res.world.data)
    raise ReferenceSolutionError(f"no shippable {family.id} task for seed {seed} at difficulty {difficulty}")


__all__ = [
    "Outcome",
    "WorldResult",
    "build_task",
    "check_world_unchanged",
    "evaluate_candidate",
    "synthesize_on_the_fly",
    "synthesize_world",
    "task_env",
]
