"""Codeagent tasks: inject 1–3 bugs that ship, and write the issue a user would file about them.

The difficulty ladder (more modules per world come from :func:`.package.generate`):

======  ====  =============================================================================
level   bugs  where the symptom is reported
======  ====  =============================================================================
1       1     at the buggy function itself
2       1     at a caller in the same module when one fails, else at the function
3       2     at a function of another module that calls into the buggy one (further away)
4       2     as 3, plus a misleading but true detail (a correct result of a nearby function)
5       3     as 4, in a package of every module
======  ====  =============================================================================

**A bug ships only if** some hidden case fails with it alone (at least two, with different
inputs, so special-casing the reported input cannot pass) and every hidden case passes without
it (the clean package gives the expected outcomes by construction: they were computed from it).
With several bugs, each reported symptom still fails with all of them in. The check runs the
trusted template code in-process (:func:`.package.run_cases`), a few milliseconds per candidate.

The issue gives the call, what it returned (with every bug in) and what it should return; never
a test's code or a file or line. The reference undoes each mutation through ``edit_file``
(:func:`.mutate.fix_edits`), checked here by applying the edits in order.
"""

from __future__ import annotations

import random
from typing import Any

from toolgym.spec import TaskDraft
from toolgym.synth.codeagent.composites import ALL
from toolgym.synth.codeagent.mutate import Mutation, apply, fix_edits, mutations
from toolgym.synth.codeagent.package import CodeAgentWorld, run_cases
from toolgym.verifiers.hidden_tests import package_digest, same_outcome

BUGS = {1: 1, 2: 1, 3: 2, 4: 2, 5: 3}
TRIES = 60  # candidate mutations checked per task, at most
KIND_TRIES = 12  # candidate mutations of one kind checked for one bug, at most
TIMEOUT_S = 20.0


def _failing(world: CodeAgentWorld, bugs: list[Mutation]) -> dict[str, list[Any]]:
    """Hidden case id → outcome, for the cases whose outcome differs from the expected with ``bugs`` in."""
    d = world.data
    sources = dict(d["sources"])
    for mid in {b.module for b in bugs}:
        sources[mid] = apply(sources[mid], [b for b in bugs if b.module == mid])
    # Only the mutated modules and the modules importing them run changed code: the others' cases pass.
    touched = {b.module for b in bugs}
    for _ in d["order"]:  # importers of importers too (a fixpoint; the order bounds the depth)
        touched |= {m for m in d["order"] if touched & set(ALL[m].deps)}
    cases = [c for c in d["hidden"] if c[1] in touched]
    got = run_cases(sources, d["order"], cases)
    return {c[0]: got[c[0]] for c in cases if not same_outcome(got[c[0]], c[4])}


def _callers(world: CodeAgentWorld, mid: str) -> set[str]:
    """Modules of the world that import ``mid``."""
    return {m for m in world.data["order"] if mid in ALL[m].deps}


def _pick_bugs(world: CodeAgentWorld, difficulty: int, rng: random.Random) -> list[tuple[Mutation, dict[str, Any]]]:
    """Up to BUGS[difficulty] shipping mutations, each with its failing cases, in distinct functions.

    **Kind first, then a mutation of that kind.** Drawing from the pool of every mutation made
    the kinds as common as their sites: integer literals are everywhere (two ``off_by_one`` and
    often an ``operator`` per line), defaults and guards are few, so off-by-one and operator
    bugs filled most shipped tasks. Each bug now takes the next kind of a shuffled order of the
    world's kinds and tries that kind's mutations (at most :data:`KIND_TRIES`) until one ships; a
    kind that shipped goes to the back of the order (a task's bugs differ in kind when the world
    allows), one that found none is dropped. Every kind the world offers is about equally likely.
    """
    pool = [m for mid in world.data["order"] for m in mutations(mid, world.data["sources"][mid])]
    rng.shuffle(pool)
    if difficulty >= 3:  # causes in modules that others call: the symptom can be reported far away
        pool.sort(key=lambda m: not _callers(world, m.module))
    by_kind: dict[str, list[Mutation]] = {}
    for m in pool:
        by_kind.setdefault(m.kind, []).append(m)
    order = sorted(by_kind)
    rng.shuffle(order)
    chosen: list[tuple[Mutation, dict[str, Any]]] = []
    tries = 0
    while order and len(chosen) < BUGS[difficulty] and tries < TRIES:
        kind = order.pop(0)
        found = _first_shipping(world, by_kind[kind], chosen, min(KIND_TRIES, TRIES - tries))
        tries += found[1]
        if found[0] is not None:
            chosen.append(found[0])
            order.append(kind)
    return chosen


def _first_shipping(
    world: CodeAgentWorld, candidates: list[Mutation], chosen: list[tuple[Mutation, Any]], limit: int
) -> tuple[tuple[Mutation, dict[str, Any]] | None, int]:
    """The first of ``candidates`` (consumed) that ships beside ``chosen``, and how many were checked."""
    checked = 0
    while candidates and checked < limit:
        m = candidates.pop(0)
        if any(m.module == c.module and m.function == c.function for c, _ in chosen):
            continue
        checked += 1
        fails = _failing(world, [m])
        if len(fails) >= 2:  # hidden cases have distinct inputs: one special-cased input cannot pass
            return (m, fails), checked
    return None, checked


def world_case(world: CodeAgentWorld, cid: str) -> list[Any]:
    """The hidden case ``[id, module, function, args, expected]`` with id ``cid``."""
    return next(c for c in world.data["hidden"] if c[0] == cid)


