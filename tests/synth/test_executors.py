"""Executors (``toolgym.EXECUTORS``): every one is the same ordered map as the serial loop, and none leaks a worker.

The rows a run writes must not depend on the executor (it is left out of the resume key), so
every registered executor, at one and at two workers, must yield exactly the world results of
calling :func:`~toolgym.synth.candidate.synthesize_world` in index order, resumed start included.
Stopping early (``break``, an exception in the consumer) and leaving the ``with`` block must
leave no live child process, without waiting for the worlds that were queued but not started.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from contextlib import nullcontext
from itertools import islice

import pytest

import toolgym
from toolgym.data.dataset import Dataset
from toolgym.errors import ExecutorError, UnknownNameError
from toolgym.synth.candidate import synthesize_world
from toolgym.synth.config import EXECUTION_ONLY, SynthConfig
from toolgym.synth.executors import LocalExecutor, SerialExecutor
from toolgym.synth.run import resume_point, synthesize

SMALL = SynthConfig(family="trip", seed=5, difficulty=(1, 2), tasks_per_world=2, random_tries=1, bluff_tries=1)


def slow_pid(config: SynthConfig, w: int, skip: int) -> tuple[int, int, int]:
    """A world function for the lifecycle tests: its worker's pid; worlds after the first take 4 s."""
    if w > 0:
        time.sleep(4)
    return w, skip, os.getpid()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("name", list(toolgym.EXECUTORS))
def test_every_executor_yields_the_serial_results_in_order(name, workers, request):
    if name == "ray":
        request.getfixturevalue("ray_runtime")  # one shared runtime (skips without the ray extra)
    start_w, skip, n = 3, 1, 5
    expected = [synthesize_world(SMALL, w, skip if w == start_w else 0) for w in range(start_w, start_w + n)]
    assert any(o.task is not None for r in expected for o in r.outcomes), "a test that ships nothing proves little"
    with toolgym.EXECUTORS.get(name)(workers) as ex:
        got = list(islice(ex.map_ordered(synthesize_world, SMALL, start_w, skip), n))
    assert [r.index for r in got] == list(range(start_w, start_w + n))
    assert got == expected
    assert got[0].outcomes[0].task_index == skip


def test_an_unknown_executor_is_named_with_the_known_ones(tmp_path):
    known = ", ".join(toolgym.EXECUTORS)
    assert list(toolgym.EXECUTORS) == ["serial", "local", "ray"]
    with pytest.raises(UnknownNameError, match=f"unknown executor 'dask'.*known: {known}"):
        toolgym.EXECUTORS.get("dask")
    out = tmp_path / "x.duckdb"
    with pytest.raises(UnknownNameError, match="did you mean local"):
        synthesize(SMALL.model_copy(update={"count": 1, "executor": "locale"}), out)
    assert not out.exists(), "the executor is resolved before the dataset file is created"


@pytest.mark.parametrize("stop", ["break", "raise"])
def test_stopping_early_leaves_no_live_child(stop):
    ex = LocalExecutor(2)
    t0 = time.perf_counter()
    pids = set()
    with pytest.raises(RuntimeError, match="consumer") if stop == "raise" else nullcontext():
        with ex:
            pids = {p.pid for p in mp.active_children()}
            assert len(pids) == 2  # forked on enter
            for w, _skip, pid in ex.map_ordered(slow_pid, SMALL, 0, 0):  # worlds 1.. are in flight, sleeping
                assert w == 0 and pid in pids
                if stop == "raise":
                    raise RuntimeError("consumer failed")
                break
    # Running worlds finish (2 workers, at most 3 taken: ~8 s); the other queued ones are cancelled,
    # where waiting for the whole window (8 worlds of 4 s on 2 workers) would take ~16 s.
    assert time.perf_counter() - t0 < 13, "leaving the block waited for queued worlds instead of cancelling them"
    assert mp.active_children() == []
    assert not any(alive(p) for p in pids)


