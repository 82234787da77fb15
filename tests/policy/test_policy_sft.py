"""SFT cold start: exact action masks, no episode crossing, learning, resume, CLI errors."""

from __future__ import annotations

import json

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


def test_sft_learns_and_resumes(sft_dataset, tok, make_config, tmp_path):
    cfg = LMTrainConfig(steps=6, batch_size=2, seq_len=3072, lr=3e-3, warmup_steps=0, eval_every=3, checkpoint_every=3)
    out = tmp_path / "run"
    res, data = train_sft(
        sft_dataset,
        out,
        cfg,
        model_config=make_config(),
        vocab_size=400,
        action_prompts=2,
        max_new_tokens=8,
        progress=False,
    )
    hist = res.history
    assert hist[-1]["loss"] < hist[0]["loss"] and "val_action_valid" in hist[2]
    assert (out / CHECKPOINT).is_dir() and (out / PLOT).is_file()
    # resume: a run with more steps continues at step 6 with the saved optimizer state
    more = cfg.model_copy(update={"steps": 8})
    res2, _ = train_sft(sft_dataset, out, more, action_prompts=0, progress=False)
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
