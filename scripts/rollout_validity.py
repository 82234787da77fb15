"""Share of a model eval's actions that parse into valid calls (``results.jsonl`` of ``toolgym eval``).

Usage: ``python scripts/rollout_validity.py RUN/eval-t1/results.jsonl DATASET``. An action is the text
from ``<|assistant|>`` to its ``<|end|>``; it is valid when it parses without errors, is closed by
``<|end|>``, makes at least one call, and every call validates against the family's toolset (the
same rule as ``toolgym train sft``'s ``val_action_valid``, here on the policy's own rollouts).
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

import toolgym
from toolgym.data.dataset import Dataset
from toolgym.envs import markup
from toolgym.envs.tools import Toolset


def main(path: str, dataset: str) -> None:
    """Print the valid share of actions, the reasons episodes ended, and the median turns."""
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    with Dataset(Path(dataset), read_only=True) as ds:
        tasks = {r["task_id"]: ds.task(r["task_id"]) for r in rows}
    valid = total = 0
    for r in rows:
        task = tasks[r["task_id"]]
        ts = Toolset(toolgym.family(task.family).tools(task.tool_config))
        for chunk in r["text"].split(markup.ASSISTANT)[1:]:
            action = chunk.split(markup.END)[0] + markup.END if markup.END in chunk else chunk
            got = markup.parse_action(action)
            ok = got.ended and not got.errors and bool(got.tool_calls)
            valid += ok and all(not isinstance(ts.validate(c.name, c.arguments), str) for c in got.tool_calls)
            total += 1
    turns = sorted(r["turns"] for r in rows)
    share, median = valid / max(1, total), turns[len(turns) // 2]
    print(f"{len(rows)} episodes, {total} actions, {share:.1%} valid; median turns {median}")
    print("episode ends:", dict(collections.Counter(r["reason"] for r in rows).most_common()))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
