"""The report of ``toolgym bench learn``: report.json, report.md and learning_curve.png.

Written from ``learn.json`` and the stages' metrics files after every run, finished or not, so a
run stopped with ``--until`` (or by an error) still says what it has. The targets of issue 12 are
checked on the held-out worlds: SFT pass@1 ≥ 30%, and GRPO ≥ SFT + 10 points.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from toolgym.bench.learn_eval import GROUPS

SFT_TARGET, GRPO_GAIN = 0.30, 0.10
CHECKPOINTS = ("sft", "grpo")
REPORT_JSON, REPORT_MD, CURVE, ABLATION_CURVES = "report.json", "report.md", "learning_curve.png", "ablations.png"
#: GRPO metrics compared across the ablations: the last step's and the run's mean.
ABLATION_METRICS = ("reward", "kl", "entropy", "routing_agreement", "masked_frac", "clip_frac")


def _pass1(state: dict[str, Any], stage: str, group: str) -> tuple[float, float] | None:
    """(pass@1, 95% half-width) of an eval stage's group, None when the stage has not run."""
    done = state["stages"].get(stage)
    if done is None or group not in done["result"]:
        return None
    return _pair(done["result"][group]["pass@1"])


def _pair(value: list[Any]) -> tuple[float, float]:
    """A JSON [mean, half-width] pair as floats (a null half-width, one task: NaN)."""
    mean, half = value
    return float(mean), float("nan") if half is None else float(half)


def _grpo_runs(out: Path, state: dict[str, Any]) -> list[tuple[str, str, Path]]:
    """(label, eval stage, run folder) of the full GRPO run, then of each ablation in the state."""
    runs = [("all on", "eval_grpo", out / "grpo")]
    return runs + [(f"no {n[3:]}", n, out / "ablations" / n[3:]) for n in state["stages"] if n.startswith("no_")]


def build_report(state: dict[str, Any]) -> dict[str, Any]:
    """The report's JSON: profile, stage seconds and results (without per-task rewards), pass@1, targets."""
    stages = {}
    for name, done in state["stages"].items():
        result = done["result"]
        if name.startswith("eval_"):
            result = _without_rewards(result)
        elif name.startswith("no_"):
            result = {**result, "eval": _without_rewards(result["eval"])}
        stages[name] = {"seconds": done["seconds"], "result": result}
    groups = list(GROUPS)
    for ck in CHECKPOINTS:
        groups += [g for g in state["stages"].get(f"eval_{ck}", {}).get("result", {}) if g not in groups]
    pass1 = {f"{ck}/{g}": _pass1(state, f"eval_{ck}", g) for ck in CHECKPOINTS for g in groups}  # None: not run
    sft, grpo = pass1["sft/heldout_worlds"], pass1["grpo/heldout_worlds"]
    targets = {
        "sft_pass1_ge_30pct": None if sft is None else sft[0] >= SFT_TARGET,
        "grpo_ge_sft_plus_10pts": None if sft is None or grpo is None else grpo[0] >= sft[0] + GRPO_GAIN,
    }
    return {
        "profile": state["config"].get("profile"),
        "groups": groups,
        "stages": stages,
        "total_seconds": sum(d["seconds"] for d in state["stages"].values()),
        "pass@1": pass1,
        "targets": targets,
        "config": state["config"],
    }


def _without_rewards(groups: dict[str, Any]) -> dict[str, Any]:
    return {g: {k: v for k, v in r.items() if k != "rewards"} for g, r in groups.items()}


