"""The settings of ``toolgym bench learn``: one pydantic config per stage, and the profiles.

The stages reuse the training code's own configs, so a setting means here what it means in
``toolgym train lm|sft|grpo``: ``LMTrainConfig`` for the LM and the SFT loops, ``GRPOConfig`` for
GRPO. What a stage needs besides its loop (the corpus and tokenizer of the LM, the eval's tasks and
sampling) sits beside it in the stage's model. Every model forbids unknown keys, so a config file
with a typo is refused, not half-applied.

Profiles (:data:`PROFILES`):

* ``default``: sized to the issue's budget of ≤ 90 minutes on the shared 2-core CPU (planned:
  synth < 1 min, LM ~6 min, SFT ~40 min, GRPO ~25 min, two evals ~5 min each; the measured times
  go into the report). The default model config (dim 256, 72 routed experts), not micro: the
  micro model reached pass@1 0.008 after ~25 CPU minutes of SFT on code d1 (docs/sft.md), and
  capacity was the lever named there.
* ``micro``: the micro model and a handful of steps and tasks, for the end-to-end test (seconds).
* ``lookup``: ``default`` with the lookup warm-up (:data:`DEFAULT_LOOKUP`, ~40 min more here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from toolgym.errors import ConfigError
from toolgym.policy.grpo_train import GRPOConfig
from toolgym.policy.model import ModelConfig
from toolgym.policy.train_lm import LMTrainConfig

#: Archetypes of ``domains`` held out whole by default (about a tenth of the 41): their worlds go to
#: the test split, so pass@1 on them measures transfer to domains never seen in training.
HOLDOUT_ARCHETYPES = ("ferry", "library", "payroll", "pharmacy")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _lm_loop(**settings: Any) -> LMTrainConfig:
    """An LM or SFT loop: ``LMTrainConfig`` with batch 4, 4 held-out batches, eval every 100 steps, and ``settings``."""
    return LMTrainConfig.model_validate({"batch_size": 4, "eval_every": 100, "eval_batches": 4, **settings})


class InductionPhase(_Strict):
    """One phase of the induction warm-up: ``policy.induction.repeat_batches`` rows, loss on the second copy.

    Attributes:
        train: the loop; ``seq_len`` is the row length (inputs per row).
        min_len: the shortest repeated window (tokens).
        max_len: the longest (inclusive); ``2 * max_len <= train.seq_len + 1``.
        tokens: ``random``: uniform over the tokenizer's non-special ids (only copying lowers the
            loss, and every id is taught alike); ``corpus``: the train split's token stream.
    """

    train: LMTrainConfig
    min_len: int = Field(default=4, ge=2)
    max_len: int = Field(default=12, ge=2)
    tokens: Literal["random", "corpus"] = "random"

    @model_validator(mode="after")
    def _windows_fit(self) -> InductionPhase:
        if self.min_len > self.max_len or 2 * self.max_len > self.train.seq_len + 1:
            raise ValueError(
                f"induction windows {self.min_len}..{self.max_len} must satisfy min <= max and "
                f"2 * max <= seq_len + 1 = {self.train.seq_len + 1}"
            )
        return self


#: The default warm-up (issue 12's measurements, ``policy/induction.py``): content copying forms in
#: short rows (32 tokens, windows 4-12: few positions to search) of random ids, then carries over to
#: long rows, then to the corpus's tokens. Our model at V 4,096 left the plateau at ~1,000 steps of
#: the first phase at lr 1e-3 held constant (at 3e-3 it had not left it by 600; at 1e-3, 7.9 nats
#: at 800 and 4.3 at 1,200; starting on 448 ids then widening to all gave no head start).
DEFAULT_INDUCTION = (
    InductionPhase(
        train=_lm_loop(
            steps=1600,
            batch_size=64,
            seq_len=31,
            lr=1e-3,
            min_lr_ratio=1.0,
            warmup_steps=20,
            eval_every=200,
            checkpoint_every=200,
        )
    ),
    InductionPhase(
        train=_lm_loop(
            steps=200, batch_size=16, seq_len=255, lr=1e-3, min_lr_ratio=1.0, warmup_steps=0, checkpoint_every=100
        ),
        max_len=32,
    ),
    InductionPhase(
        train=_lm_loop(steps=200, batch_size=16, seq_len=255, lr=1e-3, warmup_steps=0, checkpoint_every=100),
        max_len=32,
        tokens="corpus",
    ),
)


class LookupPhase(_Strict):
    """One phase of the lookup warm-up: ``policy.lookup.lookup_batches`` rows, loss on the values.

    Attributes:
        train: the loop; rows are as long as they are (~45 tokens, ~110 wrapped), and those
            over ``train.seq_len + 1`` tokens are drawn again.
        max_facts: most facts per request.
        json_share: the share of facts stated as their JSON pair at the phase's first step.
        json_decay_steps: steps over which that share falls linearly to 0 (0: it stays).
        wrap: rows shaped as a request and a ``find_*`` call, not bare facts and an object.
    """

    train: LMTrainConfig
    max_facts: int = Field(default=3, ge=1, le=8)
    json_share: float = Field(default=1.0, ge=0.0, le=1.0)
    json_decay_steps: int = Field(default=300, ge=0)
    wrap: bool = False

    @model_validator(mode="after")
    def _rows_fit(self) -> LookupPhase:
        from toolgym.policy.lookup import MIN_ROW_TOKENS

        if self.train.seq_len + 1 < MIN_ROW_TOKENS:
            raise ValueError(f"lookup rows need train.seq_len >= {MIN_ROW_TOKENS - 1}, not {self.train.seq_len}")
        return self


#: The default lookup warm-up after LM pre-training (``policy/lookup.py``): bare rows with the
#: JSON-pair curriculum (the lookup formed in them: first value token 0.37 nats median at step 400,
#: from 5.0 after 1,200 steps without the curriculum), then rows shaped as requests and calls.
_LOOKUP_LOOP = {"batch_size": 64, "seq_len": 255, "lr": 2e-3, "min_lr_ratio": 1.0, "warmup_steps": 20} | {
    "eval_every": 50,
    "checkpoint_every": 100,
}
DEFAULT_LOOKUP = (  # as measured: lr 2e-3 held constant after 20 warm-up steps in both phases
    LookupPhase(train=_lm_loop(steps=400, **_LOOKUP_LOOP)),
    LookupPhase(train=_lm_loop(steps=300, **_LOOKUP_LOOP), json_share=0.5, json_decay_steps=150, wrap=True),
)


#: Repeat rows mixed into LM pre-training and SFT (``train_lm.CopyMix``): one step in three, rows of
#: 256 tokens with windows of 4-32. Without them 350 LM steps took the warm-up's copying from 4.96
#: nats to 11.37 (worse than chance); SFT with them from the warm-up's checkpoint brought it from 5.25
#: to 2.45 on 512-token rows in 600 steps, and the model began copying names from the prompt.
COPY_MIX = {"every": 3, "batch_size": 16, "seq_len": 255, "min_len": 4, "max_len": 32}


class SynthStage(_Strict):
    """The dataset: ``domains`` tasks split by world, with whole archetypes held out to test.

    Attributes:
        count: tasks to ship (train, val and test together; splits are by world).
        difficulty: inclusive difficulty range.
        seed: the synthesis run's seed.
        holdout_archetypes: archetypes whose every world goes to the test split.
        workers: synthesis processes.
        tasks_per_world: candidate tasks per world. Two, not the family's 16: the policy must
            generalise to worlds it never saw, and 16 tasks a world gave SFT only ~43 distinct
            schemas in 700 tasks; at two a world, 4,375 train tasks come from ~2,200 worlds.
    """

    count: int = Field(default=6000, ge=10)
    difficulty: tuple[int, int] = (1, 2)
    seed: int = Field(default=0, ge=0, lt=2**63)
    holdout_archetypes: list[str] = Field(default_factory=lambda: list(HOLDOUT_ARCHETYPES), min_length=1)
    workers: int = Field(default=2, ge=1)
    tasks_per_world: int = Field(default=2, ge=1, le=64)


class LMStage(_Strict):
    """LM pre-training (``toolgym train lm``) and the tokenizer SFT and GRPO keep.

    Attributes:
        train: the loop (stage ``dense``).
        model: the fresh model's config: ``default`` or ``micro``, then ``model_overrides``.
        model_overrides: ``ModelConfig`` fields to change (unknown keys are refused). The
            default profile keeps the default width and active parameters but uses 16 routed
            experts (top-2, one shared, 128 wide) instead of 72 (top-4, two shared, 64 wide):
            1.33x the training tokens/s on this CPU (2,260 vs 1,700 at batch 4 x 1,024), and
            it is still a fine-grained MoE whose routing GRPO must keep.
        induction: the induction warm-up before LM pre-training, phase after phase on the same
            model (empty: none); see :class:`InductionPhase`. The default is the curriculum that
            formed a content-copying head on this CPU: short rows of random tokens first, then
            longer rows of the corpus (the measurements are in ``policy/induction.py``).
        lookup: the lookup warm-up after LM pre-training, phase after phase (empty, the default:
            none, and SFT starts from the LM's checkpoint); see :class:`LookupPhase`,
            ``policy/lookup.py`` and the ``lookup`` profile. Off by default until a full run shows
            it raises pass@1: the one SFT run from it (300 steps) had a lower val loss than
            without (0.61 vs 0.72) but garbled greedy actions and pass@1 0, as without.
        corpus: ``episodes``: the train split's reference episodes (``corpus.dataset_corpus``,
            val split held out), the text the policy acts in; ``stdlib``: the standard library's
            source (``corpus_bytes`` of it). The tokenizer is trained on the same corpus.
        corpus_bytes: size of the standard-library corpus (``stdlib`` only).
        vocab_size: size of the tokenizer trained on the corpus (SFT and GRPO keep it).
        device: where the warm-ups and pre-training run: cpu, cuda or auto.
    """

    train: LMTrainConfig = Field(
        default_factory=lambda: _lm_loop(
            steps=350, seq_len=1024, lr=2e-3, warmup_steps=20, eval_every=50, checkpoint_every=50, copy_mix=COPY_MIX
        )
    )
    induction: list[InductionPhase] = Field(default_factory=lambda: list(DEFAULT_INDUCTION))
    lookup: list[LookupPhase] = Field(default_factory=list)
    model: Literal["default", "micro"] = "default"
    model_overrides: dict[str, int | float | bool] = Field(
        default_factory=lambda: (
            {"n_routed_experts": 16, "n_activated_experts": 2, "n_shared_experts": 1} | {"moe_inter_dim": 128}
        )
    )
    corpus: Literal["episodes", "stdlib"] = "episodes"
    corpus_bytes: int = Field(default=2_000_000, ge=10_000)
    vocab_size: int = Field(default=4096, ge=300)
    device: Literal["cpu", "cuda", "auto"] = "cpu"

    def fresh_model_config(self) -> ModelConfig:
        """The fresh model's config (``vocab_size`` is set later to the tokenizer's).

        Raises:
            ConfigError: an unknown field or an invalid value in ``model_overrides``.
        """
        base = ModelConfig.micro() if self.model == "micro" else ModelConfig()
        return ModelConfig.from_dict(base.to_dict() | self.model_overrides)


class SFTStage(_Strict):
    """SFT from the LM checkpoint on the train split's reference trajectories (``toolgym train sft``).

    Attributes:
        train: the loop (stage ``dense``; ``seq_len`` bounds an episode, longer ones are cut at an action).
        action_prompts: val prompts for the action-validity probe at each held-out eval (0: none).
        device: where it trains: cpu, cuda or auto.
    """

    train: LMTrainConfig = Field(
        default_factory=lambda: _lm_loop(
            steps=300, seq_len=2048, lr=2e-3, warmup_steps=20, checkpoint_every=50, copy_mix=COPY_MIX
        )
    )
    action_prompts: int = Field(default=16, ge=0)
    device: Literal["cpu", "cuda", "auto"] = "cpu"


class GRPOStage(_Strict):
    """GRPO from the SFT checkpoint on the dataset's train tasks (``toolgym train grpo``).

    Attributes:
        train: the run's settings, every stabilizer and filter on (GRPOConfig's defaults).
    """

    train: GRPOConfig = Field(
        default_factory=lambda: GRPOConfig.model_validate(
            {"steps": 12, "tasks_per_step": 4, "lr": 2e-5, "max_new_tokens": 128, "max_turns": 8}
            | {"checkpoint_every": 2, "device": "cpu"}
        )
    )


#: The V3.2 stabilizers an ablation switches off, one run each (``GRPOConfig`` field names).
STABILIZERS = ("keep_routing", "off_policy_mask", "keep_sampling_mask", "unbiased_kl")
Stabilizer = Literal["keep_routing", "off_policy_mask", "keep_sampling_mask", "unbiased_kl"]


class AblationStage(_Strict):
    """GRPO again from the same SFT checkpoint with one stabilizer off, for each one named.

    Each run is the ``grpo`` stage's run (same seed, tasks, steps and budget) with the one switch
    set to False, then the eval of its checkpoint on the held-out worlds and archetypes (the
    other families are left out: they measure transfer, not the stabilizer).

    Attributes:
        switches: the stabilizers to ablate, in run order (empty: no ablation stages).
    """

    switches: list[Stabilizer] = Field(default_factory=lambda: list(STABILIZERS))


class EvalStage(_Strict):
    """pass@1 of a checkpoint on the test split: held-out worlds and held-out archetypes, apart.

    Attributes:
        tasks: tasks per group at most (the first of the test split, in dataset order).
        samples: episodes per task (n of pass@k; pass@1 is the mean success rate).
        temperature, top_p: sampling, as GRPO samples (pass@1 is then the policy GRPO trains).
        max_new_tokens: token budget of one action.
        max_turns: turns per episode.
        seed: seeds the samples.
        device: cpu, cuda or auto.
        families: other families, each a group of its own: ``family_tasks`` tasks of the lowest
            difficulty synthesized on the fly from test-split world seeds (transfer beyond
            ``domains``; the issue asks for trip and code).
        family_tasks: tasks per other family.
    """

    tasks: int = Field(default=24, ge=1)
    samples: int = Field(default=4, ge=1)
    temperature: float = Field(default=1.0, ge=0)
    top_p: float = Field(default=0.95, gt=0, le=1)
    max_new_tokens: int = Field(default=128, ge=1)
    max_turns: int = Field(default=8, ge=1)
    seed: int = Field(default=0, ge=0, lt=2**63)
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    families: list[str] = Field(default_factory=lambda: ["code", "trip"])
    family_tasks: int = Field(default=6, ge=1)


class LearnConfig(_Strict):
    """The whole pipeline: synth → lm → sft → eval_sft → grpo → eval_grpo (see :mod:`toolgym.bench.learn`).

    Attributes:
        profile: the profile it started from (recorded in the report).
        synth, lm, sft, grpo, eval: each stage's settings (every eval shares ``eval``).
        ablations: the GRPO runs with one stabilizer off (after the main pipeline).
    """

    profile: str = "default"
    synth: SynthStage = SynthStage()
    lm: LMStage = LMStage()
    sft: SFTStage = SFTStage()
    grpo: GRPOStage = GRPOStage()
    eval: EvalStage = EvalStage()
    ablations: AblationStage = AblationStage()

    @model_validator(mode="after")
    def _check(self) -> LearnConfig:
        lo, hi = self.synth.difficulty
        if not 1 <= lo <= hi <= 5:
            raise ValueError(f"synth.difficulty must satisfy 1 <= lo <= hi <= 5, got {lo}-{hi}")
        if len(set(self.ablations.switches)) != len(self.ablations.switches):
            raise ValueError("ablations.switches names a stabilizer twice")
        if self.sft.train.stage == "indexer_warmup" or self.lm.train.stage == "indexer_warmup":
            raise ValueError("the lm and sft stages train dense or sparse, not indexer_warmup")
        warm_ups = [p.train.stage for p in [*self.lm.induction, *self.lm.lookup]]
        if "indexer_warmup" in warm_ups:  # it trains the indexer alone: the phase would teach nothing
            raise ValueError("the induction and lookup phases train dense or sparse, not indexer_warmup")
        return self

    def on_device(self, device: Literal["cpu", "cuda", "auto"]) -> LearnConfig:
        """These settings with every stage that runs the model (lm, sft, grpo, eval) on ``device``."""
        return self.model_copy(
            update={
                "lm": self.lm.model_copy(update={"device": device}),
                "sft": self.sft.model_copy(update={"device": device}),
                "grpo": GRPOStage(train=self.grpo.train.model_copy(update={"device": device})),
                "eval": self.eval.model_copy(update={"device": device}),
            }
        )


def micro_profile() -> LearnConfig:
    """A few steps of the micro model on a few tasks: the whole pipeline, tiny warm-ups included, in minutes (tests)."""
    return LearnConfig(
        profile="micro",
        synth=SynthStage(count=200, workers=1),
        lm=LMStage(
            train=_lm_loop(steps=2, batch_size=2, seq_len=64, warmup_steps=1, eval_every=2, eval_batches=1),
            induction=[
                InductionPhase(train=_lm_loop(steps=2, batch_size=2, seq_len=31, warmup_steps=1, eval_every=2)),
                InductionPhase(train=_lm_loop(steps=1, batch_size=2, seq_len=63, eval_every=1), tokens="corpus"),
            ],
            lookup=[
                LookupPhase(
                    train=_lm_loop(steps=2, batch_size=2, seq_len=255, warmup_steps=1, eval_every=2), max_facts=2
                ),
                LookupPhase(train=_lm_loop(steps=1, batch_size=2, seq_len=255, eval_every=1), wrap=True),
            ],
            model="micro",
            model_overrides={},
            corpus_bytes=100_000,
            vocab_size=1024,
        ),
        sft=SFTStage(
            train=_lm_loop(
                steps=2,
                batch_size=1,
                seq_len=2048,
                warmup_steps=1,
                eval_every=2,
                eval_batches=1,
                copy_mix={"every": 2, "batch_size": 2, "seq_len": 31, "max_len": 8},
            ),
            action_prompts=1,
        ),
        grpo=GRPOStage(
            train=GRPOConfig.model_validate(
                {"steps": 1, "tasks_per_step": 2, "group_size": 2, "updates_per_step": 1, "micro_batch": 2}
                | {"max_new_tokens": 12, "max_turns": 2, "checkpoint_every": 1, "device": "cpu"}
            )
        ),
        eval=EvalStage(tasks=2, samples=1, max_new_tokens=12, max_turns=2, families=["code"], family_tasks=1),
        ablations=AblationStage(switches=["keep_routing"]),
    )


def lookup_profile() -> LearnConfig:
    """The default profile with the lookup warm-up (:data:`DEFAULT_LOOKUP`) after LM pre-training."""
    return LearnConfig(profile="lookup", lm=LMStage(lookup=list(DEFAULT_LOOKUP)))


PROFILES = {"default": LearnConfig, "micro": micro_profile, "lookup": lookup_profile}


def load_learn_config(profile: str, path: Path | None = None) -> LearnConfig:
    """The settings of a run: a JSON file's (``path``), else the profile's.

    Raises:
        ConfigError: an unknown profile, a file that cannot be read or is not JSON, or settings
            the config refuses (one line naming the first problems).
    """
    if path is None:
        if profile not in PROFILES:
            raise ConfigError(f"--profile must be one of {', '.join(PROFILES)}, not {profile!r}")
        return PROFILES[profile]()
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM (some editors write one) is not JSON
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config {path}: cannot read it ({exc})") from None
    try:
        return LearnConfig.model_validate_json(text)
    except ValidationError as exc:
        parts = [f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors()[:3]]
        raise ConfigError(f"--config {path}: " + "; ".join(parts)) from None
