"""One registry shape for every pluggable part (layer L0): families, verifier kinds and the rest.

A :class:`Registry` maps ids to entry points. An entry is a ``"module:attr"`` string, imported on
first use (so ``import toolgym`` stays cheap and a broken plugin breaks only its own id), or the
object itself (plugins and tests). Each entry may carry metadata known without importing it (a
family's Gymnasium id). Registering an id twice raises; an unknown id raises
:class:`~toolgym.errors.UnknownNameError` naming the closest ids. The central table of
``toolgym/__init__.py`` fills the registries with one line per part.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from toolgym.errors import DuplicateRegistrationError, UnknownNameError

T = TypeVar("T")


def unknown(kind: str, name: str, known: list[str]) -> UnknownNameError:
    """An error for an unknown name: the closest registered ones, or all of them in the table's order."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.4)
    listed = f"known: {', '.join(known)}" if len(known) <= 12 else f"{len(known)} known"
    hint = f"did you mean {', '.join(close)}? (closest first; {listed})" if close else listed
    return UnknownNameError(f"unknown {kind} {name!r}; {hint}")


def load(entry: str) -> Any:
    """Import a ``"module:attr"`` entry point.

    Raises:
        ValueError: If ``entry`` has no ``:``.
        ImportError, AttributeError: If the module or attribute does not exist.
    """
    module, sep, attr = entry.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"entry point {entry!r} is not of the form 'module:attr'")
    return getattr(importlib.import_module(module), attr)


class Registry(Generic[T]):
    """Ids → entry points of one kind of part, resolved lazily and cached.

    Args:
        kind: What the ids name, for errors ("family", "verifier kind", …).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, str | T] = {}
        self._meta: dict[str, dict[str, Any]] = {}
        self._loaded: dict[str, T] = {}

    def register(self, id: str, entry: str | T, **meta: Any) -> None:
        """Add ``id`` (a ``"module:attr"`` string or the object itself) with optional metadata.

        Raises:
            DuplicateRegistrationError: If ``id`` is already registered.
        """
        if id in self._entries:
            raise DuplicateRegistrationError(f"{self.kind} {id!r} is already registered")
        self._entries[id] = entry
        self._meta[id] = meta

    def unregister(self, id: str) -> None:
        """Remove ``id`` (plugins and tests that register temporarily)."""
        self._entries.pop(id, None)
        self._meta.pop(id, None)
        self._loaded.pop(id, None)

    def get(self, id: str) -> T:
        """The object registered as ``id`` (imported on first use).

        Raises:
            UnknownNameError: If ``id`` is not registered (the message names the closest ids).
        """
        hit = self._loaded.get(id)
        if hit is not None:
            return hit
        if id not in self._entries:
            raise unknown(self.kind, id, list(self._entries))
        entry = self._entries[id]
        obj: T = load(entry) if isinstance(entry, str) else entry
        self._loaded[id] = obj
        return obj

    def entry(self, id: str) -> str | T:
        """The raw entry of ``id`` (a ``"module:attr"`` string, or the object)."""
        if id not in self._entries:
            raise unknown(self.kind, id, list(self._entries))
        return self._entries[id]

    def meta(self, id: str) -> dict[str, Any]:
        """The metadata registered with ``id``."""
        if id not in self._meta:
            raise unknown(self.kind, id, list(self._entries))
        return self._meta[id]

    def items(self) -> Iterator[tuple[str, str | T]]:
        """``(id, raw entry)`` pairs in registration order."""
        return iter(list(self._entries.items()))

    def __contains__(self, id: object) -> bool:
        return id in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"
