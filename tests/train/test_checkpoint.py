"""Checkpoints: a save round-trips model, optimizer and RNG states; saves are atomic, so a crash or a
SIGKILL inside one (or between steps) leaves the previous checkpoint loadable and the resumed run
exact; a damaged newest checkpoint is skipped for the previous one.

The model has dropout, so the resumed curves only match if the RNG state is restored.
"""
from __future__ import annotations

import json
import random
import signal
import subprocess
import sys

import pytest
import torch

import attnlab.train.checkpoint as ckpt_mod
from attnlab.train import TrainConfig, build_optimizer, list_checkpoints, load_latest, save_checkpoint, train


def _one_step(model, task, opt):
    batch = task.batch("train", 0, 4)
    opt.zero_grad()
    task.loss(model(batch.inputs), batch)[0].backward()
    opt.step()


def test_save_and_restore_round_trip(tmp_path, make_tiny):
    model, task = make_tiny()
    opt = build_optimizer(model, TrainConfig(lr=1e-2))
    _one_step(model, task, opt)
    torch.manual_seed(11)
    random.seed(12)
    path = save_checkpoint(tmp_path, 1, model, opt, {"note": "x"})
    expect_torch, expect_py = torch.rand(3), random.random()

    other, _ = make_tiny(seed=5)
    other_opt = build_optimizer(other, TrainConfig(lr=1e-2))
    ck = load_latest(tmp_path)
    assert ck.path == path and ck.step == 1 and ck.state["note"] == "x"
    ck.restore(other, other_opt)
    for (k, v), w in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(v, w), k
    for a, b in zip(opt.state.values(), other_opt.state.values()):
        assert all(torch.equal(a[k], b[k]) for k in ("exp_avg", "exp_avg_sq", "step"))
    assert torch.equal(torch.rand(3), expect_torch) and random.random() == expect_py
    # the same next update from both (same dropout masks)
    for m, o in ((model, opt), (other, other_opt)):
        torch.manual_seed(0)
        _one_step(m, task, o)
    assert all(torch.equal(v, w) for v, w in zip(model.state_dict().values(), other.state_dict().values()))


def test_keeps_the_newest_and_refuses_a_mismatched_model(tmp_path, make_tiny):
    model, _ = make_tiny()
    opt = build_optimizer(model, TrainConfig())
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, model, opt, {}, keep=2)
    (tmp_path / ".tmp-step_00000009-1").mkdir()  # an interrupted save is not a checkpoint
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3, 2]
    assert json.loads((tmp_path / "step_00000003" / "state.json").read_text())["step"] == 3
    with pytest.raises(ValueError, match="model: expected a model matching checkpoint .* missing keys"):
        load_latest(tmp_path).restore(torch.nn.Linear(2, 2))
    assert list_checkpoints(tmp_path / "nothing") == [] and load_latest(tmp_path / "nothing") is None


def test_exception_inside_save_keeps_previous_checkpoint(tmp_path, make_tiny, resume_config, assert_same_run,
                                                         monkeypatch):
    real = ckpt_mod._write_json

    def failing(path, obj):
        if path.name == "state.json" and obj["step"] == 10:  # model + optimizer files already written
            raise OSError("disk full (simulated)")
        real(path, obj)

    config = TrainConfig(**{**resume_config, "ckpt_every": 5})
    monkeypatch.setattr(ckpt_mod, "_write_json", failing)
    model, task = make_tiny()
    with pytest.raises(OSError, match="simulated"):
        train(model, task, config, out_dir=tmp_path, progress=False)
    monkeypatch.setattr(ckpt_mod, "_write_json", real)
    root = tmp_path / "checkpoints"
    assert any(p.name.startswith(".tmp-step_00000010") for p in root.iterdir())  # the half-written save
    assert load_latest(root).step == 5
    fresh, _ = make_tiny(seed=7)
    r = train(fresh, task, config, out_dir=tmp_path, resume=True, progress=False)
    assert_same_run(r, fresh)
    assert not any(p.name.startswith(".tmp-") for p in root.iterdir())  # leftovers cleaned up
    assert [s for s, _ in list_checkpoints(root)] == [20, 15]


def test_corrupt_newest_checkpoint_falls_back(tmp_path, make_tiny, resume_config, assert_same_run):
    config = TrainConfig(**{**resume_config, "ckpt_every": 5})
    model, task = make_tiny()
    train(model, task, config, out_dir=tmp_path, progress=False, callbacks=[lambda s, row: s == 10])
    newest = tmp_path / "checkpoints" / "step_00000010" / "optimizer.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.warns(UserWarning, match="unreadable"):
        assert load_latest(tmp_path / "checkpoints").step == 5
    fresh, _ = make_tiny(seed=3)
    with pytest.warns(UserWarning, match="unreadable"):
        r = train(fresh, task, config, out_dir=tmp_path, resume=True, progress=False)
    assert_same_run(r, fresh)


_KILLED_RUN = """
import os, signal, sys
import torch
torch.set_num_threads({threads})
import attnlab.train.checkpoint as ckpt_mod
from attnlab.train import TrainConfig, train
{recipe}

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
model, task = make_tiny()
train(model, task, TrainConfig(**{cfg!r}), out_dir={out!r}, progress=False, callbacks=callbacks)
print("not killed")
"""


@pytest.fixture
def run_killed(tmp_path, tiny_recipe):
    """``run_killed(mode, kill_at, config) -> out_dir``: train ``make_tiny()`` in a subprocess that SIGKILLs itself
    inside the save of step ``kill_at`` (``mode="save"``, just before the rename) or after step ``kill_at``
    (``mode="step"``); asserts it died of SIGKILL."""

    def run(mode: str, kill_at: int, config: dict):
        script = tmp_path / "killed_run.py"
        out = tmp_path / "run"
        script.write_text(_KILLED_RUN.format(threads=torch.get_num_threads(), recipe=tiny_recipe, cfg=config,
                                             out=str(out)))
        proc = subprocess.run([sys.executable, str(script), mode, str(kill_at)], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
        return out

    return run


@pytest.mark.parametrize("mode, kill_at", [("save", 15), ("step", 13)])
def test_sigkill_then_resume_is_exact(make_tiny, resume_config, run_killed, assert_same_run, mode, kill_at):
    """A process SIGKILLed inside the save of step 15 (after every file, before the rename) or right
    after step 13 leaves checkpoint 10 as the newest; the resumed run equals the uninterrupted one."""
    config = {**resume_config, "ckpt_every": 5}
    out = run_killed(mode, kill_at, config)
    assert load_latest(out / "checkpoints").step == 10
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == kill_at  # the killed run had got that far
    model, task = make_tiny(seed=5)
    r = train(model, task, TrainConfig(**config), out_dir=out, resume=True, progress=False)
    assert_same_run(r, model)
