"""Domain worlds: an archetype's sampled schema (``schema.py``) filled with seeded rows.

:func:`generate` is a pure function of (archetype, seed, difficulty). A world's definition::

    {"archetype": "clinic", "seed": 7, "difficulty": 2, "now": "2026-05-04T10:15", "org": "…",
     "page_size": 15, "schema": {…}, "counts": {entity: rows}}

Its tables and links are generated on first use, each from its own seeded stream (so a world
costs the tables its episodes read, and a table does not depend on which others were made). A
dataset stores only the inputs and a digest (:meth:`DomainWorld.to_json`) and regenerates the
world on load (:func:`load`).

Rows are dicts keyed by the *canonical* attribute names, plus ``"id"``: a deterministic key
``PT-00017`` (the entity's ``key_prefix``, then its 1-based number), so replays give the same
ids; a ref holds the referenced row's key; an optional attribute may be null.

**State and copy-on-reset.** The world's tables never change once made (they are shared by
every episode). An episode's state is a :class:`DomainState`: the world plus
an overlay of the rows it changed or created (writes copy a row, change the copy and put it in
the overlay). Opening one costs a few hundred nanoseconds at any size, against a JSON reload of
the whole world; reads look in the overlay first. ``DomainState.to_json()`` is the overlay with
rows equal to the world's dropped: together with the world (fixed for a task) it is the whole
state, so the state check compares whole states at the cost of the changes only.

Sizes: an entity's row count interpolates geometrically between its ``count`` at difficulty 1
and 5; the list tools' page size falls with difficulty (:data:`PAGE_SIZE`).
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import hashlib
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from toolgym.envs import naming
from toolgym.errors import ConfigError, WorldDataError
from toolgym.synth.domains import kinds
from toolgym.synth.domains.ontology import ARCHETYPE_DIR, Archetype, Attribute, Entity, load_archetype
from toolgym.synth.domains.schema import sample_schema

PAGE_SIZE = {1: 20, 2: 15, 3: 10, 4: 10, 5: 8}
_EXTRA: dict[str, Archetype] = {}  # archetypes registered at run time (test fixtures)


def register_archetype(arch: Archetype) -> None:
    """Make an archetype that is not a shipped file loadable by id (tests, plugins)."""
    _EXTRA[arch.id] = arch


def archetype(arch_id: str) -> Archetype:
    """The archetype ``arch_id`` (shipped or registered).

    Raises:
        ConfigError: No such archetype.
    """
    arch = _EXTRA.get(arch_id)
    return arch if arch is not None else _shipped(arch_id)


@functools.cache
def _shipped(arch_id: str) -> Archetype:
    """One shipped archetype, loaded alone (a worker needs a few of the files, not all)."""
    path = ARCHETYPE_DIR / f"{arch_id}.yaml"
    if not re.fullmatch(r"[a-z][a-z0-9_]*", arch_id) or not path.is_file():
        raise ConfigError(f"unknown domain archetype {arch_id!r}; known: {', '.join(archetype_ids())}")
    return load_archetype(path)


@functools.cache
def archetype_ids() -> tuple[str, ...]:
    """The ids of the shipped archetypes (file stems, sorted), without loading them."""
    return tuple(sorted(p.stem for p in ARCHETYPE_DIR.glob("*.yaml")))


#: The fewest rows a table that may grow past it has at difficulty 1: a lookup's answer drawn from a
#: random row then matches with probability <= 1/100, not 1/20 (``Domains.random_pass``). Size
#: does not reach the prompt: rows are read through the tools.
MIN_ROWS = 100
#: The table generator's version, in every world's digest: tables are regenerated on load, so a
#: dataset made by another generator is refused by name (:func:`load`) rather than served other
#: rows under its tasks. Raise it with any change to the values a seed gives.
GENERATOR = 2  # 2: dates with `after` never precede their start


def row_count(ent: Entity, difficulty: int) -> int:
    """Rows of an entity at a difficulty: geometric between ``count[0]`` (d1) and ``count[1]`` (d5).

    ``count[0]`` is raised to :data:`MIN_ROWS` in tables whose ``count[1]`` reaches it.
    """
    lo, hi = ent.count
    if hi >= MIN_ROWS:
        lo = max(lo, MIN_ROWS)
    return max(1, round(lo * (hi / lo) ** ((min(max(difficulty, 1), 5) - 1) / 4)))


def _fill_rows(
    ent: Entity, attrs: list[Attribute], n: int, keys: dict[str, list[str]], now: dt.datetime, rng: random.Random
) -> list[dict[str, Any]]:
    """``n`` rows of one entity (refs point into ``keys``); labels and unique attributes unique."""
    gens = {a.name: kinds.generator(a, now, rng) for a in attrs}
    unique = {a.name for a in attrs if a.unique or a.name == ent.label}
    seen: dict[str, set[Any]] = {a: set() for a in unique}
    perms: dict[str, list[Any]] = {
        a.name: rng.sample(list(a.values or []), len(a.values or []))
        for a in attrs
        if a.name in unique and a.kind == "enum"
    }
    if perms:
        n = min(n, *(len(p) for p in perms.values()))
    for a in attrs:  # unique codes and phrases: drawn without replacement when their space allows
        if a.name in unique and a.name not in perms:
            drawn = kinds.unique_draw(a, n, rng)
            if drawn is not None:
                perms[a.name] = drawn
    # one plan entry per attribute, so the row loop only dispatches: (name, how, source, optional share)
    plan: list[tuple[str, int, Any, float]] = []
    for a in attrs:
        optional = float(a.optional or 0) if a.name != ent.label else 0.0
        if a.kind == "ref":
            plan.append((a.name, _REF, keys[a.to], 0.0))  # type: ignore[index]
        elif a.name in perms:
            plan.append((a.name, _PERM, perms[a.name], optional))
        else:
            plan.append((a.name, _UNIQUE if a.name in unique else _DRAW, gens[a.name], optional))
    random_ = rng.random
    rows = []
    for i in range(n):
        row: dict[str, Any] = {"id": f"{ent.key_prefix}-{i + 1:05d}"}
        for name, how, source, optional in plan:
            if how == _REF:
                row[name] = source[int(random_() * len(source))]
            elif optional and random_() < optional:
                row[name] = None
            elif how == _PERM:
                row[name] = source[i]
            elif how == _DRAW:
                row[name] = source(rng, row)
            else:
                row[name] = _unique_value(source, rng, row, seen[name], i)
        rows.append(row)
    return rows


_REF, _PERM, _DRAW, _UNIQUE = range(4)


def _unique_value(gen: Any, rng: random.Random, row: dict[str, Any], seen: set[Any], i: int) -> Any:
    """A generated value not in ``seen`` (200 draws; then the last one numbered), added to it."""
    value = gen(rng, row)
    for _ in range(200):
        if value not in seen:
            break
        value = gen(rng, row)
    else:
        value = f"{value} {i + 1}"  # a tiny value space: numbered, still unique
    seen.add(value)
    return value


def _stream(seed: int, *parts: str) -> random.Random:
    """An independent seeded stream for one part of a world (a table, a link)."""
    digest = hashlib.sha256("\x1f".join((str(seed), *parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def table_size(ent: Entity, difficulty: int) -> int:
    """Rows of an entity in a world: :func:`row_count`, capped by the values of a unique enum."""
    n = row_count(ent, difficulty)
    for a in ent.attributes:
        if a.kind == "enum" and (a.unique or a.name == ent.label):
            n = min(n, len(a.values or []))
    return n


def generate(arch: Archetype, seed: int, difficulty: int) -> dict[str, Any]:
    """A world's definition (see the module docstring) from an archetype, a seed and a difficulty 1–5.

    The tables are not in it: each is generated when first read (:class:`DomainWorld`), from
    its own seeded stream, so a world costs only the tables its episodes touch.
    """
    rng = random.Random(seed)
    schema = sample_schema(arch, rng)
    day = dt.date(2026, 1, 5) + dt.timedelta(days=rng.randrange(330))
    now = dt.datetime.combine(day, dt.time(rng.randint(8, 16), rng.choice((0, 15, 30, 45))))
    org = f"{rng.choice(arch.org.words)} {rng.choice(arch.org.suffixes)}"
    counts = {e["id"]: table_size(arch.entity(e["id"]), difficulty) for e in schema["entities"]}
    return {
        "archetype": arch.id,
        "seed": seed,
        "difficulty": difficulty,
        "now": now.strftime("%Y-%m-%dT%H:%M"),
        "org": org,
        "page_size": PAGE_SIZE.get(difficulty, 10),
        "schema": schema,
        "counts": counts,
    }


class _Tables(dict):  # type: ignore[type-arg]
    """``{entity: {key: row}}``, each table generated on first access (see :func:`generate`)."""

    def __init__(self, world: DomainWorld):
        super().__init__()
        self.world = world

    def __missing__(self, e_id: str) -> dict[str, dict[str, Any]]:
        w = self.world
        if e_id not in w.entities:
            raise KeyError(e_id)
        ent, rng = w.arch.entity(e_id), _stream(w.data["seed"], "table", e_id)
        rows = _fill_rows(ent, w.attrs(e_id), w.counts[e_id], w.keys, w.now_dt, rng)
        keys = [r["id"] for r in rows]
        for a in w.attrs(e_id):  # a self-ref points to an earlier row, or none: no cycles
            if a.kind == "ref" and a.to == e_id:
                for i, row in enumerate(rows):
                    row[a.name] = keys[rng.randrange(i)] if i and rng.random() < 0.7 else None
        table = self[e_id] = {r["id"]: r for r in rows}
        return table


class _Keys(dict):  # type: ignore[type-arg]
    """``{entity: [keys in order]}`` from the counts alone (a ref can point into a table not yet made)."""

    def __init__(self, world: DomainWorld):
        super().__init__()
        self.world = world

    def __missing__(self, e_id: str) -> list[str]:
        prefix = self.world.arch.entity(e_id).key_prefix
        keys = self[e_id] = [f"{prefix}-{i + 1:05d}" for i in range(self.world.counts[e_id])]
        return keys


def load(data: dict[str, Any]) -> DomainWorld:
    """The world a dataset row describes (:meth:`DomainWorld.to_json`), regenerated.

    Raises:
        WorldDataError: the row is not a domains world, or the regenerated world's digest is
            not the stored one (the dataset was synthesized by another generator version).
    """
    try:
        arch_id, seed, difficulty, digest = data["archetype"], data["seed"], data["difficulty"], data["digest"]
        world = DomainWorld(generate(archetype(str(arch_id)), int(seed), int(difficulty)))
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise WorldDataError(f"not a domains world row ({type(exc).__name__}: {exc})") from None
    if world.digest != digest:
        raise WorldDataError(
            f"domains world {arch_id}/{seed}/d{difficulty} regenerates with digest {world.digest}, stored {digest}: "
            "the dataset was synthesized by another version of the generator (synthesize it again)"
        )
    return world


class DomainWorld:
    """A world's data with its lookups (indices are built on first use)."""

    def __init__(self, data: dict[str, Any]):
        self.data = data
        self.arch = archetype(data["archetype"])
        self.schema: dict[str, Any] = data["schema"]
        self.now: str = data["now"]
        self.today: str = self.now[:10]
        self.now_dt = dt.datetime.fromisoformat(self.now)
        self.page_size: int = data["page_size"]
        self.org: str = data["org"]
        self.entities: dict[str, dict[str, Any]] = {e["id"]: e for e in self.schema["entities"]}
        self.counts: dict[str, int] = data["counts"]
        self.keys: dict[str, list[str]] = _Keys(self)
        self.rows: dict[str, dict[str, dict[str, Any]]] = _Tables(self)
        self.action_tools: dict[str, str] = {a["id"]: a["tool"] for a in self.schema["actions"]}
        self.policy_modes: dict[str, str] = {p["id"]: p["mode"] for p in self.schema["policies"]}
        self._index: dict[tuple[str, str], dict[Any, list[str]]] = {}
        self._pools: dict[tuple[str, str], naming.NamePool] = {}
        self._sorted: dict[tuple[str, str], tuple[list[Any], list[str]]] = {}

    def to_json(self) -> dict[str, Any]:
        """What a dataset stores of the world: the generator's inputs and a digest, not the tables.

        A world is a pure function of (archetype, seed, difficulty) at this family version, so
        its tables (up to ~1.5 MB of JSON at difficulty 5; 3.4 GB for 100k tasks) are regenerated
        on load (:func:`load`) rather than stored. The digest covers what a task's text depends
        on (schema, clock, organisation, page size): a generator that drifted without a version
        bump is named on load instead of serving other worlds under old tasks.
        """
        return {
            "archetype": self.data["archetype"],
            "seed": self.data["seed"],
            "difficulty": self.data["difficulty"],
            "digest": self.digest,
        }

    @functools.cached_property
    def digest(self) -> str:
        """16 hex digits of the schema, clock, organisation, page size and :data:`GENERATOR`."""
        d = self.data
        head = [d["schema"], d["now"], d["org"], d["page_size"], GENERATOR]
        return hashlib.sha256(orjson.dumps(head, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]

    def attrs(self, entity: str) -> list[Attribute]:
        """The sampled attributes of an entity, in archetype order (canonical specs)."""
        ent = self.arch.entity(entity)
        chosen = self.entities[entity]["attributes"]
        return [a for a in ent.attributes if a.name in chosen]

    def index(self, entity: str, attr: str) -> dict[Any, list[str]]:
        """Keys of the world's rows of ``entity`` by their value of ``attr`` (built once)."""
        idx = self._index.get((entity, attr))
        if idx is None:
            idx = {}
            for key, row in self.rows[entity].items():
                idx.setdefault(row.get(attr), []).append(key)
            self._index[(entity, attr)] = idx
        return idx

    def name_pool(self, entity: str, attr: str) -> naming.NamePool:
        """The distinct string values of ``attr`` in ``entity``, ready for closest-name hints (built once)."""
        pool = self._pools.get((entity, attr))
        if pool is None:
            pool = self._pools[(entity, attr)] = naming.NamePool(
                v for v in self.index(entity, attr) if isinstance(v, str)
            )
        return pool

    def _range_span(self, entity: str, attr: str, op: str, v: Any) -> tuple[list[str], int, int]:
        """The sorted index of ``attr`` (keys by value) and the slice ``[lo, hi)`` a bound keeps."""
        idx = self._sorted.get((entity, attr))
        if idx is None:
            pairs = sorted(
                (r[attr], k)
                for k, r in self.rows[entity].items()
                if r.get(attr) is not None and not isinstance(r[attr], bool)
            )
            idx = self._sorted[(entity, attr)] = ([p[0] for p in pairs], [p[1] for p in pairs])
        values, keys = idx
        if values and isinstance(v, str) != isinstance(values[0], str):
            return keys, 0, 0  # a number against strings (or the reverse) orders nothing
        if op == "ge":
            return keys, bisect.bisect_left(values, v), len(keys)
        return keys, 0, bisect.bisect_right(values, v)

    def range_size(self, entity: str, attr: str, op: str, v: Any) -> int:
        """How many of the world's rows a bound keeps (two bisections, nothing materialized)."""
        _, lo, hi = self._range_span(entity, attr, op, v)
        return hi - lo

    def range_keys(self, entity: str, attr: str, op: str, v: Any) -> list[str]:
        """Keys of the world's rows with ``attr`` >= (``ge``) or <= (``le``) ``v``, in key order."""
        keys, lo, hi = self._range_span(entity, attr, op, v)
        return sorted(keys[lo:hi])

    @functools.cached_property
    def links(self) -> dict[str, list[list[str]]]:
        """``{link: [[key of one end, key of the other], …]}`` in sorted order (made on first use)."""
        out = {}
        for link in self.schema["links"]:
            spec = next(x for x in self.arch.links if x.id == link["id"])
            end_a, end_b = spec.between
            rng, pairs = _stream(self.data["seed"], "link", link["id"]), set()
            keys_b = self.keys[end_b]
            for ka in self.keys[end_a]:
                for kb in rng.sample(keys_b, min(rng.randint(*spec.per), len(keys_b))):
                    pairs.add((ka, kb))
            out[link["id"]] = [list(p) for p in sorted(pairs)]
        return out

    @functools.cached_property
    def linked(self) -> dict[tuple[str, str], dict[str, list[str]]]:
        """``{(link, end entity): {key: [keys of the other end]}}`` for both directions."""
        out: dict[tuple[str, str], dict[str, list[str]]] = {}
        for link in self.schema["links"]:
            a, b = link["between"]
            fwd, back = out.setdefault((link["id"], a), {}), out.setdefault((link["id"], b), {})
            for ka, kb in self.links[link["id"]]:
                fwd.setdefault(ka, []).append(kb)
                back.setdefault(kb, []).append(ka)
        return out


class DomainState:
    """One episode's state: the shared world plus an overlay of changed and created rows."""

    __slots__ = ("created", "overlay", "world")

    def __init__(self, world: DomainWorld):
        self.world = world
        self.overlay: dict[str, dict[str, dict[str, Any]]] = {}
        self.created: dict[str, int] = {}

    def get(self, entity: str, key: str) -> dict[str, Any] | None:
        """The row of ``entity`` with key ``key`` as the episode sees it, or None."""
        over = self.overlay.get(entity)
        if over is not None and key in over:
            return over[key]
        return self.world.rows[entity].get(key)

    def rows(self, entity: str) -> list[dict[str, Any]]:
        """Every row of ``entity`` as the episode sees it, in key order (created rows last).

        A new list (a list, not a generator: an unchanged table copies at C speed).
        """
        base = self.world.rows[entity]
        over = self.overlay.get(entity)
        if not over:
            return list(base.values())
        out = [over.get(key, row) for key, row in base.items()]
        return out + [row for key, row in over.items() if key not in base]

    def where(
        self,
        entity: str,
        eqs: list[tuple[str, Any]],
        preds: list[Callable[[dict[str, Any]], bool]],
        ranges: Sequence[tuple[str, str, Any]] = (),
    ) -> list[dict[str, Any]]:
        """Rows of ``entity`` (as the episode sees them) meeting every condition, in key order.

        Args:
            entity: The entity.
            eqs: ``(attribute, value)`` equalities, answered from the world's hash indices.
            preds: Other conditions, as ``row -> bool``.
            ranges: ``(attribute, "ge" | "le", value)`` bounds of plain numbers or ISO strings,
                answered from sorted indices (bisect).

        The most selective index (the smallest equality bucket or bound slice, sized without
        materializing) gives the candidates; the other conditions are checked on them.

        A filtered read costs about the size of its answer, not of the table; the episode's
        changed rows are checked on their own.
        """
        world = self.world
        over = self.overlay.get(entity)
        base = world.rows[entity]
        # the most selective index answers first: an equality's bucket, or a bound's slice
        buckets = sorted(((world.index(entity, a).get(v, ()), a, v) for a, v in eqs), key=lambda b: len(b[0]))
        spans = sorted((world.range_size(entity, a, op, v), i) for i, (a, op, v) in enumerate(ranges))
        checks = list(preds)
        if ranges and (not buckets or spans[0][0] < len(buckets[0][0])):
            first = spans[0][1]
            keys: Any = world.range_keys(entity, *ranges[first])
            rest = [(a, v) for _, a, v in buckets]
            checks += [_range_check(a, op, v) for i, (a, op, v) in enumerate(ranges) if i != first]
        elif buckets:
            keys = buckets[0][0]
            rest = [(a, v) for _, a, v in buckets[1:]]
            checks += [_range_check(a, op, v) for a, op, v in ranges]
        elif not checks:
            return self.rows(entity)
        else:
            return [r for r in self.rows(entity) if all(p(r) for p in checks)]
        if not over:  # one pass per condition, each a comprehension (no per-row generators)
            out = [base[k] for k in keys]
            for a, v in rest:
                out = [r for r in out if r.get(a) == v]
            for p in checks:
                out = [r for r in out if p(r)]
            return out
        out = []
        for k in keys:
            if over and k in over:
                continue
            r = base[k]
            if all(r.get(a) == v for a, v in rest) and all(p(r) for p in checks):
                out.append(r)
        if over:
            every = [*preds, *(_range_check(a, op, v) for a, op, v in ranges)]
            out += [r for r in over.values() if all(r.get(a) == v for a, v in eqs) and all(p(r) for p in every)]
            out.sort(key=lambda r: r["id"])
        return out

    def put(self, entity: str, row: dict[str, Any]) -> None:
        """Store a changed or new row (a new dict: rows of the world are never modified)."""
        self.overlay.setdefault(entity, {})[row["id"]] = row

    def peek_key(self, entity: str) -> str:
        """The key the next row created in ``entity`` will get (nothing is reserved)."""
        n = len(self.world.rows[entity]) + self.created.get(entity, 0) + 1
        return f"{self.world.entities[entity]['key_prefix']}-{n:05d}"

    def new_key(self, entity: str) -> str:
        """The next key of ``entity`` (deterministic: the world's count plus rows created so far)."""
        n = len(self.world.rows[entity]) + self.created.get(entity, 0) + 1
        self.created[entity] = self.created.get(entity, 0) + 1
        return f"{self.world.entities[entity]['key_prefix']}-{n:05d}"

    def to_json(self) -> dict[str, Any]:
        """The changes from the world: ``{entity: {key: row}}``, rows equal to the world's dropped."""
        out: dict[str, dict[str, Any]] = {}
        for entity, over in self.overlay.items():
            base = self.world.rows[entity]
            changed = {k: r for k, r in over.items() if base.get(k) != r}
            if changed:
                out[entity] = changed
        return {"changes": out}


#: DuckDB column type per attribute kind (``to_duckdb``; the sql family's databases use the same).
SQL_TYPES = {
    "flag": "BOOLEAN",
    "int": "BIGINT",
    "percent": "BIGINT",
    "duration": "BIGINT",
    "money": "DOUBLE",
    "rating": "DOUBLE",
    "date": "DATE",
    "datetime": "TIMESTAMP",
    "time": "TIME",
}


def to_duckdb(world: DomainWorld, path: str | Path) -> None:
    """Export the world's tables (and link tables) to a DuckDB file, with the world's schema.

    Tables and columns take the world's chosen names (the names its tools speak): one table per
    entity named by its plural (``id`` the primary key, refs as ``VARCHAR`` keys), one per link
    named by its chosen name with columns ``<entity>_id``. Types follow the kinds (dates
    ``DATE``, datetimes ``TIMESTAMP``, money ``DOUBLE``, flags ``BOOLEAN``, strings ``VARCHAR``).

    Raises:
        ConfigError: The file exists already.
    """
    import duckdb

    path = Path(path)
    if path.exists():
        raise ConfigError(f"{path} exists; to_duckdb writes a new database")
    con = duckdb.connect(str(path))
    try:
        for e_id, ent in world.entities.items():
            attrs = world.attrs(e_id)
            cols = ['"id" VARCHAR PRIMARY KEY'] + [
                f'"{ent["attributes"][a.name]}" {SQL_TYPES.get(a.kind, "VARCHAR")}' for a in attrs
            ]
            con.execute(f'CREATE TABLE "{ent["plural"]}" ({", ".join(cols)})')
            rows = [[r["id"], *(r.get(a.name) for a in attrs)] for r in world.rows[e_id].values()]
            _insert(con, ent["plural"], rows)
        for link in world.schema["links"]:
            a, b = (world.entities[x]["name"] for x in link["between"])
            con.execute(f'CREATE TABLE "{link["name"]}" ("{a}_id" VARCHAR, "{b}_id" VARCHAR)')
            _insert(con, link["name"], world.links[link["id"]])
    finally:
        con.close()


def _insert(con: Any, table: str, rows: Sequence[Sequence[Any]], chunk: int = 500) -> None:
    """Insert ``rows`` into ``table`` with one multi-row ``VALUES`` statement per ``chunk`` rows.

    DuckDB's ``executemany`` runs one statement per row (~25 ms each on a file database, minutes
    for a difficulty-5 world); a bound multi-row ``VALUES`` costs about 1 ms per row-chunk of 500.
    """
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        row = "(" + ", ".join("?" * len(part[0])) + ")"
        con.execute(f'INSERT INTO "{table}" VALUES {", ".join([row] * len(part))}', [v for r in part for v in r])


def _range_check(attr: str, op: str, v: Any) -> Callable[[dict[str, Any]], bool]:
    """``row -> row[attr] >= v`` (``ge``) or ``<= v`` (``le``); null, booleans and mixed types fail."""
    number = not isinstance(v, str)

    def check(r: dict[str, Any]) -> bool:
        x = r.get(attr)
        if x is None or isinstance(x, bool) or isinstance(x, str) == number:
            return False
        return bool(x >= v) if op == "ge" else bool(x <= v)

    return check
