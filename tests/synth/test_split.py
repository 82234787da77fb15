"""Splits without a dataset: on-the-fly envs honour ``split`` by world, with the datasets' rule."""

import gymnasium as gym
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import toolgym  # noqa: F401 - registers the env ids
from toolgym.errors import ConfigError
from toolgym.spec import SPLITS, on_the_fly_split, world_split
from toolgym.synth import FAMILIES, get_family
from toolgym.synth.candidate import synthesize_world
from toolgym.synth.config import SynthConfig
from toolgym.synth.trip.family import TripPlanning

SHIPPED = [f for f, entry in FAMILIES.items() if isinstance(entry, str)]


def served(family_id, split, seeds, difficulty=1):
    env = gym.make(get_family(family_id).env_id, split=split, difficulty=difficulty)
    try:
        return [env.unwrapped.reset(seed=s) and env.unwrapped.task for s in seeds]
    finally:
        env.close()


def test_issue_input_train_and_test_serve_different_worlds():
    train, test = served("trip", "train", range(4)), served("trip", "test", range(4))
    assert {t.split for t in train} == {"train"} and {t.split for t in test} == {"test"}
    assert not {t.world_id for t in train} & {t.world_id for t in test}
    assert [t.task_id for t in train] != [t.task_id for t in test]


@pytest.mark.parametrize("family_id", SHIPPED)
def test_every_served_task_lies_in_its_split(family_id):
    """Every split of every family: the task's split is its world's, by the datasets' rule."""
    seeds = range(3) if family_id in ("code", "codeagent") else range(8)  # sandboxed gates: fewer seeds
    worlds = {}
    for split in SPLITS:
        for task in served(family_id, split, seeds):
            assert task.split == split
            seed = int(task.task_id.split("-s")[1].split("-")[0])
            # The same world, synthesized as world 0 of a dataset run with that seed, has this split.
            config = SynthConfig(family=family_id, seed=seed, difficulty=(1, 1), workers=1)
            assert world_split(config, 0) == split
            worlds.setdefault(split, set()).add(task.world_id)
    assert not worlds["train"] & worlds["test"] and not worlds["train"] & worlds["val"]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(SHIPPED), st.integers(0, 2**31 - 1), st.integers(1, 5))
def test_on_the_fly_split_is_the_dataset_rule(family_id, seed, difficulty):
    config = SynthConfig(family=family_id, seed=seed, difficulty=(difficulty, difficulty), workers=1)
    assert on_the_fly_split(family_id, seed) == world_split(config, 0)


def test_dataset_world_split_matches_the_on_the_fly_one():
    for seed in range(6):
        world = synthesize_world(SynthConfig(family="trip", seed=seed, difficulty=(1, 1), workers=1), 0).world
        assert world.split == on_the_fly_split("trip", seed)


def test_a_task_id_outside_the_split_is_refused():
    (task,) = served("trip", "train", [0])
    env = gym.make("toolgym/TripPlanning-v1", split="test", difficulty=1)
    with pytest.raises(ConfigError, match="is in split 'train', not 'test'"):
        env.unwrapped.reset(options={"task_id": task.task_id})


@pytest.mark.parametrize("split", ["tset", "holdout", "Train", ""])
def test_unknown_split_names_are_a_clear_error(split):
    with pytest.raises(ConfigError, match=f"unknown split {split!r}.*splits are train, val, test"):
        gym.make("toolgym/TripPlanning-v1", split=split)


def test_eval_on_the_fly_honours_split() -> None:
    """`toolgym eval --split test` without a dataset evaluates test worlds only, none twice."""
    from toolgym.cli.eval import _eval_items

    items = _eval_items(None, "trip", "test", [1], limit=3, seed=0)
    seeds = [int(task.task_id.split("-s")[1].split("-")[0]) for task, _ in items]
    assert len(set(seeds)) == 3
    assert all(on_the_fly_split("trip", s) == "test" for s in seeds)


