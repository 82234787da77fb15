"""Bugs by AST mutation, as text edits a maintainer would recognise, and the edits that undo them.

The mutation operators (SWE-smith's LLM-free kind, applied to generated code):

* ``comparator``: ``<`` ↔ ``<=``, ``>`` ↔ ``>=``, ``==`` ↔ ``!=``;
* ``operator``: ``+`` ↔ ``-``, ``*`` → ``//``, ``//`` → ``*``, ``%`` → ``//`` (also in ``+=``/``-=``),
  ``and`` ↔ ``or``;
* ``off_by_one``: an integer literal in a function body, plus or minus one;
* ``swapped_args``: the first two positional arguments of a call exchanged;
* ``dropped_branch``: an ``if`` statement with no ``else`` removed (an early return or a guard);
* ``wrong_default``: a parameter's integer default plus or minus one, or a string default changed.

Each mutation is found on the AST and applied to the **source text** at the node's position
(only the operator, literal or argument text changes; comments, layout and the rest of the line
stay), so the buggy file reads like a one-token slip, not like re-printed code. The positions
come from :mod:`ast`'s byte offsets, converted to character offsets per line (sources may hold
``€``).

:func:`fix_edits` turns the mutations of a task into the edits the reference makes through
``edit_file``: for each bug, the smallest block of whole lines that differs between the buggy
file and the file with that bug undone, grown by a line of context at a time until it occurs
exactly once; the edits are checked by applying them in order, as the reference will.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import asdict, dataclass
from typing import Any

SYM = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
CMP_SWAP = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "=="}
BIN = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//", ast.Mod: "%"}
BIN_SWAP = {"+": "-", "-": "+", "*": "//", "//": "*", "%": "//"}


@dataclass(frozen=True)
class Mutation:
    """One bug: replace ``source[start:end]`` (which reads ``old``) by ``new``, inside ``function``."""

    module: str
    function: str
    kind: str
    start: int
    end: int
    old: str
    new: str

    def to_json(self) -> dict[str, Any]:
        """The mutation as JSON data."""
        return asdict(self)


class _Offsets:
    """Character offsets of (line, byte column) positions of one source."""

    def __init__(self, source: str):
        self.lines = source.splitlines(keepends=True)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def at(self, lineno: int, col: int) -> int:
        line = self.lines[lineno - 1]
        return self.starts[lineno - 1] + len(line.encode()[:col].decode())

    def span(self, node: ast.AST) -> tuple[int, int]:
        n: Any = node
        return self.at(n.lineno, n.col_offset), self.at(n.end_lineno, n.end_col_offset)


def _in_gap(src: str, off: _Offsets, a: ast.AST, b: ast.AST, sym: str, new: str) -> tuple[int, int, str] | None:
    """The edit that swaps operator ``sym`` for ``new`` in the text between nodes ``a`` and ``b``."""
    lo, hi = off.span(a)[1], off.span(b)[0]
    gap = src[lo:hi]
    if gap.strip(" ()\t\n") != sym:
        return None
    i = lo + gap.index(sym)
    return i, i + len(sym), new


def _expr_edits(src: str, off: _Offsets, node: ast.AST) -> list[tuple[str, int, int, str]]:
    """Operator, comparator, literal and argument mutations of one expression node."""
    out: list[tuple[str, int, int, str]] = []
    if isinstance(node, ast.Compare):
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            sym = SYM.get(type(op))
            e = _in_gap(src, off, left, right, sym, CMP_SWAP[sym]) if sym else None
            if e:
                out.append(("comparator", *e))
            left = right
    elif isinstance(node, ast.BinOp) and type(node.op) in BIN:
        sym = BIN[type(node.op)]
        e = _in_gap(src, off, node.left, node.right, sym, BIN_SWAP[sym])
        if e:
            out.append(("operator", *e))
    elif isinstance(node, ast.AugAssign) and type(node.op) in (ast.Add, ast.Sub):
        sym = BIN[type(node.op)] + "="
        e = _in_gap(src, off, node.target, node.value, sym, BIN_SWAP[sym[0]] + "=")
        if e:
            out.append(("operator", *e))
    elif isinstance(node, ast.BoolOp) and len(node.values) == 2:
        sym = "and" if isinstance(node.op, ast.And) else "or"
        e = _in_gap(src, off, node.values[0], node.values[1], sym, "or" if sym == "and" else "and")
        if e:
            out.append(("operator", *e))
    elif isinstance(node, ast.Constant) and type(node.value) is int:
        s, t = off.span(node)
        if src[s:t] == str(node.value):
            out += [("off_by_one", s, t, str(node.value + 1)), ("off_by_one", s, t, str(node.value - 1))]
    elif isinstance(node, ast.Call) and len(node.args) >= 2 and not any(isinstance(a, ast.Starred) for a in node.args):
        (s0, t0), (s1, t1) = off.span(node.args[0]), off.span(node.args[1])
        a0, a1 = src[s0:t0], src[s1:t1]
        if a0 != a1:
            out.append(("swapped_args", s0, t1, a1 + src[t0:s1] + a0))
    return out


def _default_edits(src: str, off: _Offsets, fn: ast.FunctionDef) -> list[tuple[str, int, int, str]]:
    out: list[tuple[str, int, int, str]] = []
    for d in [*fn.args.defaults, *(k for k in fn.args.kw_defaults if k is not None)]:
        if not isinstance(d, ast.Constant):
            continue
        s, t = off.span(d)
        if type(d.value) is int:
            out += [("wrong_default", s, t, str(d.value + 1)), ("wrong_default", s, t, str(d.value - 1))]
        elif isinstance(d.value, str):
            out.append(("wrong_default", s, t, repr(" " if d.value != " " else "")))
    return out


def _dropped_branches(src: str, off: _Offsets, fn: ast.FunctionDef) -> list[tuple[str, int, int, str]]:
    """Each ``if`` without ``else`` whose block keeps another statement, deleted with its lines."""
    out: list[tuple[str, int, int, str]] = []
    for node in ast.walk(fn):
        for body in (getattr(node, "body", None), getattr(node, "orelse", None)):
            if not isinstance(body, list) or len(body) < 2:
                continue
            for stmt in body:
                if isinstance(stmt, ast.If) and not stmt.orelse:
                    s = off.starts[stmt.lineno - 1]
                    t = off.starts[stmt.end_lineno]  # type: ignore[index]
                    out.append(("dropped_branch", s, t, ""))
    return out


@functools.lru_cache(maxsize=256)
def mutations(module: str, source: str) -> tuple[Mutation, ...]:
    """Every mutation of a module's top-level functions (docstrings untouched), in source order (cached)."""
    tree = ast.parse(source)
    off = _Offsets(source)
    found: list[Mutation] = []
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        doc = fn.body[0] if fn.body and isinstance(fn.body[0], ast.Expr) else None
        edits = _default_edits(source, off, fn) + _dropped_branches(source, off, fn)
        for node in ast.walk(fn):
            if node is doc or (doc is not None and node in (doc.value,)):
                continue
            if node in fn.args.defaults or node in fn.args.kw_defaults:
                continue
            edits += _expr_edits(source, off, node)
        for kind, s, t, new in edits:
            found.append(Mutation(module, fn.name, kind, s, t, source[s:t], new))
    return tuple(sorted(set(found), key=lambda m: (m.start, m.end, m.kind, m.new)))


