"""The settings of one synthesis run and the pure functions of ``(settings, world index)``.

Candidate ``(w, k)`` is task ``k`` of world ``w``; both are pure functions of
``(family, seed, w, k)`` (seeds derived with ``numpy.random.SeedSequence``), and world ``w`` has
difficulty ``lo + w mod (hi - lo + 1)`` so every difficulty is represented evenly.

Decision: these live in their own leaf module (pydantic and :mod:`toolgym.spec` only) rather
than in :mod:`toolgym.synth.candidate`, because every part of a run needs them and none of the
rest: the candidate (:mod:`toolgym.synth.candidate`), the executors (which ship the settings to
workers, a Ray executor included, without importing the env machinery) and the resumable run
(:mod:`toolgym.synth.run`). The imports stay acyclic: ``config`` <- ``candidate``, ``executors``
<- ``run``.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from toolgym.spec import DEFAULT_SPLIT_FRACTIONS, derive_seed, family_hash

#: Settings that change how a run is executed, never which rows it writes: a dataset made with
#: one value resumes with any other (:meth:`SynthConfig.resume_key` leaves them out).
EXECUTION_ONLY = frozenset({"count", "workers", "executor"})
#: Options of the solvability filter's policy that change only its speed, never its verdicts.
FILTER_SPEED_OPTIONS = frozenset({"concurrency"})
#: The settings of the solvability filter (:mod:`toolgym.synth.solvable`); left out of
#: :meth:`SynthConfig.resume_key` when it is off, so datasets made before it existed resume.
FILTER_FIELDS = ("solvable_by", "solvable_k", "solvable_options")


class SynthConfig(BaseModel):
    """Settings of one ``toolgym synth`` run (all but :data:`EXECUTION_ONLY` must match to resume).

    ``workers`` defaults to the CPU count, which the ``serial`` executor ignores (it runs one
    worker). Decision: an explicitly given ``workers`` > 1 with ``executor="serial"`` is refused
    (ValidationError) rather than silently run on one worker; the default is not, so
    ``SynthConfig(family=..., executor="serial")`` stays valid on any machine.

    ``solvable_by`` turns the solvability filter on (:mod:`toolgym.synth.solvable`): ``solvable_k``
    samples of that ``toolgym.POLICIES`` policy, built with ``solvable_options`` and seeded with
    ``seed``, judge every gate-passing candidate. Options without a policy, or a ``seed`` among
    them, are refused (ValidationError).
    """

    model_config = ConfigDict(extra="forbid")

    family: str
    # Seeds and counts are stored as signed 64-bit integers (DuckDB BIGINT, numpy): checked here,
    # before synthesize creates the dataset file.
    count: int = Field(default=100, ge=1, lt=2**63, description="tasks to ship")
    difficulty: tuple[int, int] = Field(default=(1, 5), description="inclusive difficulty range")
    seed: int = Field(default=0, ge=0, lt=2**63)
    tasks_per_world: int = Field(default=4, ge=1, le=64)
    split_fractions: tuple[float, float, float] = Field(
        default=DEFAULT_SPLIT_FRACTIONS, description="train, val, test by world"
    )
    holdout: bool = Field(default=False, description="hold the whole family out: every world goes to test")
    holdout_archetypes: list[str] = Field(
        default_factory=list,
        description="archetypes held out whole: their worlds go to test (families with archetypes: domains)",
    )
    random_tries: int = Field(default=8, ge=0, lt=2**63)
    random_pass_max: tuple[float, float, float, float, float] = Field(
        default=(0.05, 0.001, 0.001, 0.001, 0.001),
        description="per difficulty 1-5: the highest exact chance a random plausible answer may pass "
        "(families that compute it, Family.random_pass); difficulty 1 (one or two calls, for a small "
        "policy to learn) allows 5%, the others 0.1% (issue 11)",
    )
    bluff_tries: int = Field(default=2, ge=0, lt=2**63)
    vandal_tries: int = Field(
        default=2, ge=0, lt=2**63, description="vandal agents per task with a state check and a write tool"
    )
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    executor: str = Field(
        default="local", description="how worlds run: an id of toolgym.EXECUTORS (the rows do not depend on it)"
    )
    max_candidates_per_task: int = Field(default=20, ge=1, description="give up if the drop rate is this bad")
    solvable_by: str | None = Field(
        default=None, description="solvability filter: an id of toolgym.POLICIES (None: no filter)"
    )
    solvable_k: int = Field(
        default=8, ge=2, description="samples of the filter's policy per task (with 1, no task is sometimes solved)"
    )
    solvable_options: dict[str, Any] = Field(
        default_factory=dict, description="the filter policy's options (its seed is the run's seed)"
    )

    @model_validator(mode="after")
    def _check(self) -> SynthConfig:
        lo, hi = self.difficulty
        if not 1 <= lo <= hi <= 5:
            raise ValueError(f"difficulty range must satisfy 1 <= lo <= hi <= 5, got {lo}-{hi}")
        if abs(sum(self.split_fractions) - 1.0) > 1e-6 or min(self.split_fractions) < 0:
            raise ValueError(f"split fractions must be non-negative and sum to 1, got {self.split_fractions}")
        if self.executor == "serial" and self.workers > 1 and "workers" in self.model_fields_set:
            raise ValueError(
                f"the serial executor runs one worker, got workers={self.workers} "
                "(use executor 'local' for several, or leave workers out)"
            )
        if self.solvable_options and self.solvable_by is None:
            raise ValueError(f"policy options {sorted(self.solvable_options)} need a solvable_by policy")
        if "seed" in self.solvable_options:
            raise ValueError("solvable_options may not hold a seed: the filter's policy is seeded with the run's seed")
        return self

    def resume_key(self) -> dict[str, Any]:
        """The settings that must match for a dataset to be resumed or extended (all but :data:`EXECUTION_ONLY`)."""
        key = canonical_key(self.model_dump(mode="json", exclude=set(EXECUTION_ONLY)))
        if self.solvable_by is None:
            for name in FILTER_FIELDS:
                del key[name]
        else:
            key["solvable_options"] = {
                o: v for o, v in key["solvable_options"].items() if o not in FILTER_SPEED_OPTIONS
            }
        return key


def world_seed(config: SynthConfig, w: int) -> int:
    """The seed of world ``w``."""
    return derive_seed(config.seed, family_hash(config.family), w)


def world_difficulty(config: SynthConfig, w: int) -> int:
    """Round-robin over the difficulty range."""
    lo, hi = config.difficulty
    return lo + w % (hi - lo + 1)


def on_the_fly_config(family_id: str, seed: int, difficulty: int = 1) -> SynthConfig:
    """The run an on-the-fly task comes from: world 0 of a one-world run with ``seed``."""
    return SynthConfig(family=family_id, seed=seed, difficulty=(difficulty, difficulty), tasks_per_world=8, workers=1)


__all__ = [
    "EXECUTION_ONLY",
    "FILTER_FIELDS",
    "FILTER_SPEED_OPTIONS",
    "SynthConfig",
    "on_the_fly_config",
    "world_difficulty",
    "world_seed",
]


def canonical_key(key: dict[str, Any]) -> dict[str, Any]:
    """``key`` with its set-valued settings in one spelling (``holdout_archetypes`` sorted, unique).

    ``--holdout-archetypes marina,ferry`` writes the rows ``ferry,marina`` writes, so the two
    resume each other; a manifest stored before this spelling is read through it too.
    """
    names = key.get("holdout_archetypes")
    if isinstance(names, list):
        return {**key, "holdout_archetypes": sorted(set(names))}
    return key