def test_the_local_pool_is_forked_on_enter_only():
    ex = LocalExecutor(2)
    assert mp.active_children() == []  # building it starts nothing
    with pytest.raises(RuntimeError, match="with executor"):
        next(ex.map_ordered(slow_pid, SMALL, 0, 0))
    with LocalExecutor(1) as one:  # one worker is the serial path: no fork
        assert mp.active_children() == []
        assert next(one.map_ordered(slow_pid, SMALL, 0, 0)) == (0, 0, os.getpid())
    with pytest.raises(ValueError, match="workers"):
        LocalExecutor(0)
    assert SerialExecutor(8).workers == 1


def test_the_executor_is_not_part_of_the_resume_key(tmp_path):
    assert EXECUTION_ONLY == {"count", "workers", "executor"}
    assert SMALL.resume_key() == SMALL.model_copy(update={"executor": "serial", "workers": 3}).resume_key()
    assert "executor" not in SMALL.resume_key() and "seed" in SMALL.resume_key()
    a, b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    synthesize(SMALL.model_copy(update={"count": 3, "executor": "serial", "workers": 1}), a)
    stats = synthesize(SMALL.model_copy(update={"count": 7, "executor": "local", "workers": 2}), a)
    assert stats.existing == 3 and stats.shipped == 4
    synthesize(SMALL.model_copy(update={"count": 7, "executor": "local", "workers": 2}), b)
    with Dataset(a, read_only=True) as da, Dataset(b, read_only=True) as db:
        assert da.task_ids() == db.task_ids()
        assert [da.task(t) for t in da.task_ids()] == [db.task(t) for t in db.task_ids()]


@pytest.mark.parametrize("workers", [2, 3, 64])
def test_serial_with_several_explicit_workers_is_refused(workers):
    """The serial executor runs one worker: an explicit ``workers`` > 1 is an error, not ignored."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=f"the serial executor runs one worker, got workers={workers}"):
        SynthConfig(family="trip", executor="serial", workers=workers)
    assert SynthConfig(family="trip", executor="serial", workers=1).workers == 1
    assert SynthConfig(family="trip", executor="local", workers=workers).workers == workers
    # the default (every core) is not "given": serial stays valid on any machine, and runs one worker
    default = SynthConfig(family="trip", executor="serial")
    assert "workers" not in default.model_fields_set and default.workers == (os.cpu_count() or 1)
    assert toolgym.EXECUTORS.get("serial")(default.workers).workers == 1


def test_resume_point_is_the_first_unwritten_candidate():
    assert resume_point(None, 4) == (0, 0)
    assert resume_point((2, 1), 4) == (2, 2)
    assert resume_point((2, 3), 4) == (3, 0)
    assert resume_point((0, 0), 1) == (1, 0)


def killed_at_one(config: SynthConfig, w: int, skip: int) -> int:
    """A world function whose world 1 dies as an out-of-memory kill would (SIGKILL)."""
    if w == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return w


def test_a_killed_worker_is_an_error_not_a_hang():
    with pytest.raises(ExecutorError, match="worker died.*rerun the same command to resume"):
        with LocalExecutor(2) as ex:
            got = []
            for w in ex.map_ordered(killed_at_one, SMALL, 0, 0):
                got.append(w)
    assert got == [0]  # the worlds before the dead one were delivered, in order
    assert mp.active_children() == []


def test_synthesis_collects_garbage_less_often_and_restores_the_thresholds():
    """Worlds hold ~10^5 long-lived rows that full collections walk again: synthesis raises the thresholds."""
    import gc

    from toolgym.synth.executors import SYNTH_GC_THRESHOLDS, SerialExecutor

    before = gc.get_threshold()
    with SerialExecutor():
        assert gc.get_threshold() == SYNTH_GC_THRESHOLDS
    assert gc.get_threshold() == before