def _symptom(
    world: CodeAgentWorld,
    bug: Mutation,
    fails: dict[str, Any],
    combined: dict[str, Any],
    difficulty: int,
    rng: random.Random,
) -> str | None:
    """The hidden case to report for a bug: failing alone and with every bug in, as far away as the level asks."""
    ids = sorted(cid for cid in fails if cid in combined)
    if not ids:
        return None

    def distance(cid: str) -> int:
        _, mid, fn, _, _ = world_case(world, cid)
        return 2 if mid != bug.module else 1 if fn != bug.function else 0

    want = 0 if difficulty == 1 else 1 if difficulty == 2 else 2
    best = min(abs(distance(c) - want) for c in ids)
    return rng.choice([c for c in ids if abs(distance(c) - want) == best])


def _show(outcome: list[Any], verb: str = "s") -> str:
    """An outcome as words: "returns X" or "raises T" (with ``verb=""``: "return X", "raise T")."""
    return f"raise{verb} {outcome[1]}" if outcome[0] == "raise" else f"return{verb} {outcome[1]!r}"


def _call(pkg: str, case: list[Any]) -> str:
    return f"{pkg}.{case[1]}.{case[2]}({', '.join(repr(a) for a in case[3])})"


def _red_herring(world: CodeAgentWorld, symptom: list[Any], combined: dict[str, Any], rng: random.Random) -> str | None:
    """A true, correct result of another function the symptom's module uses (misleading: it is not the bug)."""
    near = {symptom[1], *ALL[symptom[1]].deps}
    ok = [c for c in world.data["hidden"] if c[1] in near and c[2] != symptom[2] and c[0] not in combined]
    if not ok:
        return None
    c = rng.choice(ok)
    return (
        f"While digging I noticed that `{_call(world.package, c)}` {_show(c[4])}, "
        "which looks suspicious to me; it may be related."
    )


def issue_text(
    world: CodeAgentWorld, symptoms: list[list[Any]], combined: dict[str, Any], difficulty: int, rng: random.Random
) -> str:
    """The issue: one observed wrong result per bug (call, what it gave, what it should give)."""
    pkg = world.package
    parts = [
        f"Title: wrong results from {pkg}" if len(symptoms) > 1 else f"Title: `{symptoms[0][2]}` gives a wrong result"
    ]
    parts.append("I ran into this:" if len(symptoms) == 1 else f"I ran into {len(symptoms)} problems:")
    for i, case in enumerate(symptoms, 1):
        lead = f"{i}. " if len(symptoms) > 1 else ""
        parts.append(f"{lead}`{_call(pkg, case)}` {_show(combined[case[0]])}, but it should {_show(case[4], '')}.")
    if difficulty >= 4:
        herring = _red_herring(world, symptoms[0], combined, rng)
        if herring:
            parts.append(herring)
    parts.append("The docstrings describe the intended behaviour.")
    return "\n\n".join(parts)


def prompt_text(world: CodeAgentWorld, issue: str) -> str:
    """The task prompt: the repository, the issue, and what counts as done."""
    mods = ", ".join(world.data["order"])
    return (
        f"You are working in a Python repository: the package `{world.package}/` (modules {mods}) and its tests in "
        f"`tests/`. A user filed this issue:\n\n---\n{issue}\n---\n\nFix the package so that the reported behaviour is "
        "correct without changing anything else its docstrings promise. After you submit, hidden tests check the "
        "package; the files in `tests/` are not used by them. `run_tests` runs the visible tests. When you are done, "
        "call `submit` with a one-line summary of your fix."
    )


def make_task(world: CodeAgentWorld, difficulty: int, rng: random.Random) -> TaskDraft | None:
    """Propose one task (see the module docstring); None when the world cannot host one this time."""
    chosen = _pick_bugs(world, difficulty, rng)
    if len(chosen) < BUGS[difficulty]:
        return None
    bugs = [m for m, _ in chosen]
    combined = _failing(world, bugs)
    symptoms = []
    for m, fails in chosen:
        cid = _symptom(world, m, fails, combined, difficulty, rng)
        if cid is None:
            return None
        symptoms.append(world_case(world, cid))
    edits = _checked_edits(world, bugs)
    if edits is None:
        return None
    files = {
        world.module_path(mid): apply(world.data["sources"][mid], [b for b in bugs if b.module == mid])
        for mid in {b.module for b in bugs}
    }
    buggy = {**world.files, **files}
    issue = issue_text(world, symptoms, combined, difficulty, rng)
    return TaskDraft(
        prompt=prompt_text(world, issue),
        params={
            "package": world.package,
            "files": dict(sorted(files.items())),
            "edits": edits,
            "symptoms": [s[:4] for s in symptoms],
        },
        verifier_spec={
            "kind": "hidden_tests",
            "package": world.package,
            "cases": world.data["hidden"],
            "fail_to_pass": sorted(combined),
            "buggy": package_digest(buggy, world.package),
            "timeout_s": TIMEOUT_S,
        },
        tool_config={"timeout_s": TIMEOUT_S},
        meta={"bugs": [b.to_json() for b in bugs], "kinds": [b.kind for b in bugs]},
    )


def _checked_edits(world: CodeAgentWorld, bugs: list[Mutation]) -> list[dict[str, str]] | None:
    """The reference's edits, applied in order to the buggy files: each snippet unique, the end state clean."""
    paths = {mid: world.module_path(mid) for mid in world.data["order"]}
    edits = fix_edits(world.data["sources"], bugs, paths)
    if edits is None:
        return None
    current = {
        paths[mid]: apply(world.data["sources"][mid], [b for b in bugs if b.module == mid])
        for mid in {b.module for b in bugs}
    }
    for e in edits:
        if current[e["path"]].count(e["old"]) != 1:
            return None
        current[e["path"]] = current[e["path"]].replace(e["old"], e["new"])
    clean = {paths[mid]: world.data["sources"][mid] for mid in {b.module for b in bugs}}
    return edits if current == clean else None
