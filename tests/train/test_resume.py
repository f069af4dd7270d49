"""Checkpoints and resume: a resumed run reproduces the uninterrupted loss curve exactly.

(a) stop at N + resume to 2N == 2N uninterrupted (losses, weights, metrics files);
(b) a crash in the middle of a save (exception after some files, SIGKILL just before
    the rename) leaves the previous checkpoint loadable and the resumed curve exact;
(c) a process SIGKILLed mid-training resumes exactly.
The model has dropout, so the curves only match if the RNG state is restored.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import attnlab.train.checkpoint as ckpt_mod
from _train_helpers import make
from attnlab.train import TrainConfig, list_checkpoints, load_latest, train

HERE = Path(__file__).resolve().parent
CFG = dict(steps=20, batch_size=8, lr=1e-2, warmup_steps=4, eval_every=5, eval_batches=2, log_every=1)


def _losses(result):
    return [(r["step"], r["loss"]) for r in result.history]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted 20-step run."""
    out = tmp_path_factory.mktemp("ref")
    model, task = make()
    r = train(model, task, TrainConfig(**CFG), out_dir=out, progress=False)
    return r, {k: v.clone() for k, v in model.state_dict().items()}, out


def _assert_same_run(result, model, reference):
    ref, ref_state, ref_out = reference
    assert _losses(result) == _losses(ref)  # exact, fp32 on CPU
    assert result.evals == ref.evals and result.final_eval == ref.final_eval and result.steps_done == 20
    for k, v in model.state_dict().items():
        assert torch.equal(v, ref_state[k]), k


def test_stop_and_resume_is_exact(tmp_path, reference):
    model, task = make()
    r1 = train(model, task, TrainConfig(**CFG), out_dir=tmp_path, progress=False, callbacks=[lambda s, row: s == 10])
    assert r1.steps_done == 10 and [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [10]
    fresh, _ = make(seed=123)  # different init: everything must come from the checkpoint
    r2 = train(fresh, task, TrainConfig(**CFG), out_dir=tmp_path, resume=True, progress=False)
    _assert_same_run(r2, fresh, reference)
    assert (tmp_path / "metrics.jsonl").read_text() == (reference[2] / "metrics.jsonl").read_text()
    assert (tmp_path / "metrics.csv").read_text() == (reference[2] / "metrics.csv").read_text()


def test_resume_needs_the_rng_state(tmp_path, reference, monkeypatch):
    # Control: without restoring the RNG the dropout masks differ and so does the curve.
    model, task = make()
    train(model, task, TrainConfig(**CFG), out_dir=tmp_path, progress=False, callbacks=[lambda s, row: s == 10])
    monkeypatch.setattr(ckpt_mod.torch, "set_rng_state", lambda state: None)
    torch.manual_seed(999)
    r = train(model, task, TrainConfig(**CFG), out_dir=tmp_path, resume=True, progress=False)
    assert _losses(r)[:10] == _losses(reference[0])[:10] and _losses(r)[10:] != _losses(reference[0])[10:]


def test_resume_refuses_a_different_config(tmp_path):
    model, task = make()
    train(model, task, TrainConfig(**{**CFG, "steps": 4}), out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"config: expected the settings of checkpoint .* lr=0.02 \(checkpoint: 0.01\)"):
        train(model, task, TrainConfig(**{**CFG, "steps": 4, "lr": 2e-2}), out_dir=tmp_path, resume=True, progress=False)


def test_exception_inside_save_keeps_previous_checkpoint(tmp_path, reference, monkeypatch):
    real = ckpt_mod._write_json

    def failing(path, obj):
        if path.name == "state.json" and obj["step"] == 10:  # model + optimizer files already written
            raise OSError("disk full (simulated)")
        real(path, obj)

    monkeypatch.setattr(ckpt_mod, "_write_json", failing)
    model, task = make()
    with pytest.raises(OSError, match="simulated"):
        train(model, task, TrainConfig(**{**CFG, "ckpt_every": 5}), out_dir=tmp_path, progress=False)
    monkeypatch.setattr(ckpt_mod, "_write_json", real)
    root = tmp_path / "checkpoints"
    assert any(p.name.startswith(".tmp-step_00000010") for p in root.iterdir())  # the half-written save
    assert load_latest(root).step == 5
    fresh, _ = make(seed=7)
    r = train(fresh, task, TrainConfig(**{**CFG, "ckpt_every": 5}), out_dir=tmp_path, resume=True, progress=False)
    _assert_same_run(r, fresh, reference)
    assert not any(p.name.startswith(".tmp-") for p in root.iterdir())  # leftovers cleaned up
    assert [s for s, _ in list_checkpoints(root)] == [20, 15]


def test_corrupt_newest_checkpoint_falls_back(tmp_path, reference):
    model, task = make()
    train(model, task, TrainConfig(**{**CFG, "ckpt_every": 5}), out_dir=tmp_path, progress=False,
          callbacks=[lambda s, row: s == 10])
    newest = tmp_path / "checkpoints" / "step_00000010" / "optimizer.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.warns(UserWarning, match="unreadable"):
        assert load_latest(tmp_path / "checkpoints").step == 5
    fresh, _ = make(seed=3)
    with pytest.warns(UserWarning, match="unreadable"):
        r = train(fresh, task, TrainConfig(**{**CFG, "ckpt_every": 5}), out_dir=tmp_path, resume=True, progress=False)
    _assert_same_run(r, fresh, reference)


_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {helpers!r})
import torch
torch.set_num_threads({threads})
import attnlab.train.checkpoint as ckpt_mod
from _train_helpers import make
from attnlab.train import TrainConfig, train

mode, kill_at = sys.argv[1], int(sys.argv[2])
def die():
    os.kill(os.getpid(), signal.SIGKILL)
if mode == "save":  # killed inside the save of step kill_at, after all files, before the rename
    real = os.replace
    def replace(src, dst):
        if os.path.basename(str(dst)) == "step_%08d" % kill_at:
            die()
        real(src, dst)
    ckpt_mod.os.replace = replace
    callbacks = []
else:  # killed between steps, after step kill_at
    callbacks = [lambda s, row: die() if s == kill_at else None]
model, task = make()
train(model, task, TrainConfig(**{cfg!r}), out_dir={out!r}, progress=False, callbacks=callbacks)
print("not killed")
"""


def _run_killed(tmp_path, mode, kill_at):
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(_SCRIPT.format(
        helpers=str(HERE), threads=torch.get_num_threads(), cfg={**CFG, "ckpt_every": 5}, out=str(tmp_path / "run"))))
    proc = subprocess.run([sys.executable, str(script), mode, str(kill_at)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    return tmp_path / "run"


@pytest.mark.parametrize("mode, kill_at, expect_ckpt", [("save", 15, 10), ("step", 13, 10)])
def test_sigkill_then_resume_is_exact(tmp_path, reference, mode, kill_at, expect_ckpt):
    out = _run_killed(tmp_path, mode, kill_at)
    assert load_latest(out / "checkpoints").step == expect_ckpt
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] >= kill_at - 1  # the killed run had got that far
    model, task = make(seed=5)
    r = train(model, task, TrainConfig(**{**CFG, "ckpt_every": 5}), out_dir=out, resume=True, progress=False)
    _assert_same_run(r, model, reference)
