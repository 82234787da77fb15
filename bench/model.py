"""``toolgym bench model``: DSA vs dense attention, MoE vs dense FFN, cache size, balance, quality.

Every comparison builds two models from the same config and seed that differ only in one
switch (``dense_attention`` or ``dense_ffn``) and measures them side by side in one process,
interleaving their timed calls and taking medians, because this CPU is shared and its speed
drifts; ratios measured this way are meaningful even when absolute times are not.
The bench runs with one intra-op thread by default: on a 2-core machine shared with other jobs,
a second OpenMP thread that cannot get a core stalls every parallel op (single-token decode
steps slowed 10x or more in our runs), which punishes whichever model issues more small ops.

* **Attention** (random weights: speed does not depend on them): at each context L, prefill L
  tokens once per model (dense: expanded MHA; DSA: indexer, then top-k-masked MHA up to 1k keys
  and gather beyond), then fan the cache out to B rows (a GRPO group sampling from one prompt)
  and time decode steps (``kernel.decode_step``, what generation runs). Decode alternates the
  models in blocks: one untimed step, then ``decode_block`` timed steps, the order flipping
  every round. Alternating every single step instead (``decode_block=0``) times each step
  right after the other model has swept the shared 32 MB L3 cache with its own weights and KV
  cache, which generation, running one model for hundreds of steps, never sees; that protocol
  costs each model ~1 ms per step and is kept for comparison. Reported per token (step / B)
  for every batch size, so the batch-1 and the batched curves sit side by side.
* **Cache bytes per token**: the MLA latent + rope key (+ indexer key for DSA) over all layers,
  against the plain multi-head KV cache the same attention would need without MLA
  (H x (qk_head_dim + v_head_dim) per layer).
* **MoE vs dense FFN** with equal active parameters: forward and training-step tokens/s, total
  and active parameter counts.
* **Quality** (trained): one dense pre-training run on the standard-library corpus, then two
  branches from the same weights over the same batches: dense continues; DSA does the indexer
  warm-up and then sparse training (deepseek_v32.md §2.5). Both held-out losses are reported.
  The DSA branch's MoE gives the expert load balance (max/mean) with its learned router biases
  and with the biases zeroed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from toolgym.errors import ConfigError
from toolgym.policy.model import KVCache, ModelConfig, Transformer

Log = Callable[[str], None]


class ModelBenchConfig(BaseModel):
    """What ``toolgym bench model`` measures (validated; unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")

    contexts: list[int] = Field(default_factory=lambda: [1024, 4096, 16384, 32768])
    decode_batch_sizes: list[int] = Field(default_factory=lambda: [1, 8])
    decode_steps: int = Field(24, ge=1)  # timed steps per model and (context, batch)
    decode_block: int = Field(4, ge=0)  # timed steps in a row per model after 1 untimed; 0: alternate every step
    ffn_batch: int = Field(8, ge=1)
    ffn_seq_len: int = Field(512, ge=8)
    ffn_reps: int = Field(5, ge=1)
    quality: bool = True
    corpus_bytes: int = Field(6_000_000, ge=100_000)
    quality_batch_size: int = Field(8, ge=1)
    quality_seq_len: int = Field(256, ge=16)
    quality_topk: int = Field(32, ge=1)  # k << quality_seq_len so selection really drops tokens
    pretrain_steps: int = Field(400, ge=1)  # shared dense phase
    branch_steps: int = Field(150, ge=1)  # dense-continue vs DSA-sparse, same batches
    warmup_steps: int = Field(60, ge=1)  # DSA indexer warm-up (indexer only)
    eval_batches: int = Field(12, ge=1)
    threads: int = Field(1, ge=1)  # intra-op threads for the whole bench (see module docstring)
    seed: int = 0


@dataclass
class ModelBenchReport:
    """Everything measured, as rows ready for tables or JSON."""

    model: dict[str, Any]
    attention: list[dict[str, float]] = field(default_factory=list)
    cache: dict[str, float] = field(default_factory=dict)
    ffn: list[dict[str, float]] = field(default_factory=list)
    quality: dict[str, Any] = field(default_factory=dict)
    balance: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def _timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    t = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t


def _decode_times(
    models: dict[str, Transformer], caches: dict[str, KVCache], x: torch.Tensor, steps: int, block: int
) -> dict[str, list[float]]:
    """Seconds per decode step of each model, interleaved by blocks (see module docstring)."""
    times: dict[str, list[float]] = {name: [] for name in models}

    def step(name: str) -> float:
        dt = _timed(models[name], x, cache=caches[name])
        caches[name].lengths += 1
        return dt

    if block == 0:  # every step alternates, after two untimed rounds
        for i in range(steps + 2):
            for name in list(models) if i % 2 == 0 else list(models)[::-1]:
                dt = step(name)
                if i >= 2:
                    times[name].append(dt)
        return times
    for i in range(-(-steps // block)):
        for name in list(models) if i % 2 == 0 else list(models)[::-1]:
            step(name)  # untimed: reloads this model's working set after the other one ran
            times[name] += [step(name) for _ in range(min(block, steps - i * block))]
    return times


def bench_attention(config: ModelBenchConfig, model_config: ModelConfig, log: Log) -> list[dict[str, float]]:
    """Prefill and decode timings of DSA vs dense attention at each context (see module doc)."""
    models = {
        "dense": Transformer(replace(model_config, dense_attention=True), seed=config.seed).eval(),
        "dsa": Transformer(replace(model_config, dense_attention=False), seed=config.seed).eval(),
    }
    g = torch.Generator().manual_seed(config.seed)
    n_steps = 2 * config.decode_steps + 8  # timed plus untimed steps, with room to spare
    rows = []
    with torch.no_grad():
        for L in config.contexts:
            tokens = torch.randint(11, model_config.vocab_size, (1, L), generator=g)
            caches, prefill = {}, {}
            for name, m in models.items():
                cache = m.new_cache(1, capacity=L + n_steps)
                prefill[name] = _timed(m, tokens, cache=cache, logits_at=torch.tensor([L - 1]))
                cache.lengths += L
                caches[name] = cache
                log(f"context {L}: {name} prefill {prefill[name]:.2f}s")
            for B in config.decode_batch_sizes:
                forks = {name: c.select_rows(torch.zeros(B, dtype=torch.long)) for name, c in caches.items()}
                times = _decode_times(
                    models, forks, tokens[:, -1:].expand(B, 1), config.decode_steps, config.decode_block
                )
                dense_ms, dsa_ms = (1e3 * statistics.median(times[n]) for n in ("dense", "dsa"))
                rows.append(
                    {
                        "context": L,
                        "batch": B,
                        "prefill_dense_s": prefill["dense"],
                        "prefill_dsa_s": prefill["dsa"],
                        "prefill_speedup": prefill["dense"] / prefill["dsa"],
                        "decode_dense_ms_per_token": dense_ms / B,
                        "decode_dsa_ms_per_token": dsa_ms / B,
                        "decode_speedup": dense_ms / dsa_ms,
                    }
                )
                log(
                    f"context {L} batch {B}: decode dense {dense_ms / B:.2f} ms/token, dsa {dsa_ms / B:.2f} "
                    f"ms/token, x{dense_ms / dsa_ms:.2f}"
                )
    return rows


def cache_sizes(model_config: ModelConfig) -> dict[str, float]:
    """Bytes per token (fp32, all layers) of the DSA and dense caches vs a plain MHA KV cache."""
    c = model_config
    dsa_bytes = KVCache(replace(c, dense_attention=False), 1, capacity=1).bytes_per_token()
    mla_bytes = KVCache(replace(c, dense_attention=True), 1, capacity=1).bytes_per_token()
    mha_bytes = c.n_layers * c.n_heads * (c.qk_nope_head_dim + c.qk_rope_head_dim + c.v_head_dim) * 4
    return {
        "dsa_bytes_per_token": dsa_bytes,
        "mla_bytes_per_token": mla_bytes,
        "mha_bytes_per_token": mha_bytes,
        "mha_over_dsa": mha_bytes / dsa_bytes,
        "indexer_share": (dsa_bytes - mla_bytes) / dsa_bytes,
    }


def bench_ffn(config: ModelBenchConfig, model_config: ModelConfig, log: Log) -> list[dict[str, float]]:
    """Tokens/s and parameter counts of MoE vs a dense FFN with the same active parameters."""
    models = {
        "moe": Transformer(replace(model_config, dense_ffn=False), seed=config.seed),
        "dense_ffn": Transformer(replace(model_config, dense_ffn=True), seed=config.seed),
    }
    g = torch.Generator().manual_seed(config.seed)
    x = torch.randint(11, model_config.vocab_size, (config.ffn_batch, config.ffn_seq_len), generator=g)
    fwd: dict[str, list[float]] = {n: [] for n in models}
    train: dict[str, list[float]] = {n: [] for n in models}

    def step(m: Transformer) -> None:
        m(x).logits.float().mean().backward()
        m.zero_grad(set_to_none=True)

    for rep in range(config.ffn_reps + 1):
        for name in list(models) if rep % 2 == 0 else list(models)[::-1]:
            with torch.no_grad():
                t_f = _timed(models[name], x)
            t_t = _timed(step, models[name])
            if rep:
                fwd[name].append(t_f)
                train[name].append(t_t)
    n_tok = x.numel()
    rows = []
    for name, m in models.items():
        rows.append(
            {
                "ffn": name,
                "total_params": m.num_params(),
                "active_params": m.num_params(active=True),
                "forward_tokens_per_s": n_tok / statistics.median(fwd[name]),
                "train_tokens_per_s": n_tok / statistics.median(train[name]),
            }
        )
        log(
            f"{name}: {rows[-1]['forward_tokens_per_s']:.0f} tok/s forward, "
            f"{rows[-1]['train_tokens_per_s']:.0f} tok/s train"
        )
    return rows


def expert_balance(model: Transformer, batches: list[torch.Tensor]) -> list[dict[str, float]]:
    """Max/mean expert load per MoE layer on held-out batches, with and without router biases."""
    gates = [b.ffn.gate for b in model.layers if b.is_moe]
    saved = [g.bias.clone() for g in gates]
    loads = {}
    with torch.no_grad():
        for label in ("learned_bias", "zero_bias"):
            if label == "zero_bias":
                for g in gates:
                    g.bias.zero_()
            total = sum(model(b).expert_load.double() for b in batches)
            loads[label] = total.max(-1).values / total.mean(-1)
        for g, b in zip(gates, saved, strict=True):
            g.bias.copy_(b)
    return [
        {
            "layer": i,
            "max_over_mean_learned_bias": float(loads["learned_bias"][i]),
            "max_over_mean_zero_bias": float(loads["zero_bias"][i]),
        }
        for i in range(len(gates))
    ]


def _quality_corpus(config: ModelBenchConfig, model_config: ModelConfig, log: Log) -> tuple[str, Any, Any, list[Any]]:
    """The standard-library corpus, tokenized for the quality check.

    Returns:
        (corpus source, train tokens, held-out tokens, the fixed held-out batches).
    """
    from toolgym.policy.corpus import stdlib_corpus
    from toolgym.policy.tokenizer import Tokenizer
    from toolgym.policy.train_lm import encode_documents, fixed_windows

    corpus = stdlib_corpus(config.corpus_bytes)
    tokenizer = Tokenizer.train(corpus.train, model_config.vocab_size)
    train, val = encode_documents(tokenizer, corpus.train), encode_documents(tokenizer, corpus.val)
    val_batches = fixed_windows(val, config.quality_batch_size, config.quality_seq_len, config.eval_batches)
    log(f"corpus: {corpus.source}; {len(train)} train / {len(val)} held-out tokens")
    return corpus.source, train, val, val_batches


def quality_check(
    config: ModelBenchConfig, model_config: ModelConfig, log: Log, progress: bool = True
) -> tuple[dict[str, Any], Transformer, list[torch.Tensor]]:
    """Dense pre-training, then dense-continue vs DSA (warm-up + sparse) on the same batches.

    Returns:
        (numbers, the trained DSA model, the held-out token batches).
    """
    from toolgym.policy.train_lm import LMTrainConfig, evaluate, random_windows, train_lm

    t0 = time.perf_counter()
    source, train, val, val_batches = _quality_corpus(config, model_config, log)
    B, S = config.quality_batch_size, config.quality_seq_len

    def batches(seed: int):  # noqa: ANN202 - a generator of Batch
        return random_windows(train, B, S, torch.Generator().manual_seed(seed))

    def run(model: Transformer, stage: str, steps: int, lr: float, seed: int, warmup: int):  # noqa: ANN202
        cfg = LMTrainConfig(
            stage=stage,
            steps=steps,
            batch_size=B,
            seq_len=S,
            lr=lr,
            warmup_steps=warmup,
            eval_every=max(steps, 1),
            eval_batches=config.eval_batches,
            seed=seed,
        )  # type: ignore[arg-type]
        res = train_lm(model, batches(seed), val_batches, cfg, progress=progress)
        log(f"{stage}: {steps} steps, held-out loss {res.val_loss:.4f} ({res.seconds:.0f}s)")
        return res

    mc = replace(model_config, index_topk=config.quality_topk, dense_attention=True)
    base = Transformer(mc, seed=config.seed)
    pre = run(base, "dense", config.pretrain_steps, 3e-3, config.seed + 1, 30)
    dense = Transformer(mc, seed=config.seed)
    dense.load_state_dict(base.state_dict())
    dsa = Transformer(mc, seed=config.seed)
    dsa.load_state_dict(base.state_dict())

    branch_seed = config.seed + 2  # both branches see exactly the same batches
    dense_res = run(dense, "dense", config.branch_steps, 1e-3, branch_seed, 10)
    dsa.set_dense_attention(False)
    sparse_untrained, _ = evaluate(dsa, val_batches)
    warm = run(dsa, "indexer_warmup", config.warmup_steps, 1e-3, config.seed + 3, 5)
    dsa.set_dense_attention(False)
    sparse_after_warmup, _ = evaluate(dsa, val_batches)
    dsa_res = run(dsa, "sparse", config.branch_steps, 1e-3, branch_seed, 10)
    out = {
        "corpus": source,
        "train_tokens": len(train),
        "heldout_tokens": len(val),
        "batch_size": B,
        "seq_len": S,
        "index_topk": config.quality_topk,
        "pretrain_steps": config.pretrain_steps,
        "branch_steps": config.branch_steps,
        "warmup_steps": config.warmup_steps,
        "pretrain_val_loss": pre.val_loss,
        "dense_val_loss": dense_res.val_loss,
        "dsa_val_loss": dsa_res.val_loss,
        "dsa_relative_gap": dsa_res.val_loss / dense_res.val_loss - 1,
        "sparse_val_loss_random_indexer": sparse_untrained,
        "sparse_val_loss_after_warmup": sparse_after_warmup,
        "warmup_kl_first": warm.history[0].get("index_kl"),
        "warmup_kl_last": warm.history[-1].get("index_kl"),
        "seconds": time.perf_counter() - t0,
    }
    return out, dsa, [b.tokens for b in val_batches]


def run_model_bench(
    config: ModelBenchConfig | None = None,
    model_config: ModelConfig | None = None,
    log: Log | None = None,
    progress: bool = True,
) -> ModelBenchReport:
    """Run every measurement of ``toolgym bench model`` and return the report.

    Args:
        config: what to measure (defaults: contexts 1k-32k, batches 1 and 8, quality check on).
        model_config: the policy config to measure (default ``ModelConfig()``).
        log: receives one line per finished measurement (progress for long runs).
        progress: show training progress bars during the quality check.
    """
    config = config or ModelBenchConfig()
    mc = model_config or ModelConfig()
    log = log or (lambda _msg: None)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _run(config, mc, log, progress)
    finally:
        torch.set_num_threads(threads)


def _run(config: ModelBenchConfig, mc: ModelConfig, log: Log, progress: bool) -> ModelBenchReport:
    t0 = time.perf_counter()
    ref = Transformer(mc, seed=config.seed)
    report = ModelBenchReport(
        model={
            **mc.to_dict(),
            "total_params": ref.num_params(),
            "active_params": ref.num_params(active=True),
            "torch_threads": torch.get_num_threads(),
        }
    )
    del ref
    report.cache = cache_sizes(mc)
    report.ffn = bench_ffn(config, mc, log)
    report.attention = bench_attention(config, mc, log)
    if config.quality:
        report.quality, dsa, heldout = quality_check(config, mc, log, progress)
        report.balance = expert_balance(dsa, heldout) if dsa.n_moe_layers else []
    report.seconds = time.perf_counter() - t0
    return report


def parse_int_list(text: str) -> list[int]:
    """``"1024,4096"`` -> [1024, 4096] (CLI helper).

    Raises:
        ConfigError: on anything but comma-separated positive integers.
    """
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise ConfigError(f"expected comma-separated positive integers such as 1024,4096; got {text!r}")
    return values


def report_tables(report: ModelBenchReport) -> list[Any]:
    """The report as rich tables, in the order the CLI prints them."""
    from rich.table import Table

    tables = []
    contexts = list(dict.fromkeys(r["context"] for r in report.attention))
    batches = list(dict.fromkeys(r["batch"] for r in report.attention))
    at = {(r["context"], r["batch"]): r for r in report.attention}
    columns = [f"B={b} {what}" for b in batches for what in ("dense", "DSA", "×")]
    t = Table("context", *columns, title="DSA vs dense attention: decode ms per token (same weights, side by side)")
    for L in contexts:
        keys = ("decode_dense_ms_per_token", "decode_dsa_ms_per_token", "decode_speedup")
        t.add_row(f"{int(L):,}", *(f"{at[L, b][k]:.2f}" for b in batches for k in keys))
    tables.append(t)
    t = Table("context", "dense s", "DSA s", "× prefill", title="DSA vs dense attention: prefill of one row")
    for L in contexts:
        r = at[L, batches[0]]
        t.add_row(f"{int(L):,}", *(f"{r[k]:.2f}" for k in ("prefill_dense_s", "prefill_dsa_s", "prefill_speedup")))
    tables.append(t)
    c = report.cache
    t = Table("cache", "bytes/token (fp32, all layers)", "vs DSA", title="KV cache per token")
    t.add_row("DSA: latent + rope key + indexer key", f"{c['dsa_bytes_per_token']:.0f}", "1.00")
    t.add_row(
        "MLA only (dense attention)",
        f"{c['mla_bytes_per_token']:.0f}",
        f"{c['mla_bytes_per_token'] / c['dsa_bytes_per_token']:.2f}",
    )
    t.add_row("plain multi-head KV, same heads", f"{c['mha_bytes_per_token']:.0f}", f"{c['mha_over_dsa']:.2f}")
    tables.append(t)
    t = Table(
        "ffn",
        "total params",
        "active params",
        "forward tok/s",
        "train tok/s",
        title="MoE vs dense FFN with the same active parameters",
    )
    for r in report.ffn:
        t.add_row(
            r["ffn"],
            f"{r['total_params']:,}",
            f"{r['active_params']:,}",
            f"{r['forward_tokens_per_s']:.0f}",
            f"{r['train_tokens_per_s']:.0f}",
        )
    tables.append(t)
    if report.quality:
        q = report.quality
        t = Table(
            "run",
            "held-out loss",
            title=f"quality: {q['pretrain_steps']} dense steps, then "
            f"{q['branch_steps']} steps per branch (seq {q['seq_len']}, top-k {q['index_topk']})",
        )
        t.add_row("shared dense pre-training", f"{q['pretrain_val_loss']:.4f}")
        t.add_row("  sparse, random indexer (no training)", f"{q['sparse_val_loss_random_indexer']:.4f}")
        t.add_row(
            f"  sparse after {q['warmup_steps']} indexer warm-up steps", f"{q['sparse_val_loss_after_warmup']:.4f}"
        )
        t.add_row("dense branch", f"{q['dense_val_loss']:.4f}")
        t.add_row("DSA branch (warm-up + sparse)", f"{q['dsa_val_loss']:.4f}")
        t.add_row("DSA vs dense", f"{100 * q['dsa_relative_gap']:+.2f}%")
        tables.append(t)
    if report.balance:
        t = Table(
            "MoE layer",
            "max/mean load, learned bias",
            "max/mean load, bias zeroed",
            title="expert load balance on held-out text (DSA branch)",
        )
        for r in report.balance:
            t.add_row(str(r["layer"]), f"{r['max_over_mean_learned_bias']:.2f}", f"{r['max_over_mean_zero_bias']:.2f}")
        tables.append(t)
    return tables
