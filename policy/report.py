"""An eval's report: ``report.md`` with the pass@k / pass^k table and three PNG plots.

Plots (matplotlib, Agg backend, no display needed):

* ``pass_at_k.png``: pass@k (95% interval as error bars) against difficulty, one panel per family,
  one line per k;
* ``reward_by_family.png``: mean reward per family with its 95% interval over episodes;
* ``episode_length.png``: histogram of episode lengths (turns), one series per family.

matplotlib is a core dependency (the SFT loss plot needs it too), imported lazily so an RL loop
importing the env never loads it; should it be missing, the report is written without plots and
says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from toolgym.policy.evaluate import Row
from toolgym.policy.results import REPORT
from toolgym.policy.runner import EpisodeRecord

PLOTS = ("pass_at_k.png", "reward_by_family.png", "episode_length.png")


def _cell(mean: float, half: float) -> str:
    return f"{mean:.3f} ± {half:.3f}" if half == half else f"{mean:.3f}"


def table_markdown(rows: Sequence[Row], ks: Sequence[int]) -> str:
    """The pass@k / pass^k table as Markdown (one row per family × difficulty, family totals, overall)."""
    head = ["family", "difficulty", "tasks", *(f"pass@{k}" for k in ks), *(f"pass^{k}" for k in ks), "mean reward"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.family, r.difficulty, str(r.tasks)]
        cells += [_cell(*r.pass_at[k]) for k in ks] + [_cell(*r.pass_hat[k]) for k in ks]
        lines.append("| " + " | ".join(cells + [f"{r.mean_reward:.3f}"]) + " |")
    return "\n".join(lines)


def write_report(
    out: Path, summary: dict[str, Any], records: Sequence[EpisodeRecord], rows: Sequence[Row], ks: Sequence[int]
) -> list[Path]:
    """Write ``out/report.md`` and its plots.

    Args:
        out: The eval's directory.
        summary: The eval's ``summary.json`` content (policy, settings, versions).
        records: Every episode of the eval.
        rows: :func:`~toolgym.policy.evaluate.summarize` of the records.
        ks: The k values of the table.

    Returns:
        The files written (``report.md`` and each PNG).
    """
    written = []
    try:
        written = _plots(out, records, rows, ks)
        plots_md = "\n".join(f"![{p.stem.replace('_', ' ')}]({p.name})" for p in written)
    except ImportError:
        plots_md = "_No plots: matplotlib is not installed (`pip install matplotlib`)._"
    policy = summary.get("policy", {})
    tokens = [r.tokens for r in records if r.tokens is not None]
    facts = [
        f"- policy: `{policy.get('name')}` {policy.get('options', {})}",
        f"- toolgym {summary.get('toolgym')}; families: {summary.get('families')}",
        f"- settings: {summary.get('settings')}",
        f"- episodes: {len(records)}; mean turns: {_mean([r.turns for r in records]):.2f}; "
        f"mean tool calls: {_mean([r.tool_calls for r in records]):.2f}"
        + (f"; mean tokens: {_mean(tokens):.1f}" if tokens else "; tokens: not reported by the policy"),
    ]
    text = "\n\n".join(["# Eval report", "\n".join(facts), table_markdown(rows, ks), plots_md]) + "\n"
    (out / REPORT).write_text(text, encoding="utf-8")
    return [out / REPORT, *written]


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _ci(xs: Sequence[float]) -> float:
    if len(xs) < 2:
        return 0.0
    m = _mean(xs)
    return 1.96 * math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs))


def _plots(out: Path, records: Sequence[EpisodeRecord], rows: Sequence[Row], ks: Sequence[int]) -> list[Path]:
    """Draw the three PNGs; raises ImportError without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = sorted({r.family for r in records})
    paths = [out / name for name in PLOTS]
    fig, axes = plt.subplots(1, max(1, len(families)), figsize=(4.5 * max(1, len(families)), 3.5), squeeze=False)
    for ax, fam in zip(axes[0], families, strict=False):
        cells = sorted((int(r.difficulty), r) for r in rows if r.family == fam and r.difficulty != "all")
        for k in ks:
            ys = [r.pass_at[k] for _, r in cells]
            ax.errorbar(
                [d for d, _ in cells],
                [m for m, _ in ys],
                yerr=[0 if h != h else h for _, h in ys],
                marker="o",
                capsize=3,
                label=f"pass@{k}",
            )
        ax.set(title=fam, xlabel="difficulty", ylabel="pass@k", ylim=(-0.05, 1.05), xticks=[d for d, _ in cells])
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(paths[0], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(3.0, 1.2 * len(families) + 1), 3.5))
    rewards = [[r.reward for r in records if r.family == f] for f in families]
    ax.bar(families, [_mean(x) for x in rewards], yerr=[_ci(x) for x in rewards], capsize=4)
    ax.set(ylabel="mean reward", ylim=(0, 1.05), title="reward by family")
    fig.tight_layout()
    fig.savefig(paths[1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    turns = [[r.turns for r in records if r.family == f] for f in families]
    top = max((t for ts in turns for t in ts), default=1)
    ax.hist(turns, bins=range(1, top + 2), label=families, align="left")
    ax.set(xlabel="turns", ylabel="episodes", title="episode length")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(paths[2], dpi=100)
    plt.close(fig)
    return paths
