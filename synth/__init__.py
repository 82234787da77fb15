"""Families and the synthesis pipeline.

Families are lines of the central table (``toolgym.FAMILIES``, lazy ``"module:Class"`` entries
with their Gymnasium ids): one place to see every family, nothing imported until one is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import toolgym
from toolgym import FAMILIES
from toolgym.errors import ConfigError

if TYPE_CHECKING:
    from toolgym.synth.family import Family


def register_family(family_id: str, entry_point: str | type[Family], env_id: str | None = None, **meta: Any) -> None:
    """Add a family from outside the central table (a plugin, a test): one call, table and Gymnasium.

    Args:
        family_id: The id (``toolgym.FAMILIES`` key; task ids start with it).
        entry_point: A ``"module:Class"`` string (nothing imported now) or the class itself.
        env_id: Its Gymnasium id; by default ``toolgym/<env_name>-v<version>`` of the class
            (required with a string entry point, so registering imports nothing).
        **meta: Further metadata for the table.

    Raises:
        DuplicateRegistrationError: The family id or the Gymnasium id is already registered.
        ConfigError: A string entry point without ``env_id``.
    """
    from toolgym.envs.registration import register_env

    if env_id is None:
        if isinstance(entry_point, str):
            raise ConfigError(f"family {family_id!r}: a 'module:Class' entry point needs env_id= (toolgym/<Name>-v<N>)")
        env_id = f"toolgym/{entry_point.env_name}-v{entry_point.version}"
    FAMILIES.register(family_id, entry_point, env_id=env_id, **meta)
    try:
        register_env(env_id, family_id)
    except Exception:
        FAMILIES.unregister(family_id)
        raise


def unregister_family(family_id: str) -> None:
    """Remove a family added with :func:`register_family`, its Gymnasium id with it.

    Raises:
        UnknownNameError: An unregistered id.
    """
    import gymnasium as gym

    env_id = FAMILIES.meta(family_id).get("env_id")
    FAMILIES.unregister(family_id)
    if env_id is not None:
        gym.registry.pop(env_id, None)


def get_family(family_id: str) -> Family:
    """The family instance for an id (imported on first use), from the one cache :func:`toolgym.family`.

    Raises:
        UnknownNameError: An unregistered id (the message names the closest ones).
    """
    # toolgym.family, not a bare `family`: here that name is the submodule toolgym.synth.family
    return toolgym.family(family_id)  # type: ignore[no-any-return]


__all__ = ["FAMILIES", "get_family", "register_family", "unregister_family"]
