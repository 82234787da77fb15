"""Answer checks accept every correct form and reject padded, multi-answer and format-only ones."""

import pytest

from toolgym.errors import DuplicateRegistrationError, UnknownNameError
from toolgym.verifiers.verdict import register_verifier, verify


@pytest.mark.parametrize(
    ("spec", "good", "bad"),
    [
        (
            {"kind": "exact", "expected": "Paris"},
            ["Paris", " Paris ", "Paris\n"],
            ["Paris, France", "Paris Lyon", "", None, ["Paris"], "paris", "PARIS"],
        ),
        (
            {"kind": "exact", "expected": "Caf\u00e9"},
            ["Cafe\u0301", " Caf\u00e9\t"],
            ["Cafe", "caf\u00e9", "Caf\u00e9 x"],
        ),
        ({"kind": "exact", "expected": 1}, [1, 1.0], [True, "1", [1]]),
        ({"kind": "exact", "expected": False}, [False], [0, 0.0, None, "false"]),
        ({"kind": "exact", "expected": {"a": 1}}, [{"a": 1}], [[["a", 1]], {"a": True}]),
        (
            {"kind": "numeric", "expected": 3.5, "rel_tol": 1e-3},
            [3.5, 3.5001, 3.500001],
            [3.6, "3.5", "3.5 or 4", [3.5], True, "NaN", "inf", None, float("nan"), 10**400],
        ),
        ({"kind": "numeric", "expected": 1000, "abs_tol": 0.5}, [1000.4, 1000], [1001, "1,000", "1e3"]),
        ({"kind": "numeric", "expected": 1, "abs_tol": 0.0, "integer": True}, [1], [True, 1.0, "1", 2]),
        ({"kind": "numeric", "expected": 0, "abs_tol": 0.0, "integer": True}, [0], [False, 0.0, None]),
        (
            {"kind": "set", "expected": ["a", "b"]},
            [["b", "a"], ["a", "b", "a"], [" a", "b "]],
            [["a"], ["a", "b", "c"], "a,b", [], ["A", "b"]],
        ),
        ({"kind": "set", "expected": [1, 0]}, [[0, 1], [1.0, 0]], [[True, False], [True, 0], ["1", "0"]]),
        ({"kind": "multiset", "expected": ["a", "a", "b"]}, [["a", "b", "a"]], [["a", "b"], ["a", "a", "b", "b"]]),
        ({"kind": "multiset", "expected": [1, 1]}, [[1, 1.0]], [[True, 1], [True, True]]),
        (
            {"kind": "json", "expected": {"n": 2, "xs": [1, 2]}, "unordered": ["xs"]},
            [{"n": 2.0000001, "xs": [2, 1]}],
            [
                {"n": 2, "xs": [1, 2], "extra": 1},
                {"n": 2, "xs": [1]},
                {"n": 3, "xs": [1, 2]},
                [2, [1, 2]],
                {"n": "2", "xs": [1, 2]},
                {"n": 2, "xs": [True, 2]},
            ],
        ),
        (
            {"kind": "json", "expected": {"n": 1, "ok": True}},
            [{"n": 1, "ok": True}],
            [{"n": True, "ok": True}, {"n": 1, "ok": 1}],
        ),
        (
            {"kind": "json", "expected": [{"k": "v"}]},
            [[{"k": "v"}], [{"k": " v"}]],
            [[{"k": "v"}, {"k": "v"}], [], {"k": "v"}, [{"k": "V"}]],
        ),
    ],
)
def test_accepts_every_correct_form_and_nothing_else(spec, good, bad):
    for answer in good:
        v = verify(spec, answer)
        assert v.passed and v.score == 1.0, (answer, v)
    for answer in bad:
        v = verify(spec, answer)
        assert not v.passed and v.score == 0.0 and v.reason, (answer, v)


def test_string_misses_name_the_closest_expected_string():
    assert "did you mean 'Paris'" in verify({"kind": "exact", "expected": "Paris"}, "paris").reason
    assert "did you mean 'Bob'" in verify({"kind": "set", "expected": ["Ann", "Bob"]}, ["Ann", "bob"]).reason


def test_all_requires_every_check():
    spec = {"kind": "all", "checks": [{"kind": "numeric", "expected": 1}, {"kind": "exact", "expected": 1}]}
    assert verify(spec, 1).passed and not verify(spec, 2).passed


def test_registry_names_unknown_kinds_and_refuses_duplicates():
    with pytest.raises(UnknownNameError, match="closest"):
        verify({"kind": "numerc", "expected": 1}, 1)
    with pytest.raises(DuplicateRegistrationError):
        register_verifier("exact")(lambda s, a, st: None)


def test_json_object_keys_follow_the_name_rule():
    """Keys are names (a breakdown's categories): NFC and surrounding whitespace free, case matters."""
    spec = {"kind": "json", "expected": {"on leave": 2, "Caf\u00e9": 1}}
    assert verify(spec, {" on leave ": 2, "Cafe\u0301": 1}, None).passed
    assert not verify(spec, {"On leave": 2, "Caf\u00e9": 1}, None).passed
    both = verify(spec, {"on leave": 2, " on leave": 2, "Caf\u00e9": 1}, None)
    assert not both.passed and "same name" in both.reason
