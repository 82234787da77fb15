"""Families and the synthesis pipeline.

``FAMILIES`` is the central list of family ids with string entry points (house style rule 6):
one place to see every family, and nothing is imported until a family is asked for.
"""

from __future__ import annotations

import difflib
import importlib
from functools import cache
from typing import TYPE_CHECKING

from toolgym.errors import DuplicateRegistrationError, UnknownNameError

if TYPE_CHECKING:
    from toolgym.synth.family import Family

FAMILIES: dict[str, str | type[Family]] = {
    "trip": "toolgym.synth.trip.family:TripPlanning",
    "code": "toolgym.synth.code.family:CodeInterpreter",
}


def register_family(family_id: str, entry_point: str | type[Family]) -> None:
    """Register a family by id (a ``"module:Class"`` string, or the class for plugins and tests).

    Registering an id twice raises.
    """
    if family_id in FAMILIES:
        raise DuplicateRegistrationError(f"family {family_id!r} is already registered")
    FAMILIES[family_id] = entry_point


def unknown(kind: str, name: str, known: list[str]) -> UnknownNameError:
    """An error for an unknown name that lists the closest registered ones."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.4)
    hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(sorted(known))}"
    return UnknownNameError(f"unknown {kind} {name!r}; {hint}")


@cache
def get_family(family_id: str) -> Family:
    """The family instance for an id (imported on first use)."""
    if family_id not in FAMILIES:
        raise unknown("family", family_id, list(FAMILIES))
    entry = FAMILIES[family_id]
    if not isinstance(entry, str):
        return entry()
    module, _, cls = entry.partition(":")
    return getattr(importlib.import_module(module), cls)()
