"""A domains world is stored as its generator's inputs and regenerated on load, exactly."""

from __future__ import annotations

import orjson
import pytest

from toolgym.errors import WorldDataError
from toolgym.synth import get_family


def test_a_stored_world_regenerates_to_the_same_tables_and_names_drift_and_damage():
    fam = get_family("domains")
    world = fam.make_world(11, 4)
    row = orjson.loads(orjson.dumps(world.to_json()))  # what a dataset keeps
    assert set(row) == {"archetype", "seed", "difficulty", "digest"} and len(orjson.dumps(row)) < 200
    again = fam.load_world(row)
    assert again.data == world.data and again.to_json() == row
    with pytest.raises(WorldDataError, match="another version of the generator"):
        fam.load_world({**row, "digest": "0" * 16})
    for broken in ({**row, "seed": "x"}, {"archetype": row["archetype"]}, {**row, "archetype": "spaceport"}):
        with pytest.raises(WorldDataError, match="not a domains world row"):
            fam.load_world(broken)