def apply(source: str, muts: list[Mutation]) -> str:
    """``source`` with non-overlapping mutations applied (any order given)."""
    for m in sorted(muts, key=lambda m: m.start, reverse=True):
        assert source[m.start : m.end] == m.old, (m, source[m.start : m.end])
        source = source[: m.start] + m.new + source[m.end :]
    return source


def line_edit(buggy: str, fixed: str) -> tuple[str, str]:
    """The smallest block of whole lines turning ``buggy`` into ``fixed``, unique in ``buggy``."""
    a, b = buggy.split("\n"), fixed.split("\n")
    lo = 0
    while lo < min(len(a), len(b)) and a[lo] == b[lo]:
        lo += 1
    tail = 0
    while tail < min(len(a), len(b)) - lo and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    hi_a, hi_b = len(a) - tail, len(b) - tail
    for _ in range(len(a)):
        old = "\n".join(a[lo:hi_a])
        if old.strip() and buggy.count(old) == 1:
            return old, "\n".join(b[lo:hi_b])
        lo, hi_a, hi_b = max(0, lo - 1), min(len(a), hi_a + 1), min(len(b), hi_b + 1)
    raise ValueError("no unique snippet")


def fix_edits(sources: dict[str, str], bugs: list[Mutation], path: dict[str, str]) -> list[dict[str, str]] | None:
    """The ``edit_file`` calls that undo ``bugs`` one by one, or None when a snippet is not unique.

    Args:
        sources: Clean module sources by module id.
        bugs: The task's mutations (at most one per function).
        path: Module id → workspace path.

    Returns:
        ``[{"path", "old", "new"}, …]`` in the order the reference applies them.
    """
    edits = []
    for i, bug in enumerate(bugs):
        same = [b for b in bugs if b.module == bug.module]
        later = [b for b in bugs[i + 1 :] if b.module == bug.module]
        current = apply(sources[bug.module], [b for b in same if b in bugs[i:]])
        try:
            old, new = line_edit(current, apply(sources[bug.module], later))
        except ValueError:
            return None
        edits.append({"path": path[bug.module], "old": old, "new": new})
    return edits


__all__ = ["Mutation", "apply", "fix_edits", "line_edit", "mutations"]
