"""Families and the synthesis pipeline.

Families are lines of the central table (``toolgym.FAMILIES``, lazy ``"module:Class"`` entries
with their Gymnasium ids): one place to see every family, nothing imported until one is asked for.
"""

from __future__ import annotations

import inspect
import re
from typing import TYPE_CHECKING, Any

import toolgym
from toolgym import FAMILIES, PLUGIN_GROUP
from toolgym.errors import ConfigError, DuplicateRegistrationError

if TYPE_CHECKING:
    from toolgym.synth.family import Family

#: A toolgym Gymnasium id: the namespace, a name Gymnasium accepts, a version.
_ENV_ID = re.compile(r"toolgym/[A-Za-z][A-Za-z0-9_.]*-v(0|[1-9][0-9]*)", re.ASCII)


def register_family(family_id: str, entry_point: str | type[Family], env_id: str | None = None, **meta: Any) -> None:
    """Add a family from outside the central table (a plugin, a test): one call, table and Gymnasium.

    Everything is checked before anything is registered, so a refusal leaves no half-registered
    family: the id's form (``[a-z][a-z0-9_]*``: task ids start with it), the class (a
    :class:`~toolgym.synth.family.Family` subclass, not abstract, whose ``id`` is ``family_id`` and
    whose ``env_id`` is ``env_id`` when given), the Gymnasium id's form (``toolgym/<Name>-v<N>``),
    and that neither id is taken. A ``"module:Class"`` string is not imported now; its class is
    checked when :func:`toolgym.family` first builds it.

    Args:
        family_id: The id (``toolgym.FAMILIES`` key; task ids start with it).
        entry_point: A ``"module:Class"`` string (nothing imported now) or the class itself.
        env_id: Its Gymnasium id; by default ``toolgym/<env_name>-v<version>`` of the class
            (required with a string entry point, so registering imports nothing).
        **meta: Further metadata for the table.

    Raises:
        DuplicateRegistrationError: The family id or the Gymnasium id is already registered.
        ConfigError: A malformed id or env id, a class that cannot serve ``family_id``, or a string
            entry point without ``env_id``; the message says what to write instead.
    """
    import gymnasium as gym

    from toolgym.envs.registration import register_env

    where = f"family {family_id!r}"
    if isinstance(entry_point, str):
        toolgym.check_family_id(family_id)
        module, sep, attr = entry_point.partition(":")
        if not (sep and module and attr):
            raise ConfigError(f"{where}: entry point {entry_point!r} must look like 'package.module:Class'")
        if env_id is None:
            raise ConfigError(f"{where}: a 'module:Class' entry point needs env_id= (toolgym/<Name>-v<N>)")
    else:
        _check_class(family_id, entry_point, env_id)
        env_id = env_id or toolgym.family_env_id(entry_point)
    _check_env_id(where, env_id)
    if family_id in FAMILIES:
        raise DuplicateRegistrationError(
            f"{where} is already registered ({FAMILIES.entry(family_id)!r}); "
            "pick another id, or unregister_family it first"
        )
    if env_id in gym.registry:
        raise DuplicateRegistrationError(
            f"{where}: environment id {env_id!r} is already registered; give the class another env_name or version"
        )
    FAMILIES.register(family_id, entry_point, env_id=env_id, **meta)
    try:
        register_env(env_id, family_id)
    except BaseException:
        FAMILIES.unregister(family_id)
        raise


def _check_class(family_id: str, cls: Any, env_id: str | None) -> None:
    """A class entry point: a concrete Family subclass serving ``family_id`` (ConfigError otherwise)."""
    from toolgym.synth.family import Family

    toolgym.check_family_id(family_id)
    if not (isinstance(cls, type) and issubclass(cls, Family)):
        raise ConfigError(
            f"family {family_id!r}: {getattr(cls, '__name__', cls)!r} is not a subclass of "
            "toolgym.synth.family.Family; subclass it"
        )
    toolgym.check_family_class(family_id, cls, env_id)
    if inspect.isabstract(cls):
        todo = ", ".join(sorted(cls.__abstractmethods__))
        raise ConfigError(f"family {family_id!r}: {cls.__name__} does not define {todo}")


def _check_env_id(where: str, env_id: str) -> None:
    """A Gymnasium id of the form ``toolgym/<Name>-v<N>`` (ConfigError otherwise)."""
    if not _ENV_ID.fullmatch(env_id):
        raise ConfigError(f"{where}: env_id {env_id!r} must look like 'toolgym/<Name>-v<N>' (e.g. 'toolgym/Bank-v0')")


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


def load_plugins(group: str = PLUGIN_GROUP) -> dict[str, str]:
    """Import and register every family that an installed distribution lists as an entry point.

    A plugin declares ``bank = "bank_plugin:BankFamily"`` under ``[project.entry-points."toolgym.families"]``
    in its pyproject; the entry's name is the family id. Each class is imported and registered with
    :func:`register_family` (so it is checked like any other); one already registered as that id
    (the same class: a second call, or the program registered it itself) is skipped.

    Decision: ``import toolgym`` never calls this. Importing is then cheap and runs no third-party
    code (every vector-env worker and ``gymnasium.make("toolgym:...")`` imports toolgym), a broken
    plugin cannot break the package, and there is no import cycle (plugins import ``toolgym``).
    The ``toolgym`` command calls it once at start-up; a program that wants plugins calls it, or
    calls ``register_family`` itself.

    Decision: a plugin that fails is reported, not raised. One broken plugin must not take the
    others or the shipped families down with it (as a broken table entry breaks only its own id).

    Args:
        group: The entry-point group to read.

    Returns:
        Plugin name -> why it was not loaded (one line: the entry point and the error), for each
        plugin that failed to import or register; empty when all loaded.
    """
    from importlib.metadata import entry_points

    failed: dict[str, str] = {}
    for ep in entry_points(group=group):
        try:
            if ep.name in FAMILIES and FAMILIES.entry(ep.name) == ep.value:
                continue  # registered lazily as this very entry point
            cls = ep.load()
            if ep.name in FAMILIES and FAMILIES.entry(ep.name) is cls:
                continue
            register_family(ep.name, cls)
        except Exception as exc:  # a plugin's import may raise anything; it is reported, not fatal
            failed[ep.name] = f"{ep.value}: {type(exc).__name__}: {' '.join(str(exc).split())}"
    return failed


def get_family(family_id: str) -> Family:
    """The family instance for an id (imported on first use), from the one cache :func:`toolgym.family`.

    Raises:
        UnknownNameError: An unregistered id (the message names the closest ones).
    """
    # toolgym.family, not a bare `family`: here that name is the submodule toolgym.synth.family
    return toolgym.family(family_id)  # type: ignore[no-any-return]


__all__ = ["FAMILIES", "PLUGIN_GROUP", "get_family", "load_plugins", "register_family", "unregister_family"]
