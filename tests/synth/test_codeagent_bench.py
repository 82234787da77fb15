"""`bench codeagent` and `bench synth --family codeagent` run end to end (slow: real sandboxes, real pytest)."""

from __future__ import annotations

import pytest

from toolgym.bench.synth import hardness, task_labels
from toolgym.data.dataset import Dataset
from toolgym.synth.config import SynthConfig
from toolgym.synth.run import synthesize


@pytest.mark.slow
def test_bench_codeagent_times_every_row_and_states_the_ratios():
    from toolgym.bench.codeagent import run_codeagent_bench, targets_line

    rows = run_codeagent_bench(repeats=1, difficulty=1)
    assert [r.name for r in rows] == [
        "run_tests (warm)",
        "run_tests (first)",
        "judge",
        "pytest visible",
        "pytest hidden",
    ]
    assert all(r.n == 1 and r.median_ms > 0 for r in rows)
    assert "x plain pytest of the visible tests" in targets_line(rows)


@pytest.mark.slow
def test_hardness_of_codeagent_reference_calls_grow_with_the_bugs(tmp_path):
    out = tmp_path / "ca.duckdb"
    synthesize(SynthConfig(family="codeagent", count=20, difficulty=(1, 5), workers=1), out)
    rows = hardness(out, samples_per_task=3, tasks_per_difficulty=1, heuristic_tasks=0)
    calls = {r.difficulty: r.ref_calls for r in rows}
    assert calls[1] < calls[3] <= calls[5] and calls[1] < calls[5], calls  # read + edit per bug, then submit
    assert all(r.random_pass == 0.0 for r in rows)
    with Dataset(out, read_only=True) as ds:
        labels = {k for tid in ds.task_ids() for k in task_labels(ds.task(tid))}
    assert labels and labels <= {
        "comparator",
        "operator",
        "off_by_one",
        "swapped_args",
        "dropped_branch",
        "wrong_default",
    }
