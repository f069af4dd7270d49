"""train(): learning, evals, metrics files, divergence, z-loss effect, callbacks, progress bar, bad input."""
from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from torch import nn

from attnlab.train import TrainConfig, evaluate, train


def test_train_learns_and_reports(tmp_path, make_tiny):
    model, task = make_tiny()
    before = evaluate(model, task, batches=2, batch_size=16)
    assert set(before) == {"loss", "accuracy"} and before["loss"] > 2.0  # ~ln 11 at init
    cfg = TrainConfig(steps=60, batch_size=16, lr=1e-2, warmup_steps=5, eval_every=20, eval_batches=2, log_every=10)
    r = train(model, task, cfg, out_dir=tmp_path, progress=False)
    assert not r.diverged and r.steps_done == 60
    assert [row["step"] for row in r.history] == [10, 20, 30, 40, 50, 60]
    assert [e["step"] for e in r.evals] == [20, 40, 60]
    assert r.final_eval == {k: v for k, v in r.evals[-1].items() if k != "step"}
    assert r.final_eval["loss"] < before["loss"] - 0.5 and r.final_eval["accuracy"] > 0.5
    row = r.history[-1]
    assert set(row) >= {"step", "loss", "lr", "grad_norm", "accuracy", "log_z"} and "z_loss" not in row
    assert row["lr"] == pytest.approx(cfg.lr_at(60))
    assert r.train_seconds > 0 and r.tokens_per_second == pytest.approx(8 * 16 * 60 / r.train_seconds)
    assert r.peak_mem_mib >= 0
    # files: the JSONL has every row, the CSV the same rows
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(x["split"], x["step"]) for x in lines if x["split"] == "val"] == [("val", 20), ("val", 40), ("val", 60)]
    assert [x["loss"] for x in lines if x["split"] == "train"] == [h["loss"] for h in r.history]
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9 and float(rows[-1]["loss"]) == pytest.approx(lines[-1]["loss"])
    assert (tmp_path / "checkpoints" / "step_00000060" / "model.safetensors").exists()  # final checkpoint


def test_divergence_stops_without_crash(make_regression):
    # Training batch 5 has a NaN target, so step 6 gives a NaN loss.
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    r = train(model, make_regression(nan_at=5), TrainConfig(steps=20, batch_size=4, log_every=1, eval_every=0), progress=False)
    assert r.diverged and r.steps_done == 5
    assert math.isnan(r.history[-1]["loss"]) and r.history[-1]["step"] == 6
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad step was not applied
    assert math.isfinite(r.final_eval["loss"])


def test_lr_blowup_is_reported_as_divergence(make_tiny):
    model, task = make_tiny(dropout=0.0)
    cfg = TrainConfig(steps=40, batch_size=8, lr=1e30, warmup_steps=0, grad_clip=0.0, eval_every=0, log_every=1)
    r = train(model, task, cfg, progress=False)
    assert r.diverged and r.steps_done < 40


def test_z_loss_pulls_log_partition_to_zero(make_tiny):
    # P02's z-loss: a large coefficient drives mean log Z towards 0; without it log Z stays near ln V.
    out = {}
    for coef in (0.0, 0.1):
        model, task = make_tiny(dropout=0.0)
        cfg = TrainConfig(steps=80, batch_size=16, lr=1e-2, warmup_steps=5, z_loss=coef, eval_every=0, log_every=1)
        out[coef] = train(model, task, cfg, progress=False).history
    assert "z_loss" in out[0.1][-1] and "z_loss" not in out[0.0][-1]
    assert out[0.1][-1]["z_loss"] >= 0.1 * out[0.1][-1]["log_z"] ** 2  # mean of squares >= square of mean
    assert abs(out[0.1][-1]["log_z"]) < 0.3 and abs(out[0.0][-1]["log_z"]) > 1.0


def test_callback_stops_and_bad_arguments(tmp_path, make_tiny, make_regression):
    model, task = make_tiny()
    seen = []
    r = train(model, task, TrainConfig(steps=50, batch_size=4, eval_every=0), progress=False,
              callbacks=[lambda s, row: seen.append(row["loss"]) or s == 7])
    assert r.steps_done == 7 and len(seen) == 7
    with pytest.raises(ValueError, match="config.z_loss: expected 0 for a task with 'regression' output"):
        train(nn.Linear(3, 1), make_regression(), TrainConfig(steps=2, z_loss=1e-4), progress=False)
    with pytest.raises(ValueError, match="out_dir: expected a folder when resume=True"):
        train(model, task, TrainConfig(steps=2), resume=True, progress=False)
    with pytest.raises(TypeError, match="config: expected an attnlab.train.TrainConfig"):
        train(model, task, {"steps": 2}, progress=False)


def test_progress_bar_changes_nothing_but_the_terminal(make_tiny, capsys):
    runs = {}
    for progress in (False, True):
        model, task = make_tiny()
        cfg = TrainConfig(steps=12, batch_size=4, lr=1e-2, warmup_steps=2, eval_every=6, eval_batches=1, log_every=3)
        runs[progress] = train(model, task, cfg, progress=progress)
    assert runs[True].history == runs[False].history and runs[True].evals == runs[False].evals
    assert "train shift" in capsys.readouterr().err


def test_a_stopping_callback_saves_a_checkpoint_and_bad_callbacks_are_refused(tmp_path, make_tiny):
    model, task = make_tiny()
    calls = []
    r = train(model, task, TrainConfig(steps=20, batch_size=4, eval_every=0), out_dir=tmp_path, progress=False,
              callbacks=[lambda s, row: s == 4, lambda s, row: calls.append(s)])
    assert r.steps_done == 4 and calls == [1, 2, 3]  # callbacks after the one that stops are not called
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_00000004"]
    with pytest.raises(TypeError, match="callbacks: expected callables cb\\(step, row\\), received"):
        train(model, task, TrainConfig(steps=2), progress=False, callbacks=[42])
