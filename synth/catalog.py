"""The environment catalog (``toolgym families``): every family and archetype, what it serves, an example prompt.

One :class:`CatalogEntry` per family, then one per archetype of families that draw worlds from
archetypes (``domains``, ``sql``): env id, categories, difficulty range, tool count and an example
prompt generated from a seeded small world (difficulty 1: ``make_world(seed, 1)`` then
``make_task(world, 1, Random(seed))``, the first seed from 0 that yields a task).

Decisions:

* **Categories** are the family's own (``Family.categories``, a class attribute next to
  ``summary``); an archetype row adds its domain's title (``"community clinic"``).
* **The tool count** is that of the example task's toolset (a domains world's write tools come
  from its archetype's actions, so the count differs by archetype; see the archetype rows).
* **A shipped snapshot keeps the listing fast.** Building every archetype's example takes
  minutes (41 archetypes; an sql task runs its reference query over a generated database), so the
  shipped families' entries are read from ``catalog.json`` next to this module, written by
  ``python -m toolgym.synth.catalog``. An entry is used only while its family's id, version,
  summary and categories match the snapshot's; any other family (a plugin, a changed family) is
  generated live. ``toolgym families --live`` generates everything. Tests regenerate the cheap
  rows and sampled archetype rows and compare them with the snapshot.
"""

from __future__ import annotations

import inspect
import json
import random
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from toolgym.errors import ReferenceSolutionError
from toolgym.synth import FAMILIES, get_family

#: The shipped snapshot (see the module docstring).
SNAPSHOT = Path(__file__).with_name("catalog.json")
#: Seeds tried for an example task, or for a world of a given archetype.
MAX_SEEDS = 2000


class CatalogEntry(BaseModel):
    """One row of the catalog: a family (``archetype`` None) or one of its archetypes."""

    model_config = ConfigDict(extra="forbid")

    family: str
    archetype: str | None
    env_id: str
    version: int
    summary: str
    categories: list[str]
    difficulty: tuple[int, int]
    tool_count: int | None
    example_seed: int | None
    example_prompt: str | None
    note: str | None = None


def _key(family: Any) -> dict[str, Any]:
    """What a snapshot entry must match to stand for a family: id, version, summary, categories."""
    return {
        "family": family.id,
        "version": family.version,
        "summary": family.summary,
        "categories": list(getattr(family, "categories", ())),
    }


def _world(family: Any, archetype: str | None, seed: int) -> Any:
    """A difficulty-1 world of ``seed`` (of ``archetype``, when given), or None when the seed's is another one."""
    if archetype is None:
        return family.make_world(seed, 1)
    if "arch_id" in inspect.signature(family.make_world).parameters:
        return family.make_world(seed, 1, arch_id=archetype)
    world = family.make_world(seed, 1)
    return world if family.world_archetype(world) == archetype else None


def example(family: Any, archetype: str | None = None) -> tuple[int, Any, Any]:
    """The first seed (from 0) whose difficulty-1 world (of ``archetype``) yields a task: (seed, world, draft).

    Raises:
        ReferenceSolutionError: When no seed up to :data:`MAX_SEEDS` does.
    """
    worlds = 0
    for seed in range(MAX_SEEDS):
        world = _world(family, archetype, seed)
        if world is None:
            continue
        worlds += 1
        draft = family.make_task(world, 1, random.Random(seed))
        if draft is not None:
            return seed, world, draft
    where = family.id + (f" ({archetype})" if archetype else "")
    if worlds == 0:  # e.g. sql redraws a world with nothing to analyse, its archetype with it
        raise ReferenceSolutionError(f"none of {MAX_SEEDS} seeds gives a difficulty-1 {where} world")
    raise ReferenceSolutionError(f"no difficulty-1 {where} task from {worlds} worlds of {MAX_SEEDS} seeds")


def _title(family: Any, world: Any, archetype: str) -> str:
    """An archetype's domain title (its ``Archetype.title``, on the world or its domain world), or its id."""
    arch = getattr(world, "arch", None) or getattr(getattr(world, "domain", None), "arch", None)
    return str(getattr(arch, "title", None) or archetype)


def entry(family: Any, archetype: str | None = None) -> CatalogEntry:
    """One catalog row, generated now (see the module docstring).

    A family whose example cannot be built (a plugin's ``make_task`` raising) still gets its row,
    without the example, and ``note`` says why: one broken family never hides the others.
    """
    categories = list(getattr(family, "categories", ()))
    common = {"family": family.id, "archetype": archetype, "env_id": family.env_id, "version": family.version}
    common.update(summary=family.summary, categories=categories, difficulty=(1, 5))
    try:
        seed, world, draft = example(family, archetype)
    except Exception as exc:  # a family's code may raise anything; the listing goes on
        note = f"no example: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        return CatalogEntry(**common, tool_count=None, example_seed=None, example_prompt=None, note=note)
    if archetype is not None:
        categories.append(_title(family, world, archetype))
    tool_count = len(family.tools(draft.tool_config))
    return CatalogEntry(**common, tool_count=tool_count, example_seed=seed, example_prompt=draft.prompt)


def family_entries(family: Any) -> list[CatalogEntry]:
    """A family's rows, generated now: the family, then each archetype (sorted)."""
    return [entry(family)] + [entry(family, a) for a in sorted(family.archetypes())]


def read_snapshot(path: Path = SNAPSHOT) -> dict[str, Any]:
    """The snapshot: family id -> ``{"key": …, "entries": [...]}`` (empty when there is no file)."""
    if not path.is_file():
        return {}
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def catalog(live: bool = False, snapshot: Path = SNAPSHOT) -> list[CatalogEntry]:
    """Every registered family's rows, in the table's order.

    Args:
        live: Generate every row now (minutes) instead of reading the snapshot's current entries.
        snapshot: The snapshot file.
    """
    shipped = {} if live else read_snapshot(snapshot)
    out: list[CatalogEntry] = []
    for fid in FAMILIES:
        family = get_family(fid)
        hit = shipped.get(fid)
        if hit is not None and hit["key"] == _key(family):
            out += [CatalogEntry.model_validate(e) for e in hit["entries"]]
        else:
            out += family_entries(family)
    return out


def write_snapshot(path: Path = SNAPSHOT) -> None:
    """Generate every registered family's rows and write them as the snapshot."""
    data = {}
    for fid in FAMILIES:
        family = get_family(fid)
        print(f"{fid}: {1 + len(family.archetypes())} rows", file=sys.stderr)
        data[fid] = {"key": _key(family), "entries": [e.model_dump(mode="json") for e in family_entries(family)]}
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":  # python -m toolgym.synth.catalog: refresh the shipped snapshot
    write_snapshot()


__all__ = [
    "SNAPSHOT",
    "CatalogEntry",
    "catalog",
    "entry",
    "example",
    "family_entries",
    "read_snapshot",
    "write_snapshot",
]
