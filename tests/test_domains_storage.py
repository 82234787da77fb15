"""A domains world is stored as its generator's inputs and regenerated on load, exactly."""

from __future__ import annotations

import orjson
import pytest

from toolgym.errors import WorldDataError
from toolgym.synth import get_family
from toolgym.synth.domains.family import Domains


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


def test_tables_are_made_on_first_read_and_do_not_depend_on_the_order_they_are_made_in():
    fam = get_family("domains")
    a, b = fam.make_world(5, 5), fam.make_world(5, 5)
    entities = list(a.entities)
    assert dict.__len__(a.rows) == 0  # nothing generated before a read
    first = {e: a.rows[e] for e in entities}
    second = {e: b.rows[e] for e in reversed(entities)}
    assert first == second and a.links == b.links
    assert all(len(first[e]) == a.counts[e] for e in entities)
    ref_keys = [(x.to, x.name) for e in entities for x in a.attrs(e) if x.kind == "ref"]
    for e in entities:  # refs point at rows that exist once their table is made
        for to, name in ((t, n) for t, n in ref_keys if any(x.name == n for x in a.attrs(e))):
            assert all(r[name] is None or r[name] in a.rows[to] for r in first[e].values())


def test_synth_takes_the_family_s_candidates_per_world_unless_told(tmp_path):
    from typer.testing import CliRunner

    from toolgym.cli import app
    from toolgym.data.dataset import Dataset

    assert Domains.tasks_per_world != 3
    from toolgym.cli.synth import default_tasks_per_world

    assert default_tasks_per_world("domains", 1000, "1") == Domains.tasks_per_world  # a small --count caps it
    for extra, want in (([], default_tasks_per_world("domains", 3, "1")), (["--tasks-per-world", "3"], 3)):
        out = tmp_path / f"d{want}.duckdb"
        args = ["synth", "--family", "domains", "--count", "3", "--difficulty", "1", "--workers", "1"]
        args += ["--out", str(out)]
        result = CliRunner().invoke(app, [*args, *extra])
        assert result.exit_code == 0, result.output
        with Dataset(out, read_only=True) as ds:
            assert ds.manifest("domains")["config"]["tasks_per_world"] == want


def test_random_pass_is_the_rate_random_answers_really_pass_at():
    """Monte Carlo over the gate's own random answers, judged by the verifier on a fresh state."""
    import random

    from toolgym.synth.candidate import build_task
    from toolgym.synth.domains.world import DomainState
    from toolgym.verifiers.verdict import verify

    fam = get_family("domains")
    checked = set()
    for seed in range(40):
        world = fam.make_world(seed, 1 + seed % 3)
        draft = fam.make_task(world, 1 + seed % 3, random.Random(seed))
        if draft is None:
            continue
        task = build_task(fam, "w", "t", 1 + seed % 3, "train", draft)
        exact = fam.random_pass(world, task)
        if exact is None or exact == 0.0:
            continue
        rng, n = random.Random(seed), 3000
        hits = sum(
            verify(task.verifier_spec, fam.random_answer(world, task, rng), DomainState(world)).passed for _ in range(n)
        )
        assert abs(hits / n - exact) <= 4 * (exact * (1 - exact) / n) ** 0.5 + 1e-3, (task.meta, exact, hits / n)
        checked.add(next(iter(task.meta["gate"])))
    assert {"values_of", "ids_of"} <= checked


def test_the_readme_s_domains_gymnasium_snippet_runs_and_scores_one():
    """The README's snippet, run verbatim: on-the-fly synthesis is deterministic, so its ids and answer hold."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("```python\nimport gymnasium as gym\n", 1)[1].split("```", 1)[0]
    tail = block.split("# a synthesized relational world", 1)[1].split("\n", 1)[1]  # the lines after that comment
    snippet = "import gymnasium as gym\nimport toolgym\n" + tail
    scope: dict = {}
    exec(compile(snippet, "<README snippet>", "exec"), scope)  # noqa: S102 - the README's own code
    assert scope["reward"] == 1.0
