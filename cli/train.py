"""``toolgym train lm``: train the in-repo policy LM on the offline standard-library corpus."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from toolgym.cli.common import SEED_MAX, console
from toolgym.cli.errors import check_writable, cli_errors, interrupt_hint

if TYPE_CHECKING:
    from toolgym.policy.model import ModelConfig


def fresh_model_config(name: str) -> ModelConfig | None:
    """``--model``: None for the default config (``ModelConfig()``), or ``ModelConfig.micro()``.

    Raises:
        ConfigError: another name.
    """
    from toolgym.errors import ConfigError
    from toolgym.policy.model import ModelConfig

    if name not in ("default", "micro"):
        raise ConfigError(f"--model must be default or micro, not {name!r}")
    return ModelConfig.micro() if name == "micro" else None


def copy_mix_options(every: int, cue: int, lookup: bool) -> dict[str, Any]:
    """``LMTrainConfig.copy_mix`` of ``--copy-every/--copy-cue/--copy-lookup``.

    Raises:
        ConfigError: cued or lookup rows without mixed steps, or both kinds (named as options).
    """
    from toolgym.errors import ConfigError

    if (cue or lookup) and not every:
        raise ConfigError("--copy-cue and --copy-lookup choose the mixed rows: they need --copy-every K > 0")
    if cue and lookup:
        raise ConfigError("--copy-cue and --copy-lookup are two kinds of mixed rows: pick one")
    return {"every": every, "cue": cue, "lookup": lookup}


@cli_errors
def train_lm(
    out: Annotated[Path, typer.Option(help="checkpoint directory (only a checkpoint is replaced)")] = Path("runs/lm"),
    init: Annotated[Path | None, typer.Option(help="continue from this checkpoint")] = None,
    stage: Annotated[str, typer.Option(help="dense | indexer_warmup | sparse")] = "dense",
    steps: Annotated[int, typer.Option(help="optimizer steps")] = 300,
    batch_size: Annotated[int, typer.Option(help="sequences per step")] = 8,
    seq_len: Annotated[int, typer.Option(help="tokens per sequence")] = 512,
    lr: Annotated[float, typer.Option(help="peak learning rate")] = 3e-3,
    eval_every: Annotated[int, typer.Option(help="steps between held-out evals")] = 100,
    checkpoint_every: Annotated[int, typer.Option(help="steps between checkpoints (0: at the end)")] = 100,
    corpus_bytes: Annotated[int, typer.Option(min=10_000, help="standard-library corpus size")] = 8_000_000,
    vocab_size: Annotated[int, typer.Option(help="tokenizer size of a fresh model")] = 4096,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="seed of weights and batches")] = 0,
    model: Annotated[str, typer.Option(help="fresh model config: default | micro")] = "default",
    copy_every: Annotated[
        int,
        typer.Option(min=0, help="every K-th step trains on repeat, cued or lookup rows that keep copying (0: none)"),
    ] = 0,
    copy_cue: Annotated[
        int, typer.Option(min=0, max=8, help="cued repeat rows: a key and 0..N filler ids before each copy (0: plain)")
    ] = 0,
    copy_lookup: Annotated[
        bool, typer.Option(help="the mixed rows are lookup rows: a request's values copied into a call's arguments")
    ] = False,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "auto",
) -> None:
    """Train the policy LM on the offline standard-library corpus (dense, indexer warm-up or sparse)."""
    from toolgym.policy.model_policy import resolve_device
    from toolgym.policy.pretrain import pretrain
    from toolgym.policy.train_lm import CopyMix, LMTrainConfig

    model_config, device = fresh_model_config(model), resolve_device(device)

    config = LMTrainConfig(
        stage=stage,
        steps=steps,
        batch_size=batch_size,
        seq_len=seq_len,
        lr=lr,  # type: ignore[arg-type]
        eval_every=eval_every,
        checkpoint_every=checkpoint_every,
        seed=seed,
        copy_mix=CopyMix(**copy_mix_options(copy_every, copy_cue, copy_lookup)),
    )
    check_writable(out, "--out")  # before training, not when the first checkpoint is written
    interrupt_hint(f"{out} keeps the last checkpoint; rerun the same command to resume from it")
    result = pretrain(
        out, config, init=init, corpus_bytes=corpus_bytes, vocab_size=vocab_size, model_config=model_config,
        device=device,
    )  # fmt: skip
    console.print(
        f"{stage}: {result.steps} steps in {result.seconds:.0f}s, held-out loss {result.val_loss:.4f}"
        + (f", indexer KL {result.val_index_loss:.4f}" if result.val_index_loss is not None else "")
        + f"; checkpoint at {out}",
        markup=False,  # a path is not rich markup
    )


@cli_errors
def train_sft(
    dataset: Annotated[Path, typer.Option("--dataset", "-d", help="a synthesized dataset (.duckdb)")],
    out: Annotated[Path, typer.Option(help="run directory: checkpoint/, metrics.jsonl, loss.png")] = Path("runs/sft"),
    init: Annotated[str, typer.Option(help="an LM checkpoint to start from, or 'none' (fresh model)")] = "none",
    stage: Annotated[str, typer.Option(help="dense | sparse")] = "dense",
    steps: Annotated[int, typer.Option(help="optimizer steps")] = 300,
    batch_size: Annotated[int, typer.Option(help="episodes per step at most")] = 8,
    seq_len: Annotated[int, typer.Option(help="tokens per episode (longer ones are cut at an action)")] = 2048,
    lr: Annotated[float, typer.Option(help="peak learning rate")] = 1e-3,
    eval_every: Annotated[int, typer.Option(help="steps between held-out evals")] = 50,
    checkpoint_every: Annotated[int, typer.Option(help="steps between checkpoints (0: at the end)")] = 50,
    val_split: Annotated[str, typer.Option(help="held-out split")] = "val",
    action_prompts: Annotated[int, typer.Option(min=0, help="val prompts for action validity (0: none)")] = 16,
    vocab_size: Annotated[int, typer.Option(help="tokenizer size of a fresh model")] = 4096,
    model: Annotated[str, typer.Option(help="fresh model config: default | micro")] = "default",
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="seed of weights and batch order")] = 0,
    copy_every: Annotated[
        int,
        typer.Option(min=0, help="every K-th step trains on repeat, cued or lookup rows that keep copying (0: none)"),
    ] = 0,
    copy_cue: Annotated[
        int, typer.Option(min=0, max=8, help="cued repeat rows: a key and 0..N filler ids before each copy (0: plain)")
    ] = 0,
    copy_lookup: Annotated[
        bool, typer.Option(help="the mixed rows are lookup rows: a request's values copied into a call's arguments")
    ] = False,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "auto",
) -> None:
    """SFT cold start on a dataset's reference trajectories (loss on action tokens only; resumes)."""
    from toolgym.errors import ConfigError
    from toolgym.policy.model_policy import resolve_device
    from toolgym.policy.sft import train_sft as run
    from toolgym.policy.train_lm import LMTrainConfig

    if not dataset.is_file():
        raise ConfigError(f"no dataset at {dataset}")
    model_config, device = fresh_model_config(model), resolve_device(device)
    config = LMTrainConfig.model_validate(
        {
            "stage": stage,
            "steps": steps,
            "batch_size": batch_size,
            "seq_len": seq_len,
            "lr": lr,
            "eval_every": eval_every,
            "checkpoint_every": checkpoint_every,
            "seed": seed,
            "copy_mix": copy_mix_options(copy_every, copy_cue, copy_lookup),
        }
    )
    check_writable(out, "--out")
    result, data = run(
        dataset,
        out,
        config,
        init=None if init.lower() == "none" else Path(init),
        model_config=model_config,
        vocab_size=vocab_size,
        val_split=val_split,
        action_prompts=action_prompts,
        device=device,
    )
    last = result.history[-1] if result.history else {}
    console.print(
        f"sft: {result.steps} steps in {result.seconds:.0f}s on {len(data.episodes)} episodes "
        f"({data.truncated} cut at an action, {data.dropped} dropped), held-out loss {result.val_loss:.4f}"
        + (f", action validity {last['val_action_valid']:.0%}" if "val_action_valid" in last else "")
        + f"; checkpoint at {out / 'checkpoint'}",
        markup=False,  # a path is not rich markup
    )


