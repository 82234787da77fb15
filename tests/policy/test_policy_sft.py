"""SFT cold start: exact action masks, no episode crossing, learning, resume, CLI errors."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from toolgym.cli import app
from toolgym.data.dataset import Dataset
from toolgym.policy.sft import CHECKPOINT, METRICS, PLOT, train_sft
from toolgym.policy.sft_data import SFTData, encode_episode, load_episodes
from toolgym.policy.tokenizer import Tokenizer
from toolgym.policy.train_lm import LMTrainConfig


@pytest.fixture(scope="module")
def sft_dataset(tmp_path_factory):
    from toolgym.synth.config import SynthConfig
    from toolgym.synth.run import synthesize

    path = tmp_path_factory.mktemp("sft") / "trip.duckdb"
    synthesize(
        SynthConfig(family="trip", count=24, workers=1, seed=3, split_fractions=(0.6, 0.4, 0.0), difficulty=(1, 1)),
        path,
    )
    return path


@pytest.fixture(scope="module")
def tok(sft_dataset):
    with Dataset(sft_dataset, read_only=True) as ds:
        return Tokenizer.train([ds.trajectory(t).text for t in ds.task_ids(split="train")], 400)


def test_mask_covers_exactly_the_actions(sft_dataset, tok):
    with Dataset(sft_dataset, read_only=True) as ds:
        traj = ds.trajectory(ds.task_ids(split="train")[0])
    ep, cut = encode_episode(tok, traj, 10**6)
    assert ep is not None and not cut and ep.turns == len(traj.actions)
    runs, cur = [], []
    for i, m in zip(ep.ids, ep.mask, strict=True):
        if m:
            cur.append(i)
        elif cur:
            runs.append(cur)
            cur = []
    runs += [cur] if cur else []
    assert [tok.decode(r) for r in runs] == traj.actions
    # the row is the whole context but the final (verdict) observation, token-exact
    assert tok.decode(ep.ids[1:]) == traj.text[: len(traj.text) - len(traj.observations[-1])]


def test_long_episodes_are_cut_at_an_action_boundary(sft_dataset, tok):
    with Dataset(sft_dataset, read_only=True) as ds:
        traj = ds.trajectory(ds.task_ids(split="train")[0])
    full, _ = encode_episode(tok, traj, 10**6)
    assert full is not None
    ends = [i + 1 for i in range(len(full.mask)) if full.mask[i] and (i + 1 == len(full.mask) or not full.mask[i + 1])]
    ep, cut = encode_episode(tok, traj, ends[1] + 3)  # room for two actions, not the third
    assert cut and ep is not None and ep.turns == 2 and ep.mask[-1] == 1 and ep.ids == full.ids[: ends[1]]
    none, _ = encode_episode(tok, traj, ends[0] - 1)
    assert none is None


def test_batches_never_mix_episodes(sft_dataset, tok):
    with Dataset(sft_dataset, read_only=True) as ds:
        eps, _, _ = load_episodes(ds, "train", tok, 4096)
    data = SFTData(eps, 3, 4096, tok.pad_id)
    seen = []
    for g in range(len(data.groups)):
        b = data.batch(g)
        for row, idx in zip(b.tokens.tolist(), data.groups[g], strict=True):
            n = len(data.episodes[idx].ids)
            assert row[:n] == data.episodes[idx].ids and set(row[n:]) <= {tok.pad_id}
            assert row.count(tok.bos_id) == 1  # exactly one episode per row
            seen.append(idx)
        assert b.loss_mask is not None and b.loss_mask.shape == (b.tokens.shape[0], b.tokens.shape[1] - 1)
    assert sorted(seen) == list(range(len(eps)))


def _tiny(make_config, vocab):
    return make_config(vocab_size=vocab)


@pytest.mark.slow  # ~100 s of real training (rows of 6,144 tokens); resume and refusal keep default-tier tests below
def test_sft_learns_and_resumes(sft_dataset, tok, make_config, tmp_path):
    cfg = LMTrainConfig(steps=6, batch_size=2, seq_len=6144, lr=3e-3, warmup_steps=0, eval_every=3, checkpoint_every=3)
    out = tmp_path / "run"
    res, data = train_sft(
        sft_dataset,
        out,
        cfg,
        model_config=make_config(),
        vocab_size=1000,
        action_prompts=2,
        max_new_tokens=8,
        progress=False,
    )
    hist = res.history
    assert hist[-1]["loss"] < hist[0]["loss"] and "val_action_valid" in hist[2]
    assert (out / CHECKPOINT).is_dir() and (out / PLOT).is_file()
    # resume: a run with more steps continues at step 6 with the saved optimizer state
    more = cfg.model_copy(update={"steps": 8})
    same = {"model_config": make_config(), "vocab_size": 1000}  # a resume must repeat the run's settings
    res2, _ = train_sft(sft_dataset, out, more, action_prompts=0, progress=False, **same)
    assert [r["step"] for r in res2.history] == [7, 8]
    steps = [json.loads(line)["step"] for line in (out / METRICS).read_text().splitlines()]
    assert steps == list(range(1, 9))


def test_cli_errors_are_one_line(sft_dataset, tmp_path):
    r = CliRunner().invoke(app, ["train", "sft", "-d", str(tmp_path / "nope.duckdb"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "no dataset" in r.output and len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(
        app, ["train", "sft", "-d", str(sft_dataset), "--val-split", "test", "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 2 and "no tasks in the 'test' split" in r.output and len(r.output.strip().splitlines()) == 1


TINY = ["--model", "micro", "--vocab-size", "1000", "--seq-len", "6144", "--batch-size", "2", "--action-prompts", "0"]


def _sft(dataset, out, *extra):
    return CliRunner().invoke(app, ["train", "sft", "-d", str(dataset), "--out", str(out), *TINY, *extra])


def _one_error(r, text):
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], r.output


def test_out_that_is_not_a_run_is_refused_untouched(sft_dataset, tmp_path):
    (tmp_path / "file").write_text("precious")
    _one_error(_sft(sft_dataset, tmp_path / "file", "--steps", "1"), "is a file")
    (tmp_path / "dir" / "checkpoint").mkdir(parents=True)
    (tmp_path / "dir" / "checkpoint" / "notes.txt").write_text("precious")
    _one_error(_sft(sft_dataset, tmp_path / "dir", "--steps", "1"), "notes.txt")
    assert (tmp_path / "file").read_text() == "precious"
    assert [p.name for p in (tmp_path / "dir").rglob("*")] == ["checkpoint", "notes.txt"]


def test_lm_out_that_is_not_a_checkpoint_is_refused_untouched(tmp_path):
    """The issue's repro: ``train lm --out`` at a user's file or directory deletes nothing."""
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "notes.txt").write_text("precious")
    (tmp_path / "f").write_text("precious")
    for out, text in ((tmp_path / "k", "notes.txt"), (tmp_path / "f", "is a file")):
        args = ["--steps", "1", "--batch-size", "1", "--seq-len", "64", "--corpus-bytes", "100000"]
        _one_error(CliRunner().invoke(app, ["train", "lm", "--out", str(out), *args]), text)
    assert (tmp_path / "k" / "notes.txt").read_text() == (tmp_path / "f").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["f", "k", "notes.txt"]


def test_a_diverged_sft_run_is_refused_and_metrics_stay_strict_json(sft_dataset, tmp_path):
    out = tmp_path / "run[/x]"  # a path that reads as rich markup is printed as it is
    r = _sft(sft_dataset, out, "--steps", "1")
    assert r.exit_code == 0 and "".join(f"checkpoint at {out / CHECKPOINT}".split()) in "".join(r.output.split())
    good = (out / CHECKPOINT / "model.safetensors").read_bytes()
    shutil.rmtree(out)
    assert _sft(sft_dataset, out, "--steps", "1").exit_code == 0  # the same run again: a good checkpoint
    assert (out / CHECKPOINT / "model.safetensors").read_bytes() == good
    fresh = tmp_path / "fresh"
    r = _sft(sft_dataset, fresh, "--steps", "2", "--lr", "1e12", "--eval-every", "1")
    _one_error(r, "training diverged at step ")
    assert "lower --lr" in r.output

    def strict(text):
        raise ValueError(text)

    for line in (fresh / METRICS).read_text().splitlines():
        json.loads(line, parse_constant=strict)  # NaN / Infinity are not JSON
    assert not (fresh / CHECKPOINT).exists()


@pytest.fixture(scope="module")
def one_step_run(sft_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft") / "run"
    assert _sft(sft_dataset, out, "--steps", "1").exit_code == 0
    return out


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (["--lr", "2e-3"], "lr"),
        (["--batch-size", "1"], "batch_size"),
        (["--seq-len", "4000"], "seq_len"),
        (["--seed", "1"], "seed"),
        (["--val-split", "train"], "val_split"),
        (["--stage", "sparse"], "stage"),
        (["--model", "default"], "model"),
        (["--vocab-size", "500"], "vocab_size"),
    ],
)
def test_resume_with_other_settings_is_refused(sft_dataset, one_step_run, tmp_path, change, named):
    out = tmp_path / "run"
    shutil.copytree(one_step_run, out)  # the same finished step-1 run for every change (one SFT, not eight)
    r = _sft(sft_dataset, out, "--steps", "2", *change)
    _one_error(r, "different settings (")
    assert named in r.output.split("settings (")[1].split(")")[0].split(", ")  # seq_len may change the data too
    assert json.loads((out / CHECKPOINT / "config.json").read_text())["meta"]["step"] == 1


def test_a_metrics_line_torn_by_an_interrupted_write_does_not_block_the_resume(sft_dataset, one_step_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(one_step_run, out)
    with (out / METRICS).open("a") as f:
        f.write('{"step": 2, "lr": 0.00')  # step 2's record, cut off: no checkpoint was written for it
    r = _sft(sft_dataset, out, "--steps", "2")
    assert r.exit_code == 0, r.output
    assert [json.loads(x)["step"] for x in (out / METRICS).read_text().splitlines()] == [1, 2]


def test_a_corrupt_metrics_line_is_named_and_nothing_is_lost(sft_dataset, one_step_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(one_step_run, out)
    whole = (out / METRICS).read_text()
    (out / METRICS).write_text("not json\n" + whole)  # a line written whole, then damaged: corruption, not a torn write
    _one_error(_sft(sft_dataset, out, "--steps", "2"), "line 1 is not a metrics record")
    assert (out / METRICS).read_text() == "not json\n" + whole  # the log is left as it was
    assert json.loads((out / CHECKPOINT / "config.json").read_text())["meta"]["step"] == 1


def test_resume_names_another_dataset_and_extends_with_the_same_settings(sft_dataset, tmp_path):
    out = tmp_path / "run"
    assert _sft(sft_dataset, out, "--steps", "1").exit_code == 0
    copy = tmp_path / "copy.duckdb"
    shutil.copy(sft_dataset, copy)
    _one_error(_sft(copy, out, "--steps", "2"), "different settings (dataset)")
    r = _sft(sft_dataset, out, "--steps", "2", "--eval-every", "7", "--checkpoint-every", "0")
    assert r.exit_code == 0, r.output
    assert [json.loads(x)["step"] for x in (out / METRICS).read_text().splitlines()] == [1, 2]
    _one_error(_sft(sft_dataset, out, "--steps", "1"), "already at step 2; --steps 1 cannot shorten it")
    assert [json.loads(x)["step"] for x in (out / METRICS).read_text().splitlines()] == [1, 2]  # nothing cut


@pytest.mark.slow  # ~100 s of real training (rows of 6,144 tokens)
def test_a_resumed_mixed_run_sees_the_batches_of_an_uninterrupted_one(sft_dataset, make_config, tmp_path):
    mix = {"every": 2, "batch_size": 2, "seq_len": 31, "min_len": 2, "max_len": 8}
    cfg = LMTrainConfig.model_validate(
        {"steps": 4, "batch_size": 2, "seq_len": 6144, "warmup_steps": 0, "min_lr_ratio": 1.0, "eval_every": 100}
        | {"checkpoint_every": 2}
        | {"copy_mix": mix}
    )
    same = {"model_config": make_config(), "vocab_size": 1000, "action_prompts": 0, "progress": False}
    # a constant learning rate, so the 2-step run's weights are the 4-step run's after its step 2
    whole, _ = train_sft(sft_dataset, tmp_path / "whole", cfg, **same)
    train_sft(sft_dataset, tmp_path / "cut", cfg.model_copy(update={"steps": 2}), **same)
    rest, _ = train_sft(sft_dataset, tmp_path / "cut", cfg, **same)
    assert ["copy_loss" in r for r in whole.history] == [False, True, False, True]
    key = ("loss", "copy_loss")
    assert [[r.get(k) for k in key] for r in whole.history[2:]] == [[r.get(k) for k in key] for r in rest.history]
