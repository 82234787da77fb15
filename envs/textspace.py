r"""The observation charset and the ``spaces.Text`` over it.

Every character a ToolEnv can emit lies in :data:`CHARSET`: the env's own text (templates,
names, tool schemas) is checked against it when a task is built or loaded
(:func:`toolgym.envs.markup.check_text`), and the one JSON writer
(:func:`toolgym.envs.markup.dumps`) writes every other character as ``\uXXXX``. So the
observation space is a real ``spaces.Text`` with a declared charset, which is what Gymnasium's
``flatten`` and the shared-memory ``AsyncVectorEnv`` need.

Why this charset: it covers the env's own text and keeps the space small (906 characters).
General punctuation leaves out the invisible and direction-changing characters (U+2000–200F
spaces, zero-width and direction marks, U+2028–202F separators and embeddings, U+205F–206F), so a
policy sees those spelled out as escapes instead of silently.

Speed: Gymnasium's ``Text`` checks, flattens and reads back one character at a time in Python
(about a second per million characters). :class:`UnicodeText` registers vectorized versions
(one regex scan for ``contains``, numpy lookups for ``flatten``/``unflatten`` and the
shared-memory read), with the same encoding: index into the charset, padded with
``len(charset)``. It also makes the shared-memory read a live view (:class:`SharedTexts`):
Gymnasium's reads ``Text`` observations once, so they would never change.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from ctypes import c_int32
from multiprocessing.sharedctypes import SynchronizedArray
from typing import Any, overload

import numpy as np
from gymnasium import spaces
from gymnasium.spaces.utils import flatten, unflatten
from gymnasium.vector.utils.shared_memory import read_from_shared_memory

#: Every character an observation can contain, as ``(first, last)`` code point ranges.
CHARSET_RANGES: tuple[tuple[int, int], ...] = (
    (0x09, 0x0A),  # \t \n
    (0x20, 0x7E),  # printable ASCII
    (0xA0, 0x17F),  # Latin-1 Supplement (no C1 controls) + Latin Extended-A
    (0x300, 0x36F),  # combining diacritical marks (names in NFD)
    (0x2010, 0x2027),  # dashes, quotes, bullets, ellipsis
    (0x2030, 0x205E),  # per mille, primes, other punctuation
    (0x20A0, 0x20C0),  # currency symbols
    (0x2190, 0x22FF),  # arrows, mathematical operators
    (0xFFFD, 0xFFFD),  # the replacement character
)
#: :data:`CHARSET_RANGES` as one string, in code point order (the ``spaces.Text`` charset).
CHARSET: str = "".join(chr(c) for a, b in CHARSET_RANGES for c in range(a, b + 1))
#: The body of a regex character class matching :data:`CHARSET`.
CHARSET_CLASS: str = "".join(re.escape(chr(a)) + ("" if a == b else "-" + re.escape(chr(b))) for a, b in CHARSET_RANGES)
#: One character outside :data:`CHARSET`.
OUTSIDE_CHARSET = re.compile(f"[^{CHARSET_CLASS}]")

_LATIN1_IN = bytes(c for c in range(256) if chr(c) in CHARSET)  # deleted by bytes.translate


def in_charset(text: str) -> bool:
    """Whether every character of text lies in :data:`CHARSET`.

    Latin-1 text (most payloads) is checked with two C passes (``encode`` and
    ``bytes.translate``), about ten times faster than a regex scan; other text with
    :data:`OUTSIDE_CHARSET`.
    """
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        return OUTSIDE_CHARSET.search(text) is None
    return not raw.translate(None, _LATIN1_IN)


_CODEPOINTS = np.array([ord(c) for c in CHARSET], dtype="<u4")  # index -> code point
_INDEX = np.full(0x10000, -1, dtype=np.int32)  # BMP code point -> index, -1 outside
_INDEX[_CODEPOINTS] = np.arange(len(CHARSET), dtype=np.int32)
assert int(_CODEPOINTS.max()) < 0x10000


class UnicodeText(spaces.Text):
    """``spaces.Text`` over :data:`CHARSET` with fast ``contains``, ``flatten`` and shared memory.

    Args:
        max_length: Longest string, in characters.
        min_length: Shortest string, in characters.
        any_char: Let ``contains`` accept characters outside the charset. The action space uses
            it: a policy may write any Unicode and the env reads it; such an action cannot be
            flattened (nothing in Gymnasium's vector envs flattens actions).
    """

    def __init__(self, max_length: int, min_length: int = 0, any_char: bool = False):
        super().__init__(max_length, min_length=min_length, charset=CHARSET)
        self.any_char = any_char

    def contains(self, x: Any) -> bool:
        """A ``str`` within the length bounds, of charset characters (unless ``any_char``)."""
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length and (self.any_char or in_charset(x))


def encode_text(space: UnicodeText, x: str) -> np.ndarray:
    """``x`` as charset indices padded to ``max_length`` with ``len(charset)``, shape ``(max_length,)``, int32.

    Raises:
        ValueError: when ``x`` is longer than ``max_length`` or has a character outside the
            charset (naming it; an env observation never has one: that would be a toolgym bug).
    """
    cps = np.frombuffer(x.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    if len(cps) > space.max_length:
        raise ValueError(f"text of {len(cps)} characters is longer than the space's max_length {space.max_length}")
    idx = np.where(cps < 0x10000, _INDEX[cps & 0xFFFF], -1)
    if len(idx) and int(idx.min()) < 0:
        bad = x[int(np.argmin(idx))]
        raise ValueError(
            f"character {bad!r} (U+{ord(bad):04X}) is outside the observation charset "
            "(toolgym.envs.textspace.CHARSET_RANGES); toolgym's JSON writer escapes such characters, so "
            "text that reaches an observation unescaped must be checked with markup.check_text"
        )
    out = np.full(space.max_length, len(CHARSET), dtype=np.int32)
    out[: len(idx)] = idx
    return out


def decode_text(row: np.ndarray) -> str:
    """Inverse of :func:`encode_text`: indices up to the first padding value back to the string."""
    pad = np.flatnonzero(row >= len(CHARSET))
    used = row[: int(pad[0])] if len(pad) else row
    return _CODEPOINTS[used].tobytes().decode("utf-32-le")


# gymnasium types its fallbacks' first argument as ``Space[T]``, which mypy will not dispatch on a subclass
@flatten.register(UnicodeText)
def _flatten_unicode_text(space: UnicodeText, x: str) -> np.ndarray:  # type: ignore[misc]
    return encode_text(space, x)


@unflatten.register(UnicodeText)
def _unflatten_unicode_text(space: UnicodeText, x: np.ndarray) -> str:  # type: ignore[misc]
    return decode_text(np.asarray(x))


class SharedTexts(Sequence[str]):
    """A live view of the ``n`` strings in a shared-memory buffer of shape ``(n, max_length)``.

    Gymnasium's own ``read_from_shared_memory`` for ``Text`` returns a tuple of strings, read
    once when ``AsyncVectorEnv`` is built; unlike the numpy views it returns for array spaces,
    that tuple never changes, so every later ``reset``/``step`` would return stale text. This
    view decodes on access, and ``deepcopy`` (what ``AsyncVectorEnv`` applies to the
    observations it returns, ``copy=True`` by default) snapshots it into a plain tuple.
    """

    def __init__(self, data: np.ndarray):
        self._data = data

    def __len__(self) -> int:
        return len(self._data)

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[str, ...]: ...
    def __getitem__(self, i: int | slice) -> str | tuple[str, ...]:
        if isinstance(i, slice):
            return tuple(decode_text(row) for row in self._data[i])
        return decode_text(self._data[i])

    def __deepcopy__(self, memo: dict[int, Any]) -> tuple[str, ...]:
        return tuple(self)

    def __eq__(self, other: object) -> bool:
        return tuple(self) == (tuple(other) if isinstance(other, SharedTexts) else other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SharedTexts({tuple(self)!r})"


@read_from_shared_memory.register(UnicodeText)
def _read_unicode_text(space: UnicodeText, shared_memory: SynchronizedArray[c_int32], n: int = 1) -> SharedTexts:
    buffer = shared_memory.get_obj()  # a ctypes array: numpy reads it through the buffer protocol
    return SharedTexts(np.frombuffer(buffer, dtype=np.int32).reshape((n, space.max_length)))  # type: ignore[call-overload]


__all__ = [
    "CHARSET",
    "CHARSET_CLASS",
    "CHARSET_RANGES",
    "OUTSIDE_CHARSET",
    "SharedTexts",
    "UnicodeText",
    "decode_text",
    "encode_text",
    "in_charset",
]
