"""Prompts of code tasks: jinja2 templates with varied wording, rendered from the structured query.

Every prompt names columns exactly (in backticks) and says what form the answer takes and how
it is checked (the rounding and the tolerance), because a code-interpreter task should be hard
to *compute*, never hard to *read*. The wording varies (several templates per part, chosen by
the task's generator), the content does not. Easier tasks list the files and say how they
link; harder ones leave finding the files and the join keys to the policy.
"""

from __future__ import annotations

import calendar
import random
from typing import Any

import jinja2

from toolgym.synth.code.world import CodeWorld
from toolgym.synth.text import article

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False)
_ENV.globals["article"] = article


def _t(*sources: str) -> list[jinja2.Template]:
    return [_ENV.from_string(s) for s in sources]


INTRO = _t(
    "The workspace holds data files from {{ place }}{{ files }}.",
    "You have the data of {{ place }} in your workspace{{ files }}.",
    "Files exported from {{ place }} are in the workspace{{ files }}.",
)
QUESTION = {
    "stat": _t(
        "Consider the {{ rows }}{{ where }}. What is the {{ stat }} of {{ measure }} over them?",
        "Take every one of the {{ rows }}{{ where }} and compute the {{ stat }} of {{ measure }}.",
    ),
    "count": _t(
        "How many {{ rows }} are there{{ where }}, and what is their total {{ measure }}?",
        "Count the {{ rows }}{{ where }}, and add up their {{ measure }}.",
    ),
    "argmax": _t(
        "Among the {{ rows }}{{ where }}, group by {{ group }} and compute the {{ agg }} of each group. "
        "Which group has the {{ best }} {{ agg }}?",
        "Take the {{ rows }}{{ where }}. Group them by {{ group }} and find the group whose {{ agg }} is the "
        "{{ best }}.",
    ),
    "compare": _t(
        "Take the {{ rows }}{{ where }} and group them by {{ group }}. {{ rule }} List those groups.",
        "Consider the {{ rows }}{{ where }}, grouped by {{ group }}. Which groups qualify? {{ rule }}",
    ),
    "simulate": _t(
        "Replay `{{ log }}` in timestamp order{{ until }}, starting from each {{ noun }}'s `{{ level }}` in "
        "`{{ efile }}`. {{ article(add) | capitalize }} `{{ add }}` event adds its `{{ qty }}`; "
        "{{ article(remove) }} `{{ remove }}` event removes it, but is "
        "rejected (and changes nothing) when it asks for more than the current level. {{ ask }}",
        "Simulate the {{ noun }} levels: begin with `{{ level }}` from `{{ efile }}`, then apply the events of "
        "`{{ log }}` sorted by `ts`{{ until }}. Each `{{ add }}` event adds `{{ qty }}`; each `{{ remove }}` "
        "event subtracts it unless that would go below zero, in which case the event is rejected and ignored. "
        "{{ ask }}",
    ),
    "pairs": _t(
        "In `{{ efile }}`, count the {{ what }} {{ plural }} such that {{ rules }}.",
        "How many {{ what }} {{ plural }} from `{{ efile }}` satisfy all of: {{ rules }}?",
    ),
    "numbers": _t(
        "How many integers n with {{ lo }} <= n <= {{ hi }} satisfy all of the following: {{ rules }}?",
        "Count the integers n from {{ lo }} to {{ hi }} (inclusive) for which {{ rules }}.",
    ),
}
FORMAT = {
    "number": "Submit a single number rounded to 2 decimals (answers within 0.01 of the exact value are accepted).",
    "integer": "Submit the exact integer.",
    "string": "Submit it exactly as written in the files.",
    "names": "Submit the list of names (any order, each once), spelled exactly as in the files.",
    "record": "Submit an object {fields}; numbers rounded to 2 decimals are accepted within 0.01.",
}
STAT_WORDS = {
    "sum": "total",
    "mean": "average",
    "median": "median (the mean of the two middle values when the count is even)",
    "max": "largest value",
    "min": "smallest value",
}
NUMBER_RULES = {
    "mod": "n leaves remainder {1} when divided by {0}",
    "digit_sum_mod": "the sum of the decimal digits of n is divisible by {0}",
    "has_digit": "the decimal digits of n include the digit {0}",
    "no_digit": "n has no digit {0} in decimal",
    "popcount": "n has exactly {0} ones in binary",
    "coprime": "n and {0} have no common divisor greater than 1",
    "not_square": "n is not a perfect square",
}


