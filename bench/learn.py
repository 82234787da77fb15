"""``toolgym bench learn``: the documented learning pipeline of issue 12, one resumable command.

Stages, in order (:data:`STAGES`), each calling the code of the command that does it alone:

=========== ====================================================== =============================
stage       what                                                   the code it calls
=========== ====================================================== =============================
synth       ``domains`` tasks, difficulty 1–2, split by world,     ``synth.run.synthesize``
            whole archetypes held out to the test split
lm          induction warm-up, LM pre-training on the train        ``policy.pretrain.pretrain``
            split's reference episodes (tokenizer trained on       (warm-ups: ``policy.induction``,
            them too), lookup warm-up (when set)                   ``policy.lookup``)
sft         SFT from the LM on the train worlds' references        ``policy.sft.train_sft``
eval_sft    pass@1 of the SFT checkpoint, held-out worlds and      ``policy.evaluate``
            held-out archetypes apart, and other families
            (``learn_eval``)
grpo        GRPO from the SFT checkpoint on the train tasks        ``policy.grpo_train.train_grpo``
eval_grpo   the same eval of the GRPO checkpoint                   ``policy.evaluate``
no_<switch> one per ablated stabilizer (``ablations.switches``):   ``train_grpo``, ``evaluate``
            the grpo stage's run with that switch off, then the
            eval of its checkpoint (held-out groups only)
=========== ====================================================== =============================

The main pipeline (synth to eval_grpo) is the issue's ≤ 90-minute demonstration; the ablations
come after it, each about as long as the grpo stage and its eval (``--until eval_grpo`` skips them).

Layout of ``--out DIR``::

    DIR/learn.json          the config and each finished stage: seconds and results (atomic)
    DIR/domains.duckdb      the dataset
    DIR/lm/                 induction/, induction.jsonl (the copy warm-up), checkpoint/, metrics.jsonl,
                            lookup/, lookup.jsonl (the lookup warm-up; SFT starts from lookup/)
    DIR/sft/, DIR/grpo/     as ``toolgym train sft|grpo`` lay out their --out
    DIR/ablations/SWITCH/   the GRPO run with SWITCH off, laid out as DIR/grpo/
    DIR/learning_curve.png  LM and SFT loss, GRPO reward, held-out pass@1 (``learn_report``)
    DIR/report.json, DIR/report.md

**Resuming.** A stage recorded in ``learn.json`` is finished and never run again; a rerun runs
the first unfinished stage and goes on. An interrupted stage resumes with its own machinery:
synthesis resumes its dataset, the LM stage's induction phases and pre-training, SFT and GRPO
resume from their checkpoints (``_phased`` for the warm-ups; the ``train lm|sft|grpo`` resume rules), while an
eval starts over (``evaluate`` does not resume; it is a short stage). A stage's seconds are
those of the run that finished it.
A rerun must use the recorded config: another one is refused, naming the sections that differ.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolgym.bench.learn_config import InductionPhase, LearnConfig, LMStage, LookupPhase
from toolgym.errors import ConfigError

if TYPE_CHECKING:
    from torch import Tensor

    from toolgym.policy.corpus import Corpus
    from toolgym.policy.grpo_train import GRPOConfig, GRPOResult
    from toolgym.policy.tokenizer import Tokenizer

STAGES = ("synth", "lm", "sft", "eval_sft", "grpo", "eval_grpo")
STATE, DATASET, FAMILY = "learn.json", "domains.duckdb", "domains"


@dataclass
class Stage:
    """One stage: its name and the function that runs it and returns its results (JSON-able)."""

    name: str
    run: Callable[[], dict[str, Any]]


def load_state(out: Path, config: LearnConfig) -> dict[str, Any]:
    """The run's state in ``out`` (a fresh one when there is none): ``{"config": …, "stages": {…}}``.

    Raises:
        ConfigError: ``out`` is a file, or holds a run of another config (naming the sections that differ).
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a run directory")
    want = config.model_dump(mode="json")
    path = out / STATE
    if not path.exists():
        return {"config": want, "stages": {}}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        prior = state["config"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a bench learn state file ({exc}); use another --out") from None
    prior, mine = _comparable(prior), _comparable(want)
    if prior != mine:
        diff = sorted(k for k in prior.keys() | mine.keys() if prior.get(k) != mine.get(k))
        raise ConfigError(
            f"{out} holds a bench learn run with other settings ({', '.join(diff)}); "
            "use another --out, or the same profile and config to resume"
        )
    state["config"] = want  # the same run; its devices are this rerun's
    return dict(state)


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A recorded config as a resume compares it: defaults filled in, devices left out.

    A setting added since the run was recorded takes its default (a run recorded before
    ``lm.device`` existed ran with the default), and a run may go on on another device
    (``bench learn --device``).
    """
    try:
        config = LearnConfig.model_validate(config).model_dump(mode="json")
    except ValueError:  # a config today's rules refuse: compared as recorded, so the difference is named
        config = json.loads(json.dumps(config))
    for stage in (config.get("lm"), config.get("sft"), config.get("eval"), (config.get("grpo") or {}).get("train")):
        if isinstance(stage, dict):
            stage.pop("device", None)
    return config


def run_stages(
    out: Path,
    state: dict[str, Any],
    stages: list[Stage],
    until: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the stages not yet finished in ``state``, in order, recording each in ``out/learn.json``.

    Args:
        out: the run directory (created).
        state: ``load_state``'s state; updated in place.
        stages: the stages, in order.
        until: stop after this stage (None: run them all).
        log: called with one line per stage (skipped, started, finished).

    Returns:
        The state. A stage that raises is not recorded (its error propagates), so a rerun runs it again.
    """
    from toolgym.policy.results import write_json

    out.mkdir(parents=True, exist_ok=True)
    say = log or (lambda line: None)
    for stage in stages:
        done = state["stages"].get(stage.name)
        if done is not None:
            say(f"{stage.name}: finished earlier in {done['seconds']:.0f}s; not run again")
        else:
            say(f"{stage.name}: running")
            t0 = time.perf_counter()
            result = stage.run()
            state["stages"][stage.name] = {"seconds": time.perf_counter() - t0, "result": result}
            write_json(out / STATE, state)
            say(f"{stage.name}: done in {state['stages'][stage.name]['seconds']:.0f}s")
        if stage.name == until:
            break
    return state


# ------------------------------------------------------------------------------ the stages


def _synth(out: Path, config: LearnConfig) -> dict[str, Any]:
    """Synthesize (or resume) the dataset; its task counts by split."""
    from toolgym.data.dataset import Dataset
    from toolgym.synth.config import SynthConfig
    from toolgym.synth.run import synthesize

    s = config.synth
    synth_config = SynthConfig(
        family=FAMILY, count=s.count, difficulty=s.difficulty, seed=s.seed,
        tasks_per_world=s.tasks_per_world, holdout_archetypes=s.holdout_archetypes,
        workers=s.workers, executor="local" if s.workers > 1 else "serial",
    )  # fmt: skip
    stats = synthesize(synth_config, out / DATASET)
    with Dataset(out / DATASET, read_only=True) as ds:
        splits = {split: len(ds.task_ids(FAMILY, split=split)) for split in ("train", "val", "test")}
    return {"shipped": stats.shipped, "candidates": stats.candidates, "tasks": splits}


def _induction_streams(tokenizer: Tokenizer, corpus: Corpus, tokens: str, seed: int) -> tuple[Tensor, Tensor]:
    """(train, held-out) token streams of one induction phase: the corpus's, or uniform random ids.

    Random streams draw every id above the special ones (the lowest ids, ``Tokenizer``) alike,
    2M training and 200k held-out tokens from a generator seeded by ``seed``.
    """
    import torch

    from toolgym.policy.train_lm import encode_documents

    if tokens == "corpus":
        return encode_documents(tokenizer, corpus.train), encode_documents(tokenizer, corpus.val)
    g, low = torch.Generator().manual_seed(seed), tokenizer.first_plain_id
    return torch.randint(low, tokenizer.vocab_size, (2_000_000,), generator=g), torch.randint(
        low, tokenizer.vocab_size, (200_000,), generator=g
    )


#: ``(phase index, phase, tokenizer, start step) -> (train batches, held-out batches, extra_eval)``.
RowsOf = Callable[[int, Any, Any, int], tuple[Any, list[Any], Any]]


def _device(name: str) -> str:
    """A stage's ``device`` setting resolved (``auto``: cuda when there is one; ``model_policy.resolve_device``)."""
    from toolgym.policy.model_policy import resolve_device

    return resolve_device(name)


def _phased(
    ckpt: Path,
    log_path: Path,
    phases: Sequence[Any],
    fresh: Callable[[], Any],
    rows: RowsOf,
    progress: bool,
    device: str = "cpu",
) -> Path:
    """Run (or resume) a warm-up's phases on one model; return its checkpoint directory ``ckpt``.

    Each phase checkpoints there with ``meta["phase"]`` (0-based) and its own ``step``, so a rerun
    skips the phases done and resumes the current one from its last checkpoint (weights, optimizer
    state, and its rows: the ones already trained on are skipped); ``log_path`` keeps the records
    up to that point (``results.metrics_log``) with the step counted over all phases.

    Args:
        ckpt: the checkpoint directory.
        log_path: the JSONL metrics log.
        phases: each with a ``train`` loop (``LMTrainConfig``).
        fresh: ``() -> Checkpoint``: the model and tokenizer to start from (not called on a resume).
        rows: ``(phase index, phase, tokenizer, start step) -> (train batches from that step,
            held-out batches, extra_eval or None)``.
        progress: show the loop's progress line.
        device: where the model trains (resolved: cpu, cuda, …).
    """
    from toolgym.policy.checkpoint import load_checkpoint, load_optimizer_state
    from toolgym.policy.results import metrics_log
    from toolgym.policy.train_lm import train_lm

    ckpt.parent.mkdir(parents=True, exist_ok=True)
    offsets = [sum(p.train.steps for p in phases[:i]) for i in range(len(phases))]  # global step 0 of each
    phase0, step0, opt_state = 0, 0, None
    ck = load_checkpoint(ckpt) if ckpt.is_dir() and any(ckpt.iterdir()) else None
    if ck is not None and "phase" in ck.meta:  # one without a phase predates resuming: start over
        phase0, step0, opt_state = int(ck.meta["phase"]), int(ck.meta["step"]), load_optimizer_state(ckpt)
    else:
        ck = fresh()
    model, tokenizer = ck.model.to(device), ck.tokenizer
    log = metrics_log(log_path, offsets[phase0] + step0, None)
    for i, phase in enumerate(phases[phase0:], start=phase0):
        start, state = (step0, opt_state) if i == phase0 else (0, None)
        train, held, extra = rows(i, phase, tokenizer, start)
        train_lm(
            model, train, held, phase.train, tokenizer=tokenizer, out_dir=ckpt, progress=progress,
            meta={"phase": i, "phases": len(phases)}, start_step=start, optimizer_state=state, extra_eval=extra,
            log=lambda rec, i=i: log({**rec, "step": rec["step"] + offsets[i], "phase": i}),
        )  # fmt: skip
    return ckpt


def _induction(out: Path, c: LMStage, corpus: Corpus, progress: bool) -> Path:
    """Run (or resume) the induction warm-up's phases (``_phased``); return ``lm/induction``.

    A fresh run trains the tokenizer on the corpus and builds the fresh model.
    """
    from dataclasses import replace

    import torch

    from toolgym.policy.checkpoint import Checkpoint
    from toolgym.policy.induction import repeat_batches
    from toolgym.policy.model import Transformer
    from toolgym.policy.tokenizer import Tokenizer

    def fresh() -> Checkpoint:
        tokenizer = Tokenizer.train(corpus.train, c.vocab_size)
        config = replace(c.fresh_model_config(), vocab_size=tokenizer.vocab_size)
        return Checkpoint(Transformer(config, seed=c.train.seed), tokenizer)

    def rows(i: int, phase: InductionPhase, tokenizer: Tokenizer, start: int) -> tuple[Any, list[Any], None]:
        w = phase.train
        train, val = _induction_streams(tokenizer, corpus, phase.tokens, seed=w.seed + i)
        sizes = {"min_len": phase.min_len, "max_len": phase.max_len}
        held = repeat_batches(val, w.batch_size, w.seq_len, torch.Generator().manual_seed(1), **sizes)
        batches = repeat_batches(train, w.batch_size, w.seq_len, torch.Generator().manual_seed(w.seed + i), **sizes)
        for _ in range(start):
            next(batches)  # the rows of the steps already done
        return batches, [next(held) for _ in range(w.eval_batches)], None

    return _phased(
        out / "lm" / "induction", out / "lm" / "induction.jsonl", c.induction, fresh, rows, progress, _device(c.device)
    )


def _lookup_rows(tokenizer: Tokenizer, i: int, phase: LookupPhase, held: bool, start: int = 0) -> Iterator[Any]:
    """Lookup phase ``i``'s batches (``policy.lookup.lookup_batches``) from batch ``start``.

    Training rows follow the phase's JSON-pair schedule (seed ``train.seed + i``); held-out rows
    have no JSON pair (the lookup itself) and another seed.
    """
    from toolgym.policy.lookup import lookup_batches

    w = phase.train
    seed, share, decay = (1_000_003 + i, 0.0, 0) if held else (w.seed + i, phase.json_share, phase.json_decay_steps)
    return lookup_batches(
        tokenizer, w.batch_size, seed, max_facts=phase.max_facts, json_share=share, json_decay_steps=decay,
        wrap=phase.wrap, start=start, max_tokens=w.seq_len + 1,
    )  # fmt: skip


def _lookup_held(tokenizer: Tokenizer, i: int, phase: LookupPhase) -> list[Any]:
    """Lookup phase ``i``'s held-out batches (``train.eval_batches`` of them)."""
    from itertools import islice

    return list(islice(_lookup_rows(tokenizer, i, phase, held=True), phase.train.eval_batches))


def _lookup_probe(model: Any, held: list[Any]) -> dict[str, float]:
    """``policy.lookup.first_value_nll`` on ``held`` as a record's ``first_value_nll[_median]``."""
    from toolgym.policy.lookup import first_value_nll

    mean, median = first_value_nll(model, held)
    return {"first_value_nll": mean, "first_value_nll_median": median}


def _lookup(out: Path, c: LMStage, progress: bool) -> Path:
    """Run (or resume) the lookup warm-up's phases (``_phased``) from the LM checkpoint; return ``lm/lookup``.

    Each evaluation adds ``val_first_value_nll`` and its median (``_lookup_probe``) on held-out rows.
    """
    from toolgym.policy.checkpoint import Checkpoint, load_checkpoint

    def rows(i: int, phase: LookupPhase, tokenizer: Tokenizer, start: int) -> tuple[Any, list[Any], Any]:
        held = _lookup_held(tokenizer, i, phase)
        return _lookup_rows(tokenizer, i, phase, held=False, start=start), held, lambda m: _lookup_probe(m, held)

    def fresh() -> Checkpoint:
        return load_checkpoint(out / "lm" / "checkpoint")

    lookup, log = out / "lm" / "lookup", out / "lm" / "lookup.jsonl"
    return _phased(lookup, log, c.lookup, fresh, rows, progress, _device(c.device))


def _lm(out: Path, config: LearnConfig, progress: bool) -> dict[str, Any]:
    """The induction warm-up (when set), LM pre-training, the lookup warm-up (when set); probes after each.

    Metrics go to ``lm/induction.jsonl``, ``lm/metrics.jsonl`` and ``lm/lookup.jsonl``, checkpoints
    to ``lm/induction``, ``lm/checkpoint`` and ``lm/lookup``; an interrupted stage resumes from them
    (``_phased``, ``policy.pretrain``). The repeat probe (``policy.induction.copy_gain``) runs on
    the corpus's held-out documents, the lookup probe (``_lookup_probe``) on the last lookup
    phase's held-out rows.
    """
    from toolgym.policy.checkpoint import load_checkpoint
    from toolgym.policy.corpus import dataset_corpus, stdlib_corpus
    from toolgym.policy.induction import copy_gain
    from toolgym.policy.pretrain import pretrain
    from toolgym.policy.train_lm import encode_documents

    (out / "lm").mkdir(parents=True, exist_ok=True)
    c, init, probes = config.lm, None, {}
    corpus = dataset_corpus(out / DATASET, family=FAMILY) if c.corpus == "episodes" else stdlib_corpus(c.corpus_bytes)
    if c.induction:
        init = _induction(out, c, corpus, progress)
        ck = load_checkpoint(init)
        val = encode_documents(ck.tokenizer, corpus.val)
        probes["after_induction"] = copy_gain(ck.model, val, length=min(128, len(val) // 16))
    result = pretrain(
        out / "lm" / "checkpoint", c.train, init=init, model_config=c.fresh_model_config(), vocab_size=c.vocab_size,
        progress=progress, metrics=out / "lm" / "metrics.jsonl", corpus=corpus, device=_device(c.device),
    )  # fmt: skip
    lm = load_checkpoint(out / "lm" / "checkpoint")
    val = encode_documents(lm.tokenizer, corpus.val)
    probes["after_lm"] = copy_gain(lm.model, val, length=min(128, len(val) // 16))
    lookup = {}
    if c.lookup:  # its own numbers; the stage's steps and val_loss stay the LM's
        ck = load_checkpoint(_lookup(out, c, progress))
        probes["after_lookup"] = copy_gain(ck.model, val, length=min(128, len(val) // 16))
        lookup = _lookup_probe(ck.model, _lookup_held(ck.tokenizer, len(c.lookup) - 1, c.lookup[-1]))
    return {
        "steps": lm.meta["step"], "val_loss": lm.meta["val_loss"], "train_seconds": result.seconds,
        "copy_probe": {k: {"first_nll": a, "second_nll": b} for k, (a, b) in probes.items()},
        "lookup_probe": lookup,
    }  # fmt: skip


def _sft(out: Path, config: LearnConfig, progress: bool) -> dict[str, Any]:
    """SFT (or resume it) from the LM checkpoint on the dataset's train split (val split held out)."""
    from toolgym.policy.sft import train_sft

    c, init = config.sft, out / "lm" / ("lookup" if config.lm.lookup else "checkpoint")
    result, data = train_sft(
        out / DATASET, out / "sft", c.train, init=init, val_split="val",
        action_prompts=c.action_prompts, max_new_tokens=config.eval.max_new_tokens, progress=progress,
        device=_device(c.device),
    )  # fmt: skip
    last = result.history[-1] if result.history else {}
    return {
        "steps": result.steps,
        "val_loss": result.val_loss,
        "val_action_valid": last.get("val_action_valid"),
        "val_next_call_acc": last.get("val_next_call_acc"),
        "episodes": len(data.episodes),
        "truncated": data.truncated,
        "dropped": data.dropped,
    }


def _difficulties(config: LearnConfig) -> list[int]:
    """The synthesized difficulty range as a list (what GRPO draws and the evals weigh)."""
    lo, hi = config.synth.difficulty
    return list(range(lo, hi + 1))


def _train_grpo(out: Path, run: Path, config: LearnConfig, grpo: GRPOConfig, progress: bool) -> GRPOResult:
    """``train_grpo`` into ``run`` from the SFT checkpoint on the dataset's train tasks."""
    from toolgym.policy.grpo_tasks import TaskPool
    from toolgym.policy.grpo_train import train_grpo

    pool = TaskPool(family=FAMILY, difficulties=_difficulties(config), dataset=out / DATASET, seed=grpo.seed)
    return train_grpo(run, grpo, init=out / "sft" / "checkpoint", pool=pool, progress=progress)


def _grpo(out: Path, config: LearnConfig, progress: bool) -> dict[str, Any]:
    """GRPO (or resume it) from the SFT checkpoint on the dataset's train tasks."""
    result = _train_grpo(out, out / "grpo", config, config.grpo.train, progress)
    hist = result.history
    return {
        "steps": result.steps,
        "first_reward": hist[0]["reward"] if hist else None,
        "last_reward": hist[-1]["reward"] if hist else None,
        "last_pass_rate": hist[-1]["pass_rate"] if hist else None,
    }


def _eval(out: Path, config: LearnConfig, checkpoint: Path, families: bool = True) -> dict[str, Any]:
    """pass@1 of ``checkpoint`` on held-out worlds and held-out archetypes (``learn_eval``), and other families."""
    from toolgym.bench.learn_eval import eval_checkpoint, eval_items, family_items

    c = config.eval
    groups = eval_items(out / DATASET, FAMILY, _difficulties(config), config.synth.holdout_archetypes, c.tasks)
    if families:
        groups |= family_items(c.families, c.family_tasks, c.seed)
    return eval_checkpoint(checkpoint, groups, c)


def _ablate(out: Path, config: LearnConfig, switch: str, progress: bool) -> dict[str, Any]:
    """The grpo stage's run with ``switch`` off, from the same SFT checkpoint, then its held-out eval."""
    run = out / "ablations" / switch
    result = _train_grpo(out, run, config, config.grpo.train.model_copy(update={switch: False}), progress)
    return {"steps": result.steps, "eval": _eval(out, config, run / "checkpoint", families=False)}


def stage_names(config: LearnConfig) -> list[str]:
    """The stages of a run, in order: :data:`STAGES`, then ``no_<switch>`` per ablated stabilizer."""
    return [*STAGES, *(f"no_{switch}" for switch in config.ablations.switches)]


def pipeline(out: Path, config: LearnConfig, progress: bool = False) -> list[Stage]:
    """The stages of ``stage_names(config)``, writing under ``out``."""
    ablations = [
        Stage(f"no_{switch}", lambda switch=switch: _ablate(out, config, switch, progress))
        for switch in config.ablations.switches
    ]
    return [
        Stage("synth", lambda: _synth(out, config)),
        Stage("lm", lambda: _lm(out, config, progress)),
        Stage("sft", lambda: _sft(out, config, progress)),
        Stage("eval_sft", lambda: _eval(out, config, out / "sft" / "checkpoint")),
        Stage("grpo", lambda: _grpo(out, config, progress)),
        Stage("eval_grpo", lambda: _eval(out, config, out / "grpo" / "checkpoint")),
        *ablations,
    ]


def run_learn(
    out: Path,
    config: LearnConfig,
    until: str | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the pipeline, then write the report and the learning curve.

    Args:
        out: the run directory (see the module docstring).
        config: the settings (a rerun must give the recorded ones).
        until: stop after this stage of ``stage_names(config)`` (None: all).
        progress: show the training loops' progress bars.
        log: called with one line per stage.

    Returns:
        The report (``learn_report.build_report``).

    Raises:
        ConfigError: ``until`` is not a stage, a stage asks for cuda where there is none (both
            before any work), ``out`` holds another run, or a stage refuses its settings; any
            error of a stage (the stage stays unfinished, a rerun resumes it).
    """
    from toolgym.bench.learn_report import write_report

    names = stage_names(config)
    if until is not None and until not in names:
        raise ConfigError(f"--until must be one of {', '.join(names)}, not {until!r}")
    for device in {config.lm.device, config.sft.device, config.grpo.train.device, config.eval.device}:
        _device(device)
    state = load_state(out, config)
    run_stages(out, state, pipeline(out, config, progress), until, log)
    return write_report(out, state)