def ablation_rows(out: Path, state: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per GRPO run, the full one first (when run), then each finished ablation.

    A row: ``run`` ("all on" or "no <switch>"), held-out pass@1 per group, and per metric of
    :data:`ABLATION_METRICS` the mean over the run's steps (None where no step logged it).
    """
    rows = []
    for label, stage, folder in _grpo_runs(out, state):
        done = state["stages"].get(stage)
        if done is None:
            continue
        groups = done["result"] if stage == "eval_grpo" else done["result"]["eval"]
        records = _records(folder / "metrics.jsonl")
        row: dict[str, Any] = {"run": label, "steps": len(records)}
        row |= {f"pass@1 {g}": groups[g]["pass@1"] for g in GROUPS if g in groups}
        for key in ABLATION_METRICS:
            values = [r[key] for r in records if isinstance(r.get(key), int | float)]
            row[f"mean {key}"] = sum(values) / len(values) if values else None
        rows.append(row)
    return rows


def pass1_cell(value: tuple[float, float] | None) -> str:
    """``mean ± half-width`` (``–``: not run; no interval over one task)."""
    if value is None:
        return "–"
    mean, half = value
    return f"{mean:.3f}" + ("" if math.isnan(half) else f" ± {half:.3f}")


def report_markdown(report: dict[str, Any]) -> str:
    """report.md: stage times, pass@1 with 95% intervals, and the targets."""
    lines = [
        f"# toolgym bench learn (profile {report['profile']})",
        "",
        "| stage | seconds | result |",
        "|---|---|---|",
    ]
    for name, done in report["stages"].items():
        result = done["result"]
        text = ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items() if not isinstance(v, dict)
        )
        lines.append(f"| {name} | {done['seconds']:.0f} | {text or 'see below'} |")
    lines += [f"| total | {report['total_seconds']:.0f} | |", ""]
    probe = report["stages"].get("lm", {}).get("result", {}).get("copy_probe")
    if probe:  # policy.induction.copy_gain: a model that copies predicts the second copy far better
        cells = [f"{k.replace('_', ' ')}: {v['first_nll']:.2f} → {v['second_nll']:.2f}" for k, v in probe.items()]
        lines += ["Repeat probe (nats/token, first → second copy of a repeated window): " + "; ".join(cells), ""]
    lookup = report["stages"].get("lm", {}).get("result", {}).get("lookup_probe")
    if lookup:  # policy.lookup.first_value_nll: the first token of each value a call copies from the request
        lines += [
            f"Lookup probe (nats, first token of a value copied from the request into a call): mean "
            f"{lookup['first_value_nll']:.2f}, median {lookup['first_value_nll_median']:.2f}",
            "",
        ]
    lines += ["pass@1 (95% interval over tasks) on the test split (other families: on the fly, difficulty 1):", ""]
    groups = report["groups"]
    lines += ["| checkpoint | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
    for ck in CHECKPOINTS:
        lines.append(f"| {ck} | " + " | ".join(pass1_cell(report["pass@1"][f"{ck}/{g}"]) for g in groups) + " |")
    t = report["targets"]
    lines += ["", f"- SFT pass@1 ≥ {SFT_TARGET:.0%} on held-out worlds: {_verdict(t['sft_pass1_ge_30pct'])}"]
    lines += [
        f"- GRPO ≥ SFT + {GRPO_GAIN * 100:.0f} points on held-out worlds: {_verdict(t['grpo_ge_sft_plus_10pts'])}"
    ]
    lines += ["", f"![learning curve]({CURVE})", ""]
    rows = report.get("ablations") or []
    if len(rows) > 1:
        keys = [k for k in rows[0] if k != "run"]
        lines += ["Ablations (GRPO from the same SFT checkpoint, same seed and budget, one stabilizer off):", ""]
        lines += ["| run | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        for row in rows:
            cells = [_pass1_of(row.get(k)) if k.startswith("pass@1") else _num(row.get(k)) for k in keys]
            lines.append(f"| {row['run']} | " + " | ".join(cells) + " |")
        lines += ["", f"![ablations]({ABLATION_CURVES})", ""]
    return "\n".join(lines)


def _pass1_of(value: list[float | None] | None) -> str:
    """A JSON [mean, half-width] pair (half-width null: one task) as a cell; ``–`` when absent."""
    return "–" if value is None else pass1_cell(_pair(value))


def _num(value: Any) -> str:
    return "–" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _verdict(value: bool | None) -> str:
    return "not measured (stage not run)" if value is None else ("met" if value else "not met")


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_curve(out: Path, report: dict[str, Any], png: Path) -> None:
    """Three panels: LM then SFT loss by optimizer step, GRPO reward and pass rate by step, pass@1 ± 95%."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_rl, ax_eval) = plt.subplots(1, 3, figsize=(14, 4))
    lm, sft = _records(out / "lm" / "metrics.jsonl"), _records(out / "sft" / "metrics.jsonl")
    offset = lm[-1]["step"] if lm else 0
    lm, sft = [r for r in lm if "loss" in r], [r for r in sft if "loss" in r]  # not the copy rows' steps
    ax_loss.plot([r["step"] for r in lm], [r["loss"] for r in lm], label="LM train loss")
    ax_loss.plot([offset + r["step"] for r in sft], [r["loss"] for r in sft], label="SFT train loss (actions)")
    val = [(offset + r["step"], r["val_loss"]) for r in sft if "val_loss" in r]
    if val:
        ax_loss.plot(*zip(*val, strict=True), marker="o", label="SFT held-out loss")
    ax_loss.set(title="pre-training, then SFT", xlabel="optimizer step", ylabel="loss (nats/token)")
    grpo = _records(out / "grpo" / "metrics.jsonl")
    for key in ("reward", "pass_rate"):
        ax_rl.plot([r["step"] for r in grpo], [r[key] for r in grpo], marker=".", label=key)
    ax_rl.set(title="GRPO rollouts (train tasks)", xlabel="step", ylim=(-0.05, 1.05))
    groups = report["groups"]
    for i, g in enumerate(groups):
        for j, ck in enumerate(CHECKPOINTS):
            value = report["pass@1"][f"{ck}/{g}"]
            if value is not None:
                half = 0.0 if math.isnan(value[1]) else value[1]
                ax_eval.errorbar(i + 0.15 * (2 * j - 1), value[0], yerr=half, fmt="o", capsize=4, color=f"C{j}")
    ax_eval.plot([], [], "o", color="C0", label="SFT")
    ax_eval.plot([], [], "o", color="C1", label="GRPO")
    ax_eval.axhline(SFT_TARGET, ls=":", color="gray", label="SFT target")
    ax_eval.set(title="pass@1 on the test split (95% interval)", xticks=range(len(groups)), ylim=(-0.05, 1.05))
    ax_eval.set_xticklabels([g.replace("heldout_", "held-out ") for g in groups], fontsize=8)
    for ax in (ax_loss, ax_rl, ax_eval):
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def write_report(out: Path, state: dict[str, Any]) -> dict[str, Any]:
    """Write report.json, report.md and learning_curve.png into ``out``; return the report."""
    from toolgym.policy.results import write_json

    report = build_report(state)
    report["ablations"] = ablation_rows(out, state)
    write_json(out / REPORT_JSON, report)
    (out / REPORT_MD).write_text(report_markdown(report), encoding="utf-8")
    plot_curve(out, report, out / CURVE)
    if len(report["ablations"]) > 1:
        plot_ablations(out, state, out / ABLATION_CURVES)
    return report


def plot_ablations(out: Path, state: dict[str, Any], png: Path) -> None:
    """Reward, KL, entropy and routing agreement by GRPO step, one line per run (all on, each ablation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ("reward", "kl", "entropy", "routing_agreement")
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.6))
    for label, _, folder in _grpo_runs(out, state):
        records = _records(folder / "metrics.jsonl")
        for ax, key in zip(axes, keys, strict=True):
            points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), int | float)]
            if points:
                ax.plot(*zip(*points, strict=True), marker=".", label=label)
    for ax, key in zip(axes, keys, strict=True):
        ax.set(title=key, xlabel="GRPO step")
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
