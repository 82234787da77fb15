"""Families and the synthesis pipeline.

Families are lines of the central table (``toolgym.FAMILIES``, lazy ``"module:Class"`` entries
with their Gymnasium ids): one place to see every family, nothing imported until one is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import toolgym
from toolgym import FAMILIES

if TYPE_CHECKING:
    from toolgym.synth.family import Family


def register_family(family_id: str, entry_point: str | type[Family], **meta: Any) -> None:
    """Register a family by id (a ``"module:Class"`` string, or the class for plugins and tests).

    Registering an id twice raises :class:`~toolgym.errors.DuplicateRegistrationError`.
    """
    FAMILIES.register(family_id, entry_point, **meta)


def get_family(family_id: str) -> Family:
    """The family instance for an id (imported on first use), from the one cache :func:`toolgym.family`.

    Raises:
        UnknownNameError: An unregistered id (the message names the closest ones).
    """
    # toolgym.family, not a bare `family`: here that name is the submodule toolgym.synth.family
    return toolgym.family(family_id)  # type: ignore[no-any-return]


__all__ = ["FAMILIES", "get_family", "register_family"]