def test_a_held_out_archetype_goes_to_test_and_the_others_keep_their_draw():
    config = SynthConfig(family="trip", seed=3, holdout_archetypes=["clinic"])
    draws = [world_split(config, w) for w in range(200)]
    assert [world_split(config, w, "clinic") for w in range(200)] == ["test"] * 200
    assert [world_split(config, w, "library") for w in range(200)] == draws
    assert [world_split(config, w, None) for w in range(200)] == draws
    assert {"train", "val", "test"} == set(draws)


class _TwoArchetypeTrip(TripPlanning):
    """Trip worlds labelled by archetype: "coast" when the world's first city sorts before "M"."""

    id = "archtrip"
    env_name = "ArchTrip"

    def archetypes(self):
        return ("coast", "inland")

    def world_archetype(self, world):
        return "coast" if world.cities[0] < "M" else "inland"


def test_synthesis_holds_out_whole_archetypes_and_refuses_unknown_ones(tmp_path):
    from toolgym.data.dataset import Dataset
    from toolgym.errors import UnknownNameError
    from toolgym.synth import register_family, unregister_family
    from toolgym.synth.run import synthesize

    register_family("archtrip", _TwoArchetypeTrip)
    try:
        fam = get_family("archtrip")
        config = SynthConfig(family="archtrip", count=24, difficulty=(1, 1), workers=1, holdout_archetypes=["coast"])
        synthesize(config, tmp_path / "d.duckdb")
        with Dataset(tmp_path / "d.duckdb", read_only=True) as ds:
            rows = ds.con.execute("SELECT seed, split, archetype FROM worlds").fetchall()
            assert ds.distinctness("archtrip")["archetypes"] == 2
        kinds = {seed: fam.world_archetype(fam.make_world(seed, 1)) for seed, _, _ in rows}
        assert all(kinds[seed] == stored for seed, _, stored in rows)  # stored with the world
        assert {s for seed, s, _ in rows if kinds[seed] == "coast"} == {"test"}
        assert "train" in {s for seed, s, _ in rows if kinds[seed] == "inland"}
        for bad, message in ((["reef"], "unknown archetype of family 'archtrip' 'reef'"), (["coastal"], "coast")):
            with pytest.raises(UnknownNameError, match=message):
                synthesize(config.model_copy(update={"holdout_archetypes": bad}), tmp_path / "e.duckdb")
            assert not (tmp_path / "e.duckdb").exists()
        with pytest.raises(ConfigError, match="family 'trip' has no archetypes to hold out"):
            synthesize(SynthConfig(family="trip", holdout_archetypes=["coast"]), tmp_path / "f.duckdb")
    finally:
        unregister_family("archtrip")


def test_held_out_archetypes_are_a_set_in_the_resume_key(tmp_path):
    """``marina,ferry`` and ``ferry,marina,ferry`` write the same rows, so each resumes the other."""
    from toolgym.data.dataset import Dataset
    from toolgym.synth.config import canonical_key
    from toolgym.synth.run import synthesize

    base = SynthConfig(family="domains", count=4, difficulty=(1, 1), workers=1, executor="serial")
    first = base.model_copy(update={"holdout_archetypes": ["marina", "ferry"]})
    assert first.resume_key()["holdout_archetypes"] == ["ferry", "marina"]
    synthesize(first, tmp_path / "d.duckdb")
    again = base.model_copy(update={"count": 8, "holdout_archetypes": ["ferry", "marina", "ferry"]})
    assert synthesize(again, tmp_path / "d.duckdb").shipped == 4
    with pytest.raises(ConfigError, match="holdout_archetypes"):
        synthesize(base.model_copy(update={"holdout_archetypes": ["ferry"]}), tmp_path / "d.duckdb")
    with Dataset(tmp_path / "d.duckdb", read_only=True) as ds:
        assert ds.manifest("domains")["config"]["holdout_archetypes"] == ["ferry", "marina"]
    assert canonical_key({"holdout_archetypes": ["b", "a", "b"], "seed": 1}) == {
        "holdout_archetypes": ["a", "b"],
        "seed": 1,
    }
