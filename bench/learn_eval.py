"""pass@1 of a checkpoint on held-out test worlds and, apart, on held-out archetypes.

The test split of a ``domains`` dataset synthesized with held-out archetypes holds two kinds of
world (``toolgym.spec.world_split``): every world of a held-out archetype, and the test share of
the worlds of the other archetypes. They measure different things (a new world of a known domain
vs a domain never seen in training), so each is a group of its own: a task goes to
``heldout_archetypes`` when its world's archetype (``Family.world_archetype``) is held out, else
to ``heldout_worlds``. Each group takes up to ``tasks`` tasks, the difficulties in turn (each in
dataset order), so both groups weigh the difficulties alike whatever the split drew; the same
tasks for every checkpoint.

The numbers come from the eval code of ``toolgym eval`` (:mod:`toolgym.policy.evaluate`): the
registered ``model`` policy, ``evaluate`` for the episodes and ``summarize`` for pass@1 with its
95% interval over tasks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolgym.bench.learn_config import EvalStage
from toolgym.errors import ConfigError

GROUPS = ("heldout_worlds", "heldout_archetypes")


def eval_items(
    dataset: Path, family: str, difficulties: list[int], holdout_archetypes: list[str], tasks: int
) -> dict[str, list[tuple[Any, Any]]]:
    """The (task, world) pairs of each group (see the module docstring), at most ``tasks`` each.

    Raises:
        ConfigError: a group has no test task (too few tasks synthesized for the split).
    """
    from toolgym.data.dataset import Dataset
    from toolgym.synth import get_family

    fam = get_family(family)
    held = set(holdout_archetypes)
    found: dict[str, dict[int, list[tuple[Any, Any]]]] = {g: {d: [] for d in difficulties} for g in GROUPS}
    with Dataset(dataset, read_only=True) as ds:
        for tid in ds.task_ids(family, split="test", difficulties=difficulties):
            task = ds.task(tid)
            world = fam.load_world(ds.world_data(task.world_id))
            found[GROUPS[1] if fam.world_archetype(world) in held else GROUPS[0]][task.difficulty].append((task, world))
    groups = {g: _round_robin(list(by_difficulty.values()), tasks) for g, by_difficulty in found.items()}
    empty = [g for g, items in groups.items() if not items]
    if empty:
        raise ConfigError(f"{dataset} has no test task in {', '.join(empty)}; synthesize more tasks (synth.count)")
    return groups


def family_items(families: list[str], tasks: int, seed: int) -> dict[str, list[tuple[Any, Any]]]:
    """``tasks`` test-split tasks of each other family at difficulty 1, synthesized on the fly.

    The tasks ``toolgym eval --family F --split test --difficulty 1 --limit N --seed S`` runs
    (world seeds S, S+1, … of the test split), one group per family, named by its id.

    Raises:
        UnknownNameError: an unknown family (the message names the closest).
    """
    from toolgym.cli.eval import _eval_items

    return {f: _eval_items(None, f, "test", [1], tasks, seed) for f in families}


def _round_robin(lists: list[list[tuple[Any, Any]]], n: int) -> list[tuple[Any, Any]]:
    """Up to ``n`` items taken from the lists in turn (one difficulty after the other), each in its order."""
    out: list[tuple[Any, Any]] = []
    for i in range(max((len(x) for x in lists), default=0)):
        out += [x[i] for x in lists if i < len(x)]
    return out[:n]


def eval_checkpoint(checkpoint: Path, groups: dict[str, list[tuple[Any, Any]]], config: EvalStage) -> dict[str, Any]:
    """Run ``config.samples`` episodes of the checkpoint's policy on each task of each group.

    Args:
        checkpoint: a policy checkpoint directory.
        groups: ``eval_items``'s groups.
        config: the sampling and episode settings.

    Returns:
        ``{group: {"tasks", "episodes", "pass@1": [mean, 95% half-width (NaN: one task)],
        "mean_reward", "by_difficulty": {d: [mean, half-width]}, "rewards": {task id: [reward per
        sample]}}}``.

    Raises:
        CheckpointError: the checkpoint cannot be loaded.
    """
    from toolgym.policy.evaluate import evaluate, make_policy, summarize

    policy = make_policy(
        "model", checkpoint=checkpoint, device=config.device, temperature=config.temperature, top_p=config.top_p,
        max_new_tokens=config.max_new_tokens, seed=config.seed,
    )  # fmt: skip
    out: dict[str, Any] = {}
    try:
        for name, items in groups.items():
            results = evaluate(items, policy, config.samples, max_turns=config.max_turns)
            rows = summarize(results, [1])
            overall = rows[-1]  # the "all" row
            out[name] = {
                "tasks": overall.tasks,
                "episodes": sum(len(r.rewards) for r in results),
                "pass@1": list(overall.pass_at[1]),
                "mean_reward": overall.mean_reward,
                "by_difficulty": {
                    r.difficulty: list(r.pass_at[1]) for r in rows if r.family != "all" and r.difficulty != "all"
                },
                "rewards": {r.task_id: r.rewards for r in results},
            }
    finally:
        close = getattr(policy, "close", None)
        if callable(close):
            close()
    return out
