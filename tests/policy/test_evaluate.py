"""pass@k is unbiased (it equals the exact probability over all k-subsets); pass^k likewise."""

import itertools
import math

import pytest

from toolgym.errors import UnknownNameError
from toolgym.policy.evaluate import TaskResult, evaluate, pass_at_k, pass_hat_k, scripted_policy, summarize


@pytest.mark.parametrize(("n", "c"), [(5, 0), (5, 1), (5, 3), (6, 6), (8, 2)])
def test_estimators_match_subset_enumeration(n, c):
    outcomes = [1] * c + [0] * (n - c)
    for k in range(1, n + 1):
        subsets = list(itertools.combinations(outcomes, k))
        assert math.isclose(pass_at_k(n, c, k), sum(any(s) for s in subsets) / len(subsets))
        assert math.isclose(pass_hat_k(n, c, k), sum(all(s) for s in subsets) / len(subsets))


def test_invalid_arguments_raise():
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)
    with pytest.raises(UnknownNameError, match="did you mean reference"):
        scripted_policy("referenc")


def test_summary_groups_by_family_and_difficulty():
    rs = [
        TaskResult("a", "trip", 1, [1, 0, 0, 0]),
        TaskResult("b", "trip", 2, [0, 0, 0, 0]),
        TaskResult("c", "code", 1, [1, 1, 1, 1]),
    ]
    rows = {(r.family, r.difficulty): r for r in summarize(rs, [1, 2])}
    assert rows[("trip", "1")].pass_at[1][0] == 0.25 and rows[("trip", "1")].pass_at[2][0] == 0.5
    assert rows[("trip", "all")].tasks == 2 and rows[("all", "all")].tasks == 3
    assert rows[("code", "1")].pass_hat[2][0] == 1.0


@pytest.mark.parametrize(("samples", "ks", "bad"), [([4, 4], [1, 5], 5), ([4, 2], [1, 3], 3), ([3], [0, 2], 0)])
def test_summary_refuses_a_k_out_of_range_naming_k_and_n(samples, ks, bad):
    """A k above n (the fewest samples of any task) or below 1 is an error, not a silently missing column."""
    rs = [TaskResult(f"t{i}", "trip", 1, [1.0] * m) for i, m in enumerate(samples)]
    with pytest.raises(ValueError, match=rf"the fewest here is n={min(samples)}\), got k={bad}$"):
        summarize(rs, ks)
    ok = [k for k in ks if 1 <= k <= min(samples)]
    assert all(set(row.pass_at) == set(ok) == set(row.pass_hat) for row in summarize(rs, ok))
    assert summarize([], ks) == []  # nothing to summarize: no n to compare with


def test_scripted_policies_on_real_tasks(trip_dataset):
    from toolgym.data.dataset import Dataset
    from toolgym.synth import get_family

    with Dataset(trip_dataset, read_only=True) as ds:
        items = [(ds.task(t), None) for t in ds.task_ids()[:4]]
        items = [(t, get_family("trip").load_world(ds.world_data(t.world_id))) for t, _ in items]
    for name, want in (("reference", 1.0), ("null", 0.0), ("random", 0.0), ("bluff", 0.0)):
        results = evaluate(items, scripted_policy(name), samples=2)
        assert all(r.rewards == [want, want] for r in results), name
