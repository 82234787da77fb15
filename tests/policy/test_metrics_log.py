"""``results.metrics_log``: what a resumed run keeps of its metrics log, and what it refuses."""

from __future__ import annotations

import json

import pytest

from toolgym.errors import ConfigError
from toolgym.policy.results import metrics_log


def _steps(path):
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def test_a_torn_last_line_is_cut_and_later_records_dropped(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_bytes(b'{"step": 1}\n{"step": 2}\n{"step": 3}\n{"st')
    metrics_log(log, 2, None)({"step": 3, "loss": 1.0})
    assert _steps(log) == [1, 2, 3]


def test_a_missing_log_starts_empty(tmp_path):
    log = tmp_path / "metrics.jsonl"
    metrics_log(log, 0, None)({"step": 1, "loss": 1.0})
    assert _steps(log) == [1]


@pytest.mark.parametrize(
    "line",
    [b"xx", b"", b"[1]", b'{"val_loss": 1.0}', b'{"step": 1.0}', b'{"step": true}', b'{"step": "1"}'],
)
def test_a_bad_line_is_refused_and_the_log_left_as_it_was(tmp_path, line):
    """A record without an integer step used to be dropped silently from the rewritten log."""
    log = tmp_path / "metrics.jsonl"
    before = b'{"step": 1}\n' + line + b'\n{"step": 2}\n'
    log.write_bytes(before)
    with pytest.raises(ConfigError, match="line 2 is not a metrics record"):
        metrics_log(log, 2, None)
    assert log.read_bytes() == before
