"""``toolgym families``: the catalog of every family and archetype (:mod:`toolgym.synth.catalog`).

The listing reads the shipped snapshot (no generation at all: checked by making generation
raise), the snapshot matches what generation gives today (cheap rows in the default tier, sql
rows behind ``slow``), a family the snapshot does not describe is generated live, and bad
arguments are one ``error:`` line.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from toolgym.cli import app
from toolgym.synth import FAMILIES, get_family
from toolgym.synth import catalog as cat

runner = CliRunner()


def snapshot_rows(family: str, archetype: str | None = None) -> dict:
    (row,) = [e for e in cat.read_snapshot()[family]["entries"] if e["archetype"] == archetype]
    return row


SHIPPED = ["trip", "code", "domains", "search", "sql"]


@pytest.fixture
def no_generation(monkeypatch):
    """Record the families whose examples get generated; the shipped ones must be read from the snapshot."""
    made: list[str] = []
    real = cat.example
    monkeypatch.setattr(
        cat, "example", lambda family, archetype=None: made.append(family.id) or real(family, archetype)
    )
    yield
    assert not set(made) & set(SHIPPED), "the listing generated a shipped family's example instead of reading it"


def test_the_json_listing_has_every_family_and_archetype_from_the_snapshot(no_generation):
    result = runner.invoke(app, ["families", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["family"] for r in rows if r["archetype"] is None] == list(FAMILIES)
    for fid in FAMILIES:
        family = get_family(fid)
        mine = [r for r in rows if r["family"] == fid]
        assert sorted(r["archetype"] for r in mine[1:]) == sorted(family.archetypes())
        for r in mine:
            assert r["env_id"] == family.env_id and r["version"] == family.version and r["difficulty"] == [1, 5]
            assert r["categories"][: len(family.categories)] == list(family.categories)
            assert family.categories or fid not in SHIPPED
            if r["note"] is None:  # an example, or a note saying why there is none (never neither)
                assert r["example_prompt"].strip() and r["tool_count"] >= 2  # a tool and submit at least
            else:
                assert r["example_prompt"] is None and r["note"].startswith("no example: ")
        assert mine[0]["note"] is None or fid not in SHIPPED  # every shipped family has an example
    assert all(r["note"] is None for r in rows if r["family"] == "domains")  # and so does every domains archetype
    clinic = next(r for r in rows if r["archetype"] == "clinic" and r["family"] == "domains")
    assert clinic["categories"][-1] == "community clinic"


def test_the_table_lists_families_and_archetypes(no_generation):
    result = runner.invoke(app, ["families"])
    assert result.exit_code == 0, result.output
    for text in ("toolgym/TripPlanning-v1", "toolgym/Domains-v0", "toolgym/SQLAnalyst-v0", "clinic", "1-5"):
        assert text in result.output


CHEAP = [("trip", None), ("code", None), ("search", None), ("domains", None), ("domains", "clinic")]


@pytest.mark.parametrize(("family", "archetype"), CHEAP)
def test_the_snapshot_is_what_generation_gives_today(family, archetype):
    assert cat.entry(get_family(family), archetype).model_dump(mode="json") == snapshot_rows(family, archetype)


@pytest.mark.slow
@pytest.mark.parametrize("archetype", [None, "clinic"])
def test_the_sql_snapshot_is_what_generation_gives_today(archetype):
    assert cat.entry(get_family("sql"), archetype).model_dump(mode="json") == snapshot_rows("sql", archetype)


def test_a_family_the_snapshot_does_not_describe_is_generated_live(tmp_path, monkeypatch):
    data = cat.read_snapshot()
    data["trip"]["key"]["version"] = -1  # as if trip had changed since the snapshot
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(data))
    made = []
    real = cat.example
    monkeypatch.setattr(
        cat, "example", lambda family, archetype=None: made.append(family.id) or real(family, archetype)
    )
    rows = cat.catalog(snapshot=path)
    assert [f for f in made if f in SHIPPED] == ["trip"]  # (families the test session registered are live too)
    assert [r.model_dump(mode="json") for r in rows if r.family == "trip"] == data["trip"]["entries"]


def test_a_family_without_an_example_still_gets_its_row(monkeypatch):
    def broken(family, archetype=None):
        raise RuntimeError("make_task exploded")

    monkeypatch.setattr(cat, "example", broken)
    row = cat.entry(get_family("trip"))
    assert row.example_prompt is None and row.note == "no example: RuntimeError: make_task exploded"


@pytest.mark.parametrize("args", [["--jsn"], ["trip"], ["--json", "--live=maybe"]])
def test_bad_arguments_are_one_error_line(args):
    result = runner.invoke(app, ["families", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
