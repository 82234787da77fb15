"""Domain worlds: value kinds, sampling, determinism, the episode overlay, the DuckDB export."""

from __future__ import annotations

import datetime as dt
import random

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.synth.domains import kinds
from toolgym.synth.domains.ontology import KINDS, Attribute, archetypes
from toolgym.synth.domains.world import MIN_ROWS, DomainState, DomainWorld, generate, row_count, to_duckdb

ARCHETYPES = sorted(archetypes())
NOW = dt.datetime(2026, 5, 4, 10, 15)


def _attr(kind: str) -> Attribute:
    extra = {
        "ref": {"to": "x"},
        "enum": {"values": ["a", "b"]},
        "text": {"values": ["one note", "another"]},
        "phrase": {"parts": [["Golden", "Silver"], ["River", "Hill"]]},
        "code": {"pattern": "AA-99"},
    }.get(kind, {})
    return Attribute(name="x", kind=kind, **extra)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_generates_json_scalars_deterministically(kind: str) -> None:
    def draw(seed: int) -> list[object]:
        rng = random.Random(seed)
        gen = kinds.generator(_attr(kind), NOW, rng)
        return [gen(rng, {"x": "Maren Okafor"}) for _ in range(30)]

    values = draw(1)
    assert values == draw(1)
    if kind == "ref":
        assert values == [None] * 30  # refs are the world's job
        return
    assert all(isinstance(v, str | int | float | bool) for v in values)
    if kind in ("date", "datetime", "time"):
        fmt = {"date": "%Y-%m-%d", "datetime": "%Y-%m-%dT%H:%M", "time": "%H:%M"}[kind]
        for v in values:
            dt.datetime.strptime(str(v), fmt)


def test_time_bounds_resolve_against_the_world_now() -> None:
    assert kinds.time_value("now+24h", NOW, date_only=False) == "2026-05-05T10:15"
    assert kinds.time_value("today-65y", NOW, date_only=True) == "1961-05-04"
    assert kinds.time_value("today+14d", NOW, date_only=True) == "2026-05-18"


def test_person_names_have_twins_and_shared_surnames() -> None:
    rng = random.Random(3)
    gen = kinds.generator(Attribute(name="name", kind="person_name"), NOW, rng)
    names = [gen(rng, {}) for _ in range(200)]
    surnames = [n.split()[-1] for n in names]
    assert len(set(surnames)) < 30  # a small shared pool
    givens = {n.split()[0] for n in names}
    twins = [
        g
        for g in givens
        if any(h != g and len(h) == len(g) and sum(a != b for a, b in zip(g, h, strict=True)) == 1 for h in givens)
    ]
    assert twins


@pytest.mark.parametrize("arch_id", ARCHETYPES)
@pytest.mark.parametrize("difficulty", [1, 3, 5])
def test_worlds_are_deterministic_json_with_unique_labels(arch_id: str, difficulty: int) -> None:
    arch = archetypes()[arch_id]
    data = generate(arch, 11, difficulty)
    assert data == generate(arch, 11, difficulty)
    assert orjson.loads(orjson.dumps(data)) == data
    world = DomainWorld(orjson.loads(orjson.dumps(data)))
    assert world.to_json()["archetype"] == arch_id
    for e in world.schema["entities"]:
        spec = arch.entity(e["id"])
        rows = list(world.rows[e["id"]].values())
        assert len(rows) == data["counts"][e["id"]]
        assert [r["id"] for r in rows] == [f"{spec.key_prefix}-{i + 1:05d}" for i in range(len(rows))]
        for a in world.attrs(e["id"]):
            if a.unique or a.name == spec.label:
                values = [r[a.name] for r in rows if r[a.name] is not None]
                assert len(values) == len(set(values)), (e["id"], a.name)
            if a.kind == "ref":
                assert all(r[a.name] is None or r[a.name] in world.rows[a.to] for r in rows)
        if spec.label:
            assert all(r[spec.label] is not None for r in rows)
    assert len(set(map(str, (generate(arch, s, difficulty)["schema"] for s in range(12))))) > 1


def test_row_counts_grow_with_difficulty() -> None:
    ent = archetypes()["clinic"].entity("appointment")
    counts = [row_count(ent, d) for d in range(1, 6)]
    assert counts[0] == max(ent.count[0], MIN_ROWS) and counts[-1] == ent.count[1]
    assert counts == sorted(counts)
    small = archetypes()["clinic"].entity("doctor")  # a table that never reaches MIN_ROWS keeps its count
    assert [row_count(small, d) for d in (1, 5)] == list(small.count)


