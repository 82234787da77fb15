"""``toolgym bench codeagent``: the codeagent family's test runs beside a plain pytest, in one run.

One task (a generated package of the given difficulty, its bugs fixed as the reference leaves
it), and per repeat, interleaved so background load hits every row alike:

* **run_tests (warm)**: the ``run_tests`` tool in an episode whose sandbox is already open: the
  edited files copied in, a fresh interpreter in the bubblewrap sandbox, the visible tests run by
  the in-repo runner (the sandbox has no pytest: :mod:`toolgym.synth.codeagent.tools`);
* **run_tests (first)**: the same call when it opens the episode's sandbox;
* **judge**: the verifier's whole path on the final workspace: close the agent's sandbox, copy
  the package, open a fresh judge sandbox, run every hidden case, compare on the host;
* **pytest visible** / **pytest hidden**: ``python -m pytest -q`` of the same visible tests, and
  of the same hidden cases written as one parametrized pytest file, in a plain subprocess outside
  any sandbox (the project's interpreter, which has pytest), with third-party plugin autoloading
  off (``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``): the plugins installed beside pytest are the
  machine's, not the tests', and loading them would flatter the ratio.

Targets (issue 14): run_tests and the judge within 1.5x of the plain pytest of the same tests.
"""

from __future__ import annotations

import functools
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from toolgym.bench.sandbox import BenchRow, _row, _timed

HIDDEN_AS_PYTEST = """import importlib, json
import pytest

CASES = json.loads({cases!r})


@pytest.mark.parametrize(("cid", "module", "function", "args", "expected"), CASES, ids=[c[0] for c in CASES])
def test_hidden(cid, module, function, args, expected):
    try:
        got = ["ok", json.loads(json.dumps(getattr(importlib.import_module(module), function)(*args)))]
    except Exception as exc:
        got = ["raise", type(exc).__name__]
    assert got == expected
"""


def bench_task(difficulty: int, seed: int = 0) -> tuple[Any, Any]:
    """A codeagent world and one task of ``difficulty`` (the first seed from ``seed`` that hosts one)."""
    from toolgym.synth import get_family
    from toolgym.synth.candidate import build_task

    fam = get_family("codeagent")
    for s in range(seed, seed + 50):
        world = fam.make_world(s, difficulty)
        draft = fam.make_task(world, difficulty, random.Random(s))
        if draft is not None:
            return world, build_task(fam, "w", f"bench-{s}", difficulty, "train", draft)
    raise RuntimeError("no codeagent task in 50 seeds")


def _write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def run_codeagent_bench(repeats: int = 10, difficulty: int = 3) -> list[BenchRow]:
    """The rows of the module docstring, ``repeats`` timed calls each (after one warm-up)."""
    from toolgym.synth.codeagent.tools import AgentContext, run_tests
    from toolgym.verifiers.hidden_tests import verify_hidden_tests

    world, task = bench_task(difficulty)
    spec = task.verifier_spec
    files = dict(world.files)  # the reference's final state: the clean package
    cases = [[c[0], f"{world.package}.{c[1]}", c[2], c[3], c[4]] for c in spec["cases"]]
    samples: dict[str, list[float]] = {k: [] for k in ("warm", "first", "judge", "visible", "hidden")}
    with tempfile.TemporaryDirectory(prefix="toolgym-bench-codeagent-") as tmp:
        root = Path(tmp)
        _write_tree(root, {**files, "hidden/test_hidden.py": HIDDEN_AS_PYTEST.format(cases=json.dumps(cases))})
        pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]

        def plain(target: str) -> None:
            env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
            done = subprocess.run([*pytest, target], cwd=root, capture_output=True, check=False, env=env)
            if done.returncode != 0:
                raise RuntimeError(f"pytest {target} failed: {done.stdout.decode()[-500:]}")

        warm = AgentContext(files, world.package)
        try:
            for i in range(repeats + 1):
                first = AgentContext(files, world.package)
                t_first = _timed(functools.partial(run_tests, first))
                t_judge = _timed(functools.partial(verify_hidden_tests, spec, "fixed", first))
                t_warm = _timed(lambda: run_tests(warm))
                t_vis = _timed(lambda: plain("tests"))
                t_hid = _timed(lambda: plain("hidden/test_hidden.py"))
                if i == 0:  # warm-up: imports, the first sandbox of the process
                    assert verify_hidden_tests(spec, "fixed", AgentContext(files, world.package)).passed
                    continue
                for k, v in zip(samples, (t_warm, t_first, t_judge, t_vis, t_hid), strict=True):
                    samples[k].append(v)
        finally:
            warm.close()
    n_cases, n_visible = len(spec["cases"]), sum(1 for p in files if p.startswith("tests/"))
    return [
        _row("run_tests (warm)", samples["warm"], f"visible tests of {n_visible} files, in the episode's open sandbox"),
        _row("run_tests (first)", samples["first"], "the same, opening the episode's sandbox"),
        _row("judge", samples["judge"], f"{n_cases} hidden cases: fresh judge sandbox, host-side compare"),
        _row("pytest visible", samples["visible"], "python -m pytest -q tests/, no sandbox"),
        _row("pytest hidden", samples["hidden"], "python -m pytest -q of the hidden cases, no sandbox"),
    ]


def targets_line(rows: list[BenchRow]) -> str:
    """run_tests and the judge against their plain pytest (target <= 1.5x)."""
    by = {r.name: r.median_ms for r in rows}
    warm = by["run_tests (warm)"] / by["pytest visible"]
    judge = by["judge"] / by["pytest hidden"]
    return (
        f"run_tests {warm:.2f}x plain pytest of the visible tests; judge {judge:.2f}x plain pytest of the hidden "
        f"tests (target <= 1.5x each; medians, noisy on a loaded machine)"
    )


__all__ = ["bench_task", "run_codeagent_bench", "targets_line"]