def month_name(month: str) -> str:
    """``"2025-03"`` → ``"March 2025"``."""
    y, m = month.split("-")
    return f"{calendar.month_name[int(m)]} {y}"


def ref_text(world: CodeWorld, ref: dict[str, str]) -> str:
    """How a prompt names a column (with the table it lives in for joined columns)."""
    if ref["t"] == "F":
        return f"`{ref['col']}`"
    t = world.roles[ref["t"]]
    return f"the {t.noun}'s `{ref['col']}` (in `{world.file_of[ref['t']]}`)"


def cond_text(world: CodeWorld, c: dict[str, Any]) -> str:
    """One condition as a phrase."""
    ref, op, v = ref_text(world, c["ref"]), c["op"], c["value"]
    if op == "months":
        if len(v) == 1:
            return f"{ref} falls in {month_name(v[0])}"
        return f"{ref} falls between {month_name(v[0])} and {month_name(v[-1])} (inclusive)"
    shown = f'"{v}"' if isinstance(v, str) else str(v)
    words = {"eq": "is", "ne": "is not", "gt": "is greater than", "ge": "is at least", "lt": "is less than"}
    return f"{ref} {words.get(op, 'is at most')} {shown}"


def where_text(world: CodeWorld, where: list[dict[str, Any]], rng: random.Random) -> str:
    """`` where A, B and C`` (empty for no conditions)."""
    parts = [cond_text(world, c) for c in where]
    if not parts:
        return ""
    joined = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return rng.choice((" where ", " for which ", " such that ")) + joined


def measure_text(world: CodeWorld, m: dict[str, Any]) -> str:
    """A measure: one column, or a product of columns."""
    return " times ".join(ref_text(world, r) for r in m["refs"])


def intro(world: CodeWorld, roles: list[str], difficulty: int, rng: random.Random) -> str:
    """The opening sentence; easy tasks name the files they need and how they link."""
    files = ""
    if difficulty <= 2:
        files = ": " + ", ".join(f"`{world.file_of[r]}`" for r in roles)
    text = render_one(INTRO, rng, place=world.theme.place, files=files)
    links = [r for r in roles if r in ("E", "A")]
    if difficulty <= 3 and "F" in roles and links:
        from toolgym.synth.code.queries import fk_col

        fkeys = ", ".join(f"`{fk_col(world, r)}`" for r in links)
        text += f" Rows of `{world.file_of['F']}` point to other files through {fkeys}."
    return text


#: The data notes of messy worlds (difficulty 2 on): general warnings and the rules that make
#: every answer unique, never a list of what this world's files actually contain.
NOTES = (
    " The files are raw exports and may be messy. A value can be missing: leave out every row that lacks "
    "a value the question uses. A row can appear twice: an exact repeat is the same row, count it once. "
    "Dates and numbers are not always written the same way: read each whatever its format; a number "
    "written with a unit counts in the unit most values of its column use (100 cents are 1, 1000 m are "
    "1 km, 10 mm are 1 cm)."
)
TIES = (
    " When several groups or items tie for the best value, the answer is the tied name that sorts first "
    "(plain character order)."
)


def notes(difficulty: int) -> str:
    """The data notes a prompt carries at ``difficulty`` (empty at 1: its files are clean)."""
    return (NOTES if difficulty >= 2 else "") + (TIES if difficulty >= 3 else "")


def question(kind: str, rng: random.Random, **values: Any) -> str:
    """One of the kind's question templates, rendered."""
    return render_one(QUESTION[kind], rng, **values)


def render_one(templates: list[jinja2.Template], rng: random.Random, **values: Any) -> str:
    """One of ``templates``, drawn with ``rng``, rendered (tests patch this to render them all)."""
    return rng.choice(templates).render(**values)


def answer_format(answer: str, fields: str = "") -> str:
    """The sentence that says what to submit."""
    return FORMAT[answer].replace("{fields}", fields)