def test_episode_states_are_isolated_and_track_only_changes() -> None:
    world = DomainWorld(generate(archetypes()["clinic"], 5, 2))
    a, b = DomainState(world), DomainState(world)
    row = dict(world.rows["patient"]["PT-00001"], balance=1.5)
    a.put("patient", row)
    assert a.get("patient", "PT-00001")["balance"] == 1.5
    assert b.get("patient", "PT-00001") is world.rows["patient"]["PT-00001"]
    assert b.to_json() == {"changes": {}}
    assert a.to_json() == {"changes": {"patient": {"PT-00001": row}}}
    a.put("patient", dict(world.rows["patient"]["PT-00001"]))  # changed back: no change
    assert a.to_json() == {"changes": {}}
    assert a.peek_key("patient") == a.new_key("patient") == f"PT-{len(world.rows['patient']) + 1:05d}"


def test_duckdb_export_has_the_world_schema(tmp_path) -> None:
    import duckdb

    world = DomainWorld(generate(archetypes()["clinic"], 9, 2))
    path = tmp_path / "w.duckdb"
    to_duckdb(world, path)
    con = duckdb.connect(str(path), read_only=True)
    for e_id, ent in world.entities.items():
        cols = [r[0] for r in con.execute(f'DESCRIBE "{ent["plural"]}"').fetchall()]
        assert cols == ["id", *ent["attributes"].values()]
        (n,) = con.execute(f'SELECT count(*) FROM "{ent["plural"]}"').fetchone()
        assert n == len(world.rows[e_id])
    con.close()
    with pytest.raises(Exception, match="exists"):
        to_duckdb(world, path)


def test_duckdb_export_inserts_in_chunks_keeping_every_row_and_null() -> None:
    """Rows go in as multi-row VALUES chunks (executemany took ~25 ms a row): none lost at a boundary."""
    import duckdb

    from toolgym.synth.domains.world import _insert

    con = duckdb.connect()
    con.execute("CREATE TABLE t (id VARCHAR, d DATE, n DOUBLE, f BOOLEAN)")
    rows = [[f"X-{i}", None if i % 3 else f"2026-01-{i + 1:02d}", i / 2, i % 2 == 0] for i in range(7)]
    _insert(con, "t", rows, chunk=3)
    _insert(con, "t", [], chunk=3)
    got = con.execute("SELECT id, strftime(d, '%Y-%m-%d'), n, f FROM t ORDER BY n").fetchall()
    assert [list(r) for r in got] == rows


_WORLD = DomainWorld(generate(archetypes()["clinic"], 8, 3))


@given(st.data())
@settings(max_examples=150, deadline=None)
def test_indexed_where_equals_a_literal_filter(data: st.DataObject) -> None:
    """DomainState.where (hash and sorted indices, overlay) against a plain scan of the rows."""
    world = _WORLD
    entity = data.draw(st.sampled_from(sorted(world.entities)))
    rows = list(world.rows[entity].values())
    state = DomainState(world)
    for row in data.draw(st.lists(st.sampled_from(rows), max_size=3)):  # changed rows in the overlay
        attr = data.draw(st.sampled_from([a.name for a in world.attrs(entity)]))
        state.put(entity, {**row, attr: data.draw(st.sampled_from(rows))[attr]})
    attrs = [a.name for a in world.attrs(entity)]
    eqs = [(a, data.draw(st.sampled_from(rows))[a]) for a in data.draw(st.lists(st.sampled_from(attrs), max_size=2))]
    eqs = [(a, v) for a, v in eqs if v is not None]
    ordered = [a.name for a in world.attrs(entity) if a.kind in kinds.NUMERIC or a.kind in kinds.TEMPORAL]
    ranges = [
        (a, data.draw(st.sampled_from(["ge", "le"])), data.draw(st.sampled_from(rows))[a])
        for a in (data.draw(st.lists(st.sampled_from(ordered), max_size=2)) if ordered else [])
    ]
    ranges = [(a, op, v) for a, op, v in ranges if v is not None]
    got = state.where(entity, eqs, [], ranges)

    def keep(r: dict) -> bool:
        return all(r.get(a) == v for a, v in eqs) and all(
            r.get(a) is not None and (r[a] >= v if op == "ge" else r[a] <= v) for a, op, v in ranges
        )

    assert [r["id"] for r in got] == [r["id"] for r in state.rows(entity) if keep(r)]


@pytest.mark.parametrize("difficulty", [1, 5])
def test_a_date_after_another_never_precedes_it(difficulty: int) -> None:
    """An end (``after: start``) is never before its start in any row of any archetype (nulls aside)."""
    checked = 0
    for arch_id in ARCHETYPES:
        world = DomainWorld(generate(archetypes()[arch_id], 7, difficulty))
        for e_id in world.entities:
            for a in world.attrs(e_id):
                if a.after is None or a.after not in world.entities[e_id]["attributes"]:
                    continue
                for row in world.rows[e_id].values():
                    end, start = row.get(a.name), row.get(a.after)
                    if end is not None and start is not None:
                        n = min(len(end), len(start))
                        assert end[:n] >= start[:n], (arch_id, e_id, row["id"], a.name, end, start)
                        checked += 1
    assert checked > 1000
