"""`toolgym bench learn`: the stage/resume logic on fake stages, the micro profile end to end, bad arguments."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from toolgym.bench.learn import STAGES, Stage, load_state, run_stages
from toolgym.bench.learn_config import DEFAULT_LOOKUP, LearnConfig, load_learn_config, micro_profile
from toolgym.bench.learn_report import build_report, report_markdown
from toolgym.cli import app
from toolgym.errors import ConfigError


def _fake_stages(calls: list[str], fail: str | None = None) -> list[Stage]:
    def run(name: str) -> dict[str, object]:
        calls.append(name)
        if name == fail:
            raise RuntimeError(f"{name} broke")
        return {"ran": name}

    return [Stage(name, lambda name=name: run(name)) for name in ("a", "b", "c")]


def test_finished_stages_are_recorded_and_never_run_again(tmp_path):
    config = micro_profile()
    calls: list[str] = []
    state = run_stages(tmp_path, load_state(tmp_path, config), _fake_stages(calls), until="b")
    assert calls == ["a", "b"] and list(state["stages"]) == ["a", "b"]  # --until stops after b
    saved = json.loads((tmp_path / "learn.json").read_text())
    assert saved["config"] == config.model_dump(mode="json") and saved["stages"]["b"]["result"] == {"ran": "b"}
    lines: list[str] = []
    state = run_stages(tmp_path, load_state(tmp_path, config), _fake_stages(calls), log=lines.append)
    assert calls == ["a", "b", "c"]  # the rerun ran only c
    assert lines[0].startswith("a: finished earlier") and lines[-1].startswith("c: done")
    assert list(state["stages"]) == ["a", "b", "c"]


def test_a_failed_stage_stays_unfinished_and_a_rerun_runs_it_again(tmp_path):
    config = micro_profile()
    calls: list[str] = []
    with pytest.raises(RuntimeError, match="b broke"):
        run_stages(tmp_path, load_state(tmp_path, config), _fake_stages(calls, fail="b"))
    assert list(json.loads((tmp_path / "learn.json").read_text())["stages"]) == ["a"]
    run_stages(tmp_path, load_state(tmp_path, config), _fake_stages(calls))
    assert calls == ["a", "b", "b", "c"]


def test_a_rerun_with_other_settings_is_refused_naming_the_section(tmp_path):
    run_stages(tmp_path, load_state(tmp_path, micro_profile()), _fake_stages([]), until="a")
    other = micro_profile().model_copy(update={"eval": micro_profile().eval.model_copy(update={"samples": 3})})
    with pytest.raises(ConfigError, match=r"other settings \(eval\)"):
        load_state(tmp_path, other)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        load_state(tmp_path / "file", micro_profile())


def test_a_rerun_may_change_devices_and_a_run_recorded_before_a_new_setting_resumes(tmp_path):
    run_stages(tmp_path, load_state(tmp_path, micro_profile()), _fake_stages([]), until="a")
    state = load_state(tmp_path, micro_profile().on_device("auto"))  # bench learn --device: the same run
    assert state["stages"] and state["config"]["lm"]["device"] == "auto"
    recorded = json.loads((tmp_path / "learn.json").read_text())
    del recorded["config"]["lm"]["device"], recorded["config"]["sft"]["train"]["copy_mix"]["lookup"]
    (tmp_path / "learn.json").write_text(json.dumps(recorded))  # as a run from before those settings
    assert load_state(tmp_path, micro_profile())["stages"] == recorded["stages"]
    recorded["config"]["sft"]["train"]["copy_mix"]["cue"] = 2  # a real difference is still named
    (tmp_path / "learn.json").write_text(json.dumps(recorded))
    with pytest.raises(ConfigError, match=r"other settings \(sft\)"):
        load_state(tmp_path, micro_profile())


def test_configs_forbid_unknown_keys_and_profiles_differ(tmp_path):
    assert LearnConfig().profile == "default" and load_learn_config("micro").lm.model == "micro"
    assert LearnConfig().synth.difficulty == (1, 2) and LearnConfig().synth.holdout_archetypes
    assert LearnConfig().lm.lookup == [] and load_learn_config("lookup").lm.lookup == list(DEFAULT_LOOKUP)
    assert (
        load_learn_config("lookup").model_copy(update={"lm": LearnConfig().lm, "profile": "default"}) == LearnConfig()
    )
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"sft": {"train": {"stepz": 3}}}))
    with pytest.raises(ConfigError, match=r"sft\.train\.stepz: Extra inputs are not permitted"):
        load_learn_config("default", bad)
    good = tmp_path / "g.json"
    good.write_text(micro_profile().model_dump_json())
    assert load_learn_config("default", good) == micro_profile()  # the file replaces the profile
    good.write_bytes(b"\xef\xbb\xbf" + good.read_bytes())  # with a UTF-8 byte-order mark, as some editors save
    assert load_learn_config("default", good) == micro_profile()
    with pytest.raises(ConfigError, match="--profile must be one of default, micro, lookup"):
        load_learn_config("huge")
    short = micro_profile().model_dump()
    short["lm"]["lookup"][0]["train"]["seq_len"] = 40  # refused when loaded, not an hour into a run
    bad.write_text(json.dumps(short))
    with pytest.raises(ConfigError, match=r"lm\.lookup\.0: .*train\.seq_len >= 63"):
        load_learn_config("default", bad)
    short = micro_profile().model_dump()
    short["lm"]["induction"][1]["train"]["stage"] = "indexer_warmup"  # it would train the indexer alone
    bad.write_text(json.dumps(short))
    with pytest.raises(ConfigError, match="induction and lookup phases train dense or sparse"):
        load_learn_config("default", bad)
    on = micro_profile().on_device("auto")  # bench learn --device: every stage that runs the model
    assert (on.lm.device, on.sft.device, on.grpo.train.device, on.eval.device) == ("auto",) * 4
    assert on.model_copy(update={k: getattr(micro_profile(), k) for k in ("lm", "sft", "grpo", "eval")}) == (
        micro_profile()
    )  # and nothing else


def test_report_checks_the_targets_on_held_out_worlds():
    def ev(p: float) -> dict[str, object]:
        group = {"tasks": 4, "episodes": 8, "pass@1": [p, 0.1], "mean_reward": p, "rewards": {"t": [1.0]}}
        return {"seconds": 1.0, "result": {"heldout_worlds": group, "heldout_archetypes": group}}

    state = {"config": {"profile": "x"}, "stages": {"eval_sft": ev(0.35), "eval_grpo": ev(0.4)}}
    report = build_report(state)
    assert report["targets"] == {"sft_pass1_ge_30pct": True, "grpo_ge_sft_plus_10pts": False}  # +5 points only
    assert report["groups"] == ["heldout_worlds", "heldout_archetypes"]
    assert "rewards" not in report["stages"]["eval_sft"]["result"]["heldout_worlds"]
    state["stages"]["eval_grpo"] = ev(0.46)
    assert build_report(state)["targets"]["grpo_ge_sft_plus_10pts"] is True
    del state["stages"]["eval_grpo"]
    report = build_report(state)
    assert report["targets"]["grpo_ge_sft_plus_10pts"] is None and report["pass@1"]["grpo/heldout_worlds"] is None
    assert "not measured" in report_markdown(report) and "0.350 ± 0.100" in report_markdown(report)


@pytest.mark.slow
def test_micro_profile_end_to_end_then_a_rerun_resumes(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["bench", "learn", "--profile", "micro", "--out", str(out)])
    assert result.exit_code == 0, result.output
    state = json.loads((out / "learn.json").read_text())
    assert list(state["stages"]) == [*STAGES, "no_keep_routing"]
    for name in ("report.json", "report.md", "learning_curve.png", "sft/checkpoint/model.safetensors", "ablations.png"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert report["groups"] == ["heldout_worlds", "heldout_archetypes", "code"]  # micro: one other family
    for key, value in report["pass@1"].items():  # every checkpoint x group measured, a rate with an interval
        assert value is not None and 0.0 <= value[0] <= 1.0, key
    eval_sft = state["stages"]["eval_sft"]["result"]
    assert eval_sft["heldout_worlds"]["tasks"] == eval_sft["heldout_archetypes"]["tasks"] == 2
    assert state["stages"]["sft"]["result"]["steps"] == 2 and state["stages"]["grpo"]["result"]["steps"] == 1
    lm = state["stages"]["lm"]["result"]  # the LM's own numbers, not the lookup warm-up's after it
    assert (
        lm["steps"] == 2
        and lm["val_loss"] == json.loads((out / "lm" / "checkpoint" / "config.json").read_text())["meta"]["val_loss"]
    )
    probe = state["stages"]["lm"]["result"]["copy_probe"]  # the repeat probe after each warm-up and the LM
    assert set(probe) == {"after_induction", "after_lm", "after_lookup"}
    assert all(math.isfinite(v["second_nll"]) for v in probe.values())
    assert math.isfinite(state["stages"]["lm"]["result"]["lookup_probe"]["first_value_nll"])
    assert (out / "lm" / "lookup" / "model.safetensors").is_file() and (out / "lm" / "lookup.jsonl").is_file()
    assert (
        "Repeat probe (nats/token" in (out / "report.md").read_text()
        and "Lookup probe (nats" in (out / "report.md").read_text()
    )
    assert (out / "lm" / "induction" / "model.safetensors").is_file() and (out / "lm" / "induction.jsonl").is_file()
    assert [r["run"] for r in report["ablations"]] == ["all on", "no keep_routing"]
    assert (out / "ablations" / "keep_routing" / "checkpoint" / "model.safetensors").is_file()
    assert set(state["stages"]["no_keep_routing"]["result"]["eval"]) == {"heldout_worlds", "heldout_archetypes"}
    weights = out / "grpo" / "checkpoint" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    again = CliRunner().invoke(app, ["bench", "learn", "--profile", "micro", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert again.output.count("finished earlier") == len(STAGES) + 1 and "running" not in again.output
    assert weights.stat().st_mtime_ns == stamp  # nothing retrained
    assert json.loads((out / "learn.json").read_text())["stages"] == state["stages"]


def test_bad_arguments_are_one_error_line(tmp_path):
    cases = [
        (["--profile", "huge"], "--profile must be one of"),
        (["--until", "sftt"], "--until must be one of synth, lm, sft"),
        (["--config", str(tmp_path / "missing.json")], "cannot read it"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(app, ["bench", "learn", "--out", str(tmp_path / "o"), *args])
        assert result.exit_code == 2, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output
    assert not (tmp_path / "o").exists()  # refused before any work
    shown = CliRunner().invoke(app, ["bench", "learn", "--profile", "micro", "--show-config"])
    assert shown.exit_code == 0 and json.loads(shown.output)["profile"] == "micro"


def test_eval_groups_split_the_test_split_by_archetype_and_weigh_difficulties_alike(tmp_path):
    from toolgym.bench.learn_eval import eval_items
    from toolgym.synth import get_family
    from toolgym.synth.config import SynthConfig
    from toolgym.synth.run import synthesize

    held = ["ferry", "library", "payroll", "pharmacy"]
    path = tmp_path / "d.duckdb"
    synthesize(
        SynthConfig(family="domains", count=200, difficulty=(1, 2), holdout_archetypes=held, executor="serial"), path
    )
    groups = eval_items(path, "domains", [1, 2], held, 6)
    fam = get_family("domains")
    for name, items in groups.items():
        assert len(items) == 6 and all(t.split == "test" for t, _ in items)
        assert all((fam.world_archetype(w) in held) == (name == "heldout_archetypes") for _, w in items)
        assert sorted(t.difficulty for t, _ in items) == [1, 1, 1, 2, 2, 2], name
    again = eval_items(path, "domains", [1, 2], held, 6)
    assert {g: [t.task_id for t, _ in v] for g, v in again.items()} == {
        g: [t.task_id for t, _ in v] for g, v in groups.items()
    }
    with pytest.raises(ConfigError, match="no test task in heldout_archetypes"):  # no archetype held out
        eval_items(path, "domains", [1, 2], [], 6)


def test_model_overrides_build_the_model_config_and_refuse_unknown_fields():
    c = LearnConfig()
    mc = c.lm.fresh_model_config()
    assert (mc.n_routed_experts, mc.n_activated_experts, mc.n_shared_experts, mc.moe_inter_dim) == (16, 2, 1, 128)
    assert mc.dim == 256 and c.lm.corpus == "episodes" and c.synth.tasks_per_world == 2
    assert micro_profile().lm.fresh_model_config().dim == 64  # micro, no overrides
    bad = c.model_copy(update={"lm": c.lm.model_copy(update={"model_overrides": {"n_expertz": 4}})})
    with pytest.raises(ConfigError, match="n_expertz"):
        bad.lm.fresh_model_config()


def test_dataset_corpus_takes_the_splits_by_world_and_names_an_empty_one(tmp_path):
    from toolgym.data.dataset import Dataset
    from toolgym.policy.corpus import dataset_corpus
    from toolgym.synth.config import SynthConfig
    from toolgym.synth.run import synthesize

    path = tmp_path / "d.duckdb"
    synthesize(SynthConfig(family="domains", count=40, difficulty=(1, 1), tasks_per_world=2, executor="serial"), path)
    corpus = dataset_corpus(path, family="domains")
    with Dataset(path, read_only=True) as ds:
        want = {s: ["".join(ds.trajectory(t).pieces()) for t in ds.task_ids(split=s)] for s in ("train", "val")}
    assert corpus.train == want["train"] and corpus.val == want["val"] and corpus.train
    assert all(d.startswith("<|system|>") and "<tool_call>" in d for d in corpus.train)
    with pytest.raises(ConfigError, match="no reference trajectory in split train, test"):
        dataset_corpus(path, val_split="test", family="trip")  # no trip task at all


def test_ablation_rows_compare_each_run_with_all_stabilizers_on(tmp_path):
    from toolgym.bench.learn import stage_names
    from toolgym.bench.learn_report import ablation_rows, report_markdown

    def group(p: float) -> dict[str, object]:
        return {"pass@1": [p, 0.1], "tasks": 4, "rewards": {"t": [p]}}

    for folder, rewards in (("grpo", [0.2, 0.4]), ("ablations/keep_routing", [0.2, 0.1])):
        (tmp_path / folder).mkdir(parents=True)
        lines = [json.dumps({"step": i + 1, "reward": r, "kl": 0.01 * (i + 1)}) for i, r in enumerate(rewards)]
        (tmp_path / folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    state = {
        "config": LearnConfig().model_dump(mode="json"),
        "stages": {
            "eval_grpo": {"seconds": 1.0, "result": {"heldout_worlds": group(0.5), "heldout_archetypes": group(0.25)}},
            "no_keep_routing": {"seconds": 2.0, "result": {"steps": 2, "eval": {"heldout_worlds": group(0.125)}}},
        },
    }
    rows = ablation_rows(tmp_path, state)
    assert [r["run"] for r in rows] == ["all on", "no keep_routing"]
    assert rows[0]["mean reward"] == pytest.approx(0.3) and rows[1]["mean reward"] == pytest.approx(0.15)
    assert rows[1]["pass@1 heldout_worlds"] == [0.125, 0.1] and "pass@1 heldout_archetypes" not in rows[1]
    assert rows[0]["mean kl"] == pytest.approx(0.015) and rows[0]["mean entropy"] is None
    report = build_report(state) | {"ablations": rows}
    assert "rewards" not in report["stages"]["no_keep_routing"]["result"]["eval"]["heldout_worlds"]
    md = report_markdown(report)
    assert "| no keep_routing | 2 | 0.125 ± 0.100 |" in md and "ablations.png" in md
    assert stage_names(LearnConfig())[-4:] == [f"no_{s}" for s in LearnConfig().ablations.switches]
    assert stage_names(micro_profile()) == [*STAGES, "no_keep_routing"]


def test_induction_phases_check_their_windows_and_random_streams_skip_special_ids(tmp_path):
    from toolgym.bench.learn import _induction_streams
    from toolgym.bench.learn_config import InductionPhase, _lm_loop
    from toolgym.policy.corpus import Corpus
    from toolgym.policy.tokenizer import Tokenizer

    phases = LearnConfig().lm.induction  # the default curriculum: short random rows, then longer corpus rows
    assert [p.tokens for p in phases] == ["random", "random", "corpus"]
    assert phases[0].train.seq_len < phases[1].train.seq_len
    with pytest.raises(ValueError, match=r"2 \* max <= seq_len \+ 1 = 32"):
        InductionPhase(train=_lm_loop(seq_len=31), max_len=17)
    with pytest.raises(ValueError, match="min <= max"):
        InductionPhase(train=_lm_loop(seq_len=63), min_len=9, max_len=8)
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"lm": {"induction": [{"train": {"seq_len": 15}, "max_len": 12}]}}))
    with pytest.raises(ConfigError, match=r"lm\.induction\.0"):
        load_learn_config("default", bad)
    docs = ["the quick brown fox jumps over the lazy dog " * 20] * 4
    tokenizer = Tokenizer.train(docs, 300)
    train, val = _induction_streams(tokenizer, Corpus(train=docs, val=docs, source="test"), "random", seed=3)
    assert int(train.min()) > max(tokenizer.special_ids.values()) and int(train.max()) < tokenizer.vocab_size
    again, _ = _induction_streams(tokenizer, Corpus(train=docs, val=docs, source="test"), "random", seed=3)
    assert bool((train == again).all()) and len(val) == 200_000  # seeded
    assert len(train.unique()) == tokenizer.vocab_size - max(tokenizer.special_ids.values()) - 1  # every other id drawn
