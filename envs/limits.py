"""The limits of a ToolEnv episode: their defaults, how the prompt states them, and the cap on observations.

DESIGN.md: "Limits are part of the prompt. Breaking a per-turn limit is an error observation,
not the end of the episode; only running out of turns truncates, and the last turns carry a
warning. Observations are capped at ``max_observation_chars``, with a marker saying what was cut."

Decisions (where DESIGN.md is silent):

* **Calls over the per-turn limit.** The first ``max_tool_calls_per_turn`` calls run; each
  further call gets its own result ``{"name": <tool>, "error": "not run: …"}`` (as calls after a
  ``submit`` do), and one turn-level error leads the observation. One result per parsed call
  keeps ``info["messages"]`` and ``chat.messages_from_text`` in agreement.
* **An action over ``max_action_chars``** runs no call and gets one turn-level error; the
  episode goes on.
* **The warning.** The observations of the last :data:`WARN_TURNS` turns before the turn limit
  start with a turn-level notice ``{"name": null, "content": "…turns left…"}`` (leading, like
  turn-level errors, so the chat view rebuilt from text agrees; ``content`` because it is not an
  error: agents that treat every error as fatal keep working).
* **The cap** applies to the whole observation text. When it would be exceeded, every result
  keeps what fits in a fair share of the cap (short results whole, the long ones cut to equal
  shares); a cut result's ``content`` (or ``error``) becomes a string: the start of its text
  (the JSON text, for a structured result) followed by a ``[cut: …]`` marker saying how much
  of how much was cut. Each result stays one valid JSON payload in its own ``<|tool|>…<|end|>``.
* At most :data:`MAX_TURN_ERRORS` turn-level errors per turn; further ones are counted in the
  last of them (a megabyte of stray tags must not yield a megabyte of errors).

:func:`min_observation_chars` is the smallest cap under which every result of every action
of a given length still fits in its minimal cut form; :class:`~toolgym.envs.toolenv.EnvConfig`
rejects a smaller one.
"""

from __future__ import annotations

import math

from toolgym.envs import markup as mk

#: Default limits (justified in ``EnvConfig``): the trip reference makes up to ~270 calls at
#: difficulty 5; batched at 75% of 32 calls per turn it needs ~15 of the 48 turns.
MAX_TURNS = 48
MAX_TOOL_CALLS_PER_TURN = 32
MAX_ACTION_CHARS = 32_768
MAX_OBSERVATION_CHARS = 1_000_000

#: Every reference program stays at least this far below every limit (registry-wide test).
REFERENCE_MARGIN = 0.25
#: The last turns whose observations carry the turns-left notice.
WARN_TURNS = 3
#: Turn-level error payloads per observation, at most.
MAX_TURN_ERRORS = 4
#: Echoed unknown tool names are shortened to this many characters.
MAX_NAME_ECHO = 40

_MARK = len(mk.TOOL) + len(mk.END)  # markers around each payload
_CUT = "[cut]"
_OVERHEAD = len(mk.END) + len(mk.ASSISTANT)  # what an observation holds besides its results


def reference_batch(max_tool_calls_per_turn: int = MAX_TOOL_CALLS_PER_TURN) -> int:
    """Calls per turn a reference program may make: the limit less :data:`REFERENCE_MARGIN`."""
    return max(1, math.floor(max_tool_calls_per_turn * (1 - REFERENCE_MARGIN)))


def min_observation_chars(max_action_chars: int) -> int:
    r"""The smallest observation cap that holds a minimal result for every call of any action.

    A call costs at least 34 + len(name) action characters (``<tool_call>{"name":"…"}</tool_call>``)
    and its minimal cut result at most 15 + 31 + 6 * min(len(name), MAX_NAME_ECHO) observation
    characters (``\uXXXX`` escapes), under 4x; 4096 covers the turn-level payloads and markers.
    """
    return 4096 + 4 * max_action_chars


def echo_name(name: str) -> str:
    """An unknown tool name as echoed in a result (at most :data:`MAX_NAME_ECHO` characters)."""
    return name if len(name) <= MAX_NAME_ECHO else name[: MAX_NAME_ECHO - 3] + "..."


def limits_text(max_turns: int, max_tool_calls_per_turn: int, max_action_chars: int, max_observation_chars: int) -> str:
    """The paragraph of the system text that states every limit (ASCII, one line)."""
    return (
        f"Limits: at most {max_turns:,} turns (a turn is one assistant message; when {WARN_TURNS} or fewer remain "
        "the results say so, and when none remain the episode ends with reward 0); at most "
        f"{max_tool_calls_per_turn:,} "
        f"tool calls per turn (further calls are not run and get an error); at most {max_action_chars:,} "
        f"characters per assistant message (a longer one runs no call and gets an error); the tool results "
        f"of one turn hold at most {max_observation_chars:,} characters in all (longer results are cut, "
        "with a [cut: ...] note saying how much).\n"
    )


DEFAULT_LIMITS_TEXT = limits_text(MAX_TURNS, MAX_TOOL_CALLS_PER_TURN, MAX_ACTION_CHARS, MAX_OBSERVATION_CHARS)
#: The line that precedes the tool schemas in every system text.
TOOLS_HEADER = "Tools (JSON schemas, one per line):\n"