@cli_errors
def train_grpo(
    init: Annotated[Path, typer.Option(help="the checkpoint to start from (SFT); also the KL's reference")],
    dataset: Annotated[Path | None, typer.Option("--dataset", "-d", help="train tasks from this dataset")] = None,
    family: Annotated[str | None, typer.Option(help="only this family (tasks on the fly without -d)")] = None,
    difficulty: Annotated[str, typer.Option(help="difficulty or range")] = "1-2",
    out: Annotated[Path, typer.Option(help="run directory: checkpoint/, metrics.jsonl, grpo.png")] = Path("runs/grpo"),
    steps: Annotated[int, typer.Option(help="rollout steps")] = 50,
    tasks_per_step: Annotated[int, typer.Option(help="tasks (groups) per rollout step")] = 8,
    group_size: Annotated[int, typer.Option("--group-size", "-G", help="episodes per task")] = 8,
    updates_per_step: Annotated[int, typer.Option(help="optimizer steps per rollout batch")] = 2,
    micro_batch: Annotated[int, typer.Option(help="episodes per training forward (bounds memory)")] = 4,
    lr: Annotated[float, typer.Option(help="learning rate (constant)")] = 1e-5,
    clip_eps: Annotated[float, typer.Option(help="ratio clip epsilon")] = 0.2,
    kl_coef: Annotated[float, typer.Option(help="KL penalty beta (0: no reference model)")] = 0.01,
    unbiased_kl: Annotated[bool, typer.Option(help="V3.2's unbiased KL estimate (off: plain K3)")] = True,
    off_policy_mask: Annotated[bool, typer.Option(help="off-policy sequence masking")] = True,
    off_policy_delta: Annotated[float, typer.Option(help="masking threshold delta")] = 0.05,
    keep_routing: Annotated[bool, typer.Option(help="train on the rollout's experts")] = True,
    keep_sampling_mask: Annotated[bool, typer.Option(help="train on the rollout's top-p kept sets")] = True,
    filter_zero_variance: Annotated[bool, typer.Option(help="drop groups whose rewards are all equal")] = True,
    filter_void_turns: Annotated[bool, typer.Option(help="drop episodes with a turn without any call")] = True,
    filter_truncated: Annotated[bool, typer.Option(help="drop episodes that ran out of turns or context")] = True,
    temperature: Annotated[float, typer.Option(help="sampling temperature")] = 1.0,
    top_p: Annotated[float, typer.Option(help="nucleus sampling mass")] = 0.95,
    max_new_tokens: Annotated[int, typer.Option(help="most tokens per action")] = 256,
    max_context: Annotated[int, typer.Option(help="most tokens per episode")] = 4096,
    max_turns: Annotated[int | None, typer.Option(help="turns per episode (default: the env's)")] = None,
    curriculum: Annotated[bool, typer.Option(help="start at the lowest difficulty, move up at the threshold")] = False,
    curriculum_threshold: Annotated[float, typer.Option(help="pass rate of a step that raises the level")] = 0.5,
    checkpoint_every: Annotated[int, typer.Option(help="steps between checkpoints (0: at the end)")] = 10,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="seed of tasks and sampling")] = 0,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "auto",
    executor: Annotated[str, typer.Option(help="where rollout envs run: local or ray (Ray actors)")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray head to join, HOST:PORT (--executor ray)")] = None,
) -> None:
    """GRPO with the DeepSeek-V3.2 stabilizers on env rollouts (resumes from --out)."""
    from pydantic import ValidationError

    from toolgym.cli.errors import parse_range
    from toolgym.cli.eval_ray import env_runner, ray_options
    from toolgym.errors import ConfigError, one_line
    from toolgym.policy.grpo_tasks import TaskPool
    from toolgym.policy.grpo_train import GRPOConfig
    from toolgym.policy.grpo_train import train_grpo as run

    given = locals()
    check_writable(out, "--out")
    if dataset is not None and not dataset.is_file():
        raise ConfigError(f"no dataset at {dataset}")
    if not init.is_dir():
        raise ConfigError(f"no checkpoint directory at {init} (--init)")
    if dataset is None and family is None:
        raise ConfigError("GRPO needs tasks: give --family (tasks on the fly) or -d DATASET")
    lo, hi = parse_range(difficulty)
    try:
        config = GRPOConfig(**{k: v for k, v in given.items() if k in GRPOConfig.model_fields})
    except ValidationError as exc:
        raise ConfigError(f"train grpo: {one_line(exc)}") from None
    pool = TaskPool(family=family, difficulties=list(range(lo, hi + 1)), dataset=dataset, seed=seed)
    env_kwargs = {"max_turns": max_turns} if max_turns is not None else {}
    with env_runner(tasks_per_step * group_size, ray_options(executor, address), env_kwargs) as (env_maker, _):
        result = run(out, config, init=init, pool=pool, log=None, env_maker=env_maker)
    last = result.history[-1] if result.history else {}
    console.print(
        f"grpo: {result.steps} steps in {result.seconds:.0f}s"
        + (f", last reward {last['reward']:.3f}, pass rate {last['pass_rate']:.0%}" if last else "")
        + f"; checkpoint at {out / 'checkpoint'}",
        markup=False,  # a path is not rich markup
    )
