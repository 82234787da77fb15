"""Answer checks accept every correct form and reject padded, multi-answer and format-only ones."""

import pytest

from toolgym.errors import DuplicateRegistrationError, UnknownNameError
from toolgym.verifiers.verdict import register_verifier, verify


@pytest.mark.parametrize(
    ("spec", "good", "bad"),
    [
        (
            {"kind": "exact", "expected": "Paris"},
            ["Paris", " paris ", "PARIS"],
            ["Paris, France", "Paris Lyon", "", None, ["Paris"]],
        ),
        ({"kind": "exact", "expected": "Paris", "case_sensitive": True}, ["Paris"], ["paris"]),
        (
            {"kind": "numeric", "expected": 3.5, "rel_tol": 1e-3},
            [3.5, "3.5", "3.5001", 3.500001],
            [3.6, "3.5 or 4", [3.5], True, "NaN", "inf", None],
        ),
        ({"kind": "numeric", "expected": 1000, "abs_tol": 0.5}, ["1,000", 1000.4, "1e3"], [1001]),
        (
            {"kind": "set", "expected": ["a", "b"]},
            [["b", "a"], ["a", "b", "a"], ["A", "b"]],
            [["a"], ["a", "b", "c"], "a,b", []],
        ),
        ({"kind": "multiset", "expected": ["a", "a", "b"]}, [["a", "b", "a"]], [["a", "b"], ["a", "a", "b", "b"]]),
        (
            {"kind": "json", "expected": {"n": 2, "xs": [1, 2]}, "unordered": ["xs"]},
            [{"n": 2.0000001, "xs": [2, 1]}],
            [{"n": 2, "xs": [1, 2], "extra": 1}, {"n": 2, "xs": [1]}, {"n": 3, "xs": [1, 2]}, [2, [1, 2]]],
        ),
        ({"kind": "json", "expected": [{"k": "v"}]}, [[{"k": "V"}]], [[{"k": "v"}, {"k": "v"}], [], {"k": "v"}]),
    ],
)
def test_accepts_every_correct_form_and_nothing_else(spec, good, bad):
    for answer in good:
        v = verify(spec, answer)
        assert v.passed and v.score == 1.0, (answer, v)
    for answer in bad:
        v = verify(spec, answer)
        assert not v.passed and v.score == 0.0 and v.reason, (answer, v)


def test_all_requires_every_check():
    spec = {"kind": "all", "checks": [{"kind": "numeric", "expected": 1}, {"kind": "exact", "expected": 1}]}
    assert verify(spec, 1).passed and not verify(spec, 2).passed


def test_registry_names_unknown_kinds_and_refuses_duplicates():
    with pytest.raises(UnknownNameError, match="closest"):
        verify({"kind": "numerc", "expected": 1}, 1)
    with pytest.raises(DuplicateRegistrationError):
        register_verifier("exact")(lambda s, a, st: None)