def with_limits(system: str, limits: str) -> str:
    """``system`` stating ``limits``: the default paragraph replaced, or the paragraph inserted.

    Stored tasks carry the default paragraph (``toolenv.system_text``); an env with other
    limits swaps it, and a system text without one (a dataset made before limits were stated)
    gets it before the tool schemas.
    """
    if limits in system:
        return system
    if DEFAULT_LIMITS_TEXT in system:
        return system.replace(DEFAULT_LIMITS_TEXT, limits, 1)
    at = system.find(TOOLS_HEADER)
    return system + "\n" + limits if at < 0 else system[:at] + limits + system[at:]


def turns_notice(turn: int, max_turns: int) -> str | None:
    """The warning for the observation of ``turn`` (1-based), or None outside the last turns."""
    left = max_turns - turn
    if not 1 <= left <= WARN_TURNS:
        return None
    if left == 1:
        return (
            f"turn {turn} of {max_turns}: 1 turn left; call submit in it with your best answer, "
            "or the episode ends with reward 0"
        )
    return (
        f"turn {turn} of {max_turns}: {left} turns left; call submit with your best answer before "
        "they run out, or the episode ends with reward 0"
    )


def merge_errors(errors: list[str]) -> list[str]:
    """At most :data:`MAX_TURN_ERRORS` errors: the rest are counted in the last one."""
    if len(errors) <= MAX_TURN_ERRORS:
        return errors
    keep = MAX_TURN_ERRORS - 1
    return [*errors[:keep], f"{len(errors) - keep} more problems in this turn (not listed); fix the ones above first"]


# ----------------------------------------------------------------------------- the observation cap


def _fields(payload: str) -> tuple[str | None, str, str]:
    """(name, key, text) of a payload: the string a cut shortens (a structured result's JSON text)."""
    obj = mk.loads(payload)
    key = "error" if "error" in obj else "content"
    value = obj.get(key)
    return obj.get("name"), key, value if isinstance(value, str) else mk.dumps(value)


def _minimal(name: str | None, key: str) -> str:
    return mk.dumps({"name": name, key: _CUT})


def _cut(payload: str, share: int, cap: int) -> str:
    """``payload`` in at most ``share`` characters: its text's start and a ``[cut: …]`` marker."""
    name, key, text = _fields(payload)

    def build(k: int) -> str:
        marker = (
            f" [cut: {len(text) - k:,} of {len(text):,} characters of this result; the tool results "
            f"of one turn hold at most {cap:,} characters, so ask for less at a time]"
        )
        return mk.dumps({"name": name, key: text[:k] + marker})

    if len(build(0)) > share:
        return _minimal(name, key)
    lo, hi = 0, min(len(text), share)  # an escaped character is never shorter than the raw one
    while lo < hi:  # the longest prefix that fits
        mid = (lo + hi + 1) // 2
        if len(build(mid)) <= share:
            lo = mid
        else:
            hi = mid - 1
    return build(lo)


def _water_fill(needs: list[int], floors: list[int], budget: int) -> list[int]:
    """Shares of ``budget``: each gets its floor, then the rest is split fairly (small needs whole)."""
    shares = list(floors)
    left = budget - sum(floors)
    order = sorted(range(len(needs)), key=lambda i: needs[i] - floors[i])
    for n, i in enumerate(order):
        extra = min(needs[i] - floors[i], max(0, left) // (len(order) - n))
        shares[i] += extra
        left -= extra
    return shares


def cap_payloads(payloads: list[str], cap: int) -> list[str]:
    """Cut ``payloads`` so that an observation of them is at most ``cap`` characters.

    Args:
        payloads: The JSON texts of one observation's results, in order.
        cap: ``max_observation_chars``.

    Returns:
        As many payloads, in the same order, each valid JSON with the same ``name`` and key;
        a cut one's value is a string ending in a ``[cut: …]`` marker (or just ``[cut]`` where
        no more fits). Unchanged when they fit already.

    Raises:
        ValueError: Not even the minimal forms fit (``cap`` under :func:`min_observation_chars`
            of the action limit; ``EnvConfig`` prevents this).
    """
    budget = cap - _OVERHEAD - _MARK * len(payloads)
    needs = [len(p) for p in payloads]
    if sum(needs) <= budget:
        return payloads
    floors = [min(n, len(_minimal(*_fields(p)[:2]))) for n, p in zip(needs, payloads, strict=True)]
    if sum(floors) > budget:
        raise ValueError(f"{len(payloads)} results cannot fit in an observation of {cap} characters")
    shares = _water_fill(needs, floors, budget)
    return [p if len(p) <= s else _cut(p, s, cap) for p, s in zip(payloads, shares, strict=True)]


__all__ = [
    "DEFAULT_LIMITS_TEXT",
    "MAX_ACTION_CHARS",
    "MAX_NAME_ECHO",
    "MAX_OBSERVATION_CHARS",
    "MAX_TOOL_CALLS_PER_TURN",
    "MAX_TURNS",
    "MAX_TURN_ERRORS",
    "REFERENCE_MARGIN",
    "TOOLS_HEADER",
    "WARN_TURNS",
    "cap_payloads",
    "echo_name",
    "limits_text",
    "merge_errors",
    "min_observation_chars",
    "reference_batch",
    "turns_notice",
    "with_limits",
]
