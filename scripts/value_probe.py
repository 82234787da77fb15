"""Teacher-forced NLL of the first call's argument value, its first token apart from the rest (issue 12).

Usage: ``python scripts/value_probe.py CHECKPOINT DATASET [SPLIT] [EPISODES]`` (defaults: val, 60).

For each reference episode of the split whose first action's first argument is a string copied
from the prompt (``"whose name is Garden Queen Studio"`` → ``{"name":"Garden Queen Studio"}``),
the model reads ``<|bos|>`` + the prompt + the action up to the value, then the value's tokens;
the script prints the mean and median NLL (nats) of the value's first token and of the later ones.
Induction carries the later tokens once the first is right; the first needs the lookup from the
argument's key to the words after its cue in the question. Measured on ``bench learn``'s SFT
checkpoint (2026-12-01): first 5.23 nats (median 4.83), later 2.21 (median 0.49); with the
space-free pre-tokenizer (``tokenizer.PRE_TOKENIZE``) after 600 SFT steps: first 5.75 (median
5.81), later 2.16 (median 0.72).
"""

from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path

import torch

from toolgym.data.dataset import Dataset
from toolgym.policy.checkpoint import load_checkpoint

VALUE = re.compile(r'"arguments":\{"\w+":"([^"]+)"')
MAX_TOKENS = 2048  # bench learn's SFT row length: longer prompts are skipped


def value_nll(
    checkpoint: Path, dataset: Path, split: str = "val", episodes: int = 60
) -> tuple[list[float], list[float]]:
    """(NLL of each value's first token, NLL of every later value token) over up to ``episodes`` episodes."""
    ck = load_checkpoint(checkpoint)
    model, tok = ck.model.eval(), ck.tokenizer
    first: list[float] = []
    rest: list[float] = []
    with Dataset(dataset, read_only=True) as ds:
        for task_id in ds.task_ids(split=split):
            pieces = ds.trajectory(task_id).pieces()
            m = VALUE.search(pieces[1])
            if not m or m.group(1) not in pieces[0]:
                continue
            head = [tok.bos_id, *tok.encode(pieces[0]), *tok.encode(pieces[1][: m.start(1)])]
            ids = head + tok.encode(m.group(1))
            if len(ids) > MAX_TOKENS:
                continue
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([ids[:-1]])).logits[0].double(), -1)
            nll = [-logp[i - 1, ids[i]].item() for i in range(len(head), len(ids))]
            first.append(nll[0])
            rest += nll[1:]
            if len(first) >= episodes:
                break
    return first, rest


def main(argv: list[str]) -> None:
    """Print the probe for ``argv`` (see the module docstring)."""
    if len(argv) < 3:
        raise SystemExit(__doc__)
    split = argv[3] if len(argv) > 3 else "val"
    episodes = int(argv[4]) if len(argv) > 4 else 60
    first, rest = value_nll(Path(argv[1]), Path(argv[2]), split, episodes)
    if not first:
        raise SystemExit(f"no {split} episode copies its first argument value from the prompt")
    print(
        f"{len(first)} {split} first calls; value tokens: first {statistics.mean(first):.2f} nats "
        f"(median {statistics.median(first):.2f}), later {statistics.mean(rest or [0.0]):.2f} "
        f"(median {statistics.median(rest or [0.0]):.2f}, n={len(rest)})"
    )


if __name__ == "__main__":
    main(sys.argv)
