"""Checkpoints: a save round-trips model, optimizer and RNG states; saves are atomic, so a crash, a
SIGKILL or a SIGTERM inside one (or between steps, or inside a step) leaves a loadable checkpoint and
the resumed run's folder byte for byte that of an uninterrupted run; every file is checked against the
manifest's SHA-256, so a damaged header, a truncated file and flipped bytes each make loading skip to
the previous checkpoint, saying which and why.

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
from safetensors.torch import load_file

from attnlab.train import TrainConfig, build_optimizer, list_checkpoints, load_latest, save_checkpoint, train
from attnlab.train.checkpoint import MANIFEST, CheckpointError, verify_checkpoint


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


def _header_damaged(path):
    data = bytearray(path.read_bytes())
    data[:8] = (1 << 40).to_bytes(8, "little")  # safetensors' header length: "header too large"
    path.write_bytes(bytes(data))


def _truncated(path):
    path.write_bytes(path.read_bytes()[:100])


def _flipped(path):
    data = bytearray(path.read_bytes())
    data[-7] ^= 0x40  # inside the last tensor's data: same size, still parses
    path.write_bytes(bytes(data))


def _manifest_cut(path):
    path.write_text(path.read_text()[:40])


@pytest.mark.parametrize("damage, name, why", [
    (_header_damaged, "model.safetensors", "expected SHA-256 .* \\(content damaged\\)"),
    (_truncated, "optimizer.safetensors", "expected \\d+ bytes, received 100 \\(truncated or extended\\)"),
    (_flipped, "model.safetensors", "expected SHA-256 .* \\(content damaged\\)"),
    (_flipped, "rng.safetensors", "expected SHA-256 .* \\(content damaged\\)"),
    (_flipped, "state.json", "expected SHA-256 .* \\(content damaged\\)"),
    (lambda p: p.unlink(), "optimizer.json", "optimizer.json: missing"),
    (_manifest_cut, MANIFEST, "unreadable manifest"),
])
def test_a_damaged_newest_checkpoint_is_skipped_and_the_resumed_run_is_exact(
        tmp_path, make_tiny, resume_config, assert_same_run, damage, name, why):
    config = TrainConfig(**{**resume_config, "ckpt_every": 5})
    model, task = make_tiny()
    train(model, task, config, out_dir=tmp_path, progress=False, callbacks=[lambda s, row: s == 10])
    damage(tmp_path / "checkpoints" / "step_00000010" / name)
    skipped = f"checkpoint .*step_00000010 skipped: .*{why}.*; trying an older one"
    with pytest.warns(UserWarning, match=skipped):
        assert load_latest(tmp_path / "checkpoints").step == 5
    fresh, _ = make_tiny(seed=3)
    with pytest.warns(UserWarning, match=skipped):
        r = train(fresh, task, config, out_dir=tmp_path, resume=True, progress=False)
    assert_same_run(r, fresh)


def test_flipped_weights_still_parse_so_only_the_checksum_catches_them(tmp_path, make_tiny):
    # Control for the test above: the damage is one a reader without checksums loads silently.
    model, _ = make_tiny()
    path = save_checkpoint(tmp_path, 1, model, build_optimizer(model, TrainConfig()), {})
    before = {k: v.clone() for k, v in load_file(str(path / "model.safetensors")).items()}
    _flipped(path / "model.safetensors")
    after = load_file(str(path / "model.safetensors"))
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(CheckpointError, match="model.safetensors: expected SHA-256"):
        verify_checkpoint(path)


def test_when_every_checkpoint_is_damaged_resume_refuses_and_deletes_nothing(tmp_path, make_tiny, resume_config):
    config = TrainConfig(**{**resume_config, "ckpt_every": 5})
    model, task = make_tiny()
    train(model, task, config, out_dir=tmp_path, progress=False, callbacks=[lambda s, row: s == 10])
    for ck in ("step_00000005", "step_00000010"):
        _flipped(tmp_path / "checkpoints" / ck / "model.safetensors")
    with pytest.warns(UserWarning, match="skipped"), pytest.raises(
            CheckpointError, match="expected a checkpoint that verifies, received only damaged ones: step_00000010 "
                                   "\\(.*content damaged\\)\\); step_00000005"):
        train(model, task, config, out_dir=tmp_path, resume=True, progress=False)
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [10, 5]


def test_a_checkpoint_from_before_manifests_is_read_with_its_sizes_checked(tmp_path, make_tiny):
    model, _ = make_tiny()
    path = save_checkpoint(tmp_path, 3, model, build_optimizer(model, TrainConfig()), {})
    sizes = {f: (path / f).stat().st_size for f in ("model.safetensors", "optimizer.safetensors", "optimizer.json",
                                                     "rng.safetensors")}
    state = json.loads((path / "state.json").read_text())
    (path / "state.json").write_text(json.dumps({**state, "files": sizes}))  # the old layout
    (path / MANIFEST).unlink()
    assert load_latest(tmp_path).step == 3
    _truncated(path / "rng.safetensors")
    with pytest.raises(CheckpointError, match="rng.safetensors: expected \\d+ bytes, received 100"):
        verify_checkpoint(path)


_STOPPED_RUN = """
import json, os, signal, sys
import torch
torch.set_num_threads({threads})
import attnlab.train.checkpoint as ckpt_mod
from attnlab.train import TrainConfig, train
{recipe}

where, at, how = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sig = {{"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "INT2": signal.SIGINT}}[how]
def hit():
    os.kill(os.getpid(), sig)
model, task = make_tiny()
callbacks = []
if where == "save" or how == "INT2":  # inside the save of step `at`, after all files, before the rename
    real = os.replace
    def replace(src, dst):
        if os.path.basename(str(dst)) == "step_%08d" % at:
            hit()
        real(src, dst)
    ckpt_mod.os.replace = replace
if where == "step":  # between steps, after step `at`
    callbacks = [lambda s, row: hit() if s == at else None]
if where == "forward":  # inside the forward pass of training step `at`
    calls = []
    def pre_hook(module, args):
        if module.training:
            calls.append(1)
            if len(calls) == at:
                hit()
    model.register_forward_pre_hook(pre_hook)
try:
    r = train(model, task, TrainConfig(**{cfg!r}), out_dir={out!r}, progress=False, callbacks=callbacks)
except KeyboardInterrupt:
    print("KeyboardInterrupt")
    sys.exit(130)
print(json.dumps({{"interrupted": r.interrupted, "steps_done": r.steps_done, "final_eval": r.final_eval}}))
"""


@pytest.fixture
def run_stopped(tmp_path, tiny_recipe):
    """``run_stopped(where, at, how, config) -> (process, out_dir)``: train ``make_tiny()`` in a subprocess that
    signals itself (``how``: "KILL", "TERM", or "INT2": SIGINT after step ``at`` and again inside the save it
    triggers) inside the save of step ``at`` (``where="save"``, just before the rename), after step ``at``
    (``"step"``) or inside the forward pass of step ``at`` (``"forward"``)."""

    def run(where: str, at: int, how: str, config: dict):
        script = tmp_path / "stopped_run.py"
        out = tmp_path / "run"
        script.write_text(_STOPPED_RUN.format(threads=torch.get_num_threads(), recipe=tiny_recipe, cfg=config,
                                              out=str(out)))
        proc = subprocess.run([sys.executable, str(script), where, str(at), how], capture_output=True, text=True,
                              timeout=120)
        return proc, out

    return run


# Between steps is the easy case (marked slow: each test starts a Python process); inside a step and inside a
# save run by default.
@pytest.mark.parametrize("where, at", [("save", 15), pytest.param("step", 13, marks=pytest.mark.slow), ("forward", 13)])
def test_sigkill_then_resume_is_byte_for_byte_an_uninterrupted_run(make_tiny, resume_config, run_stopped,
                                                                   assert_same_run, assert_same_files, where, at):
    """SIGKILL inside the save of step 15 (after every file, before the rename), right after step 13 or inside
    the forward pass of step 13 leaves checkpoint 10 as the newest and the lock file of the dead process; the
    resumed run takes the stale lock over and ends with the same files as the uninterrupted one."""
    config = {**resume_config, "ckpt_every": 5}
    proc, out = run_stopped(where, at, "KILL", config)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert load_latest(out / "checkpoints").step == 10
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == (at if where != "forward" else at - 1)  # the killed run got that far
    assert (out / ".attnlab-run.lock").exists()  # the dead process could not remove it
    model, task = make_tiny(seed=5)
    with pytest.warns(UserWarning, match="took over the stale run lock of pid \\d+ on host"):
        r = train(model, task, TrainConfig(**config), out_dir=out, resume=True, progress=False)
    assert_same_run(r, model)
    assert_same_files(out)


@pytest.mark.parametrize("where, at, saved", [("save", 15, 15), pytest.param("step", 13, 13, marks=pytest.mark.slow),
                                               ("forward", 13, 13)])
def test_sigterm_stops_at_the_step_boundary_with_a_checkpoint_and_resumes_exactly(
        make_tiny, resume_config, run_stopped, assert_same_run, assert_same_files, where, at, saved):
    """SIGTERM inside a save lets that save finish; after a step or inside one, the run finishes the step,
    saves it and stops: the process exits normally, says it was interrupted, and the resumed run ends with
    the same files as the uninterrupted one."""
    config = {**resume_config, "ckpt_every": 5}
    proc, out = run_stopped(where, at, "TERM", config)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["interrupted"] == "SIGTERM" and result["steps_done"] == saved
    assert (result["final_eval"] is None) == (saved % 5 != 0)  # no final evaluation, unless the step had one
    assert "SIGTERM received: stopping training after this step and saving a checkpoint" in proc.stderr
    assert load_latest(out / "checkpoints").step == saved
    assert not (out / ".attnlab-run.lock").exists()
    model, task = make_tiny(seed=5)
    r = train(model, task, TrainConfig(**config), out_dir=out, resume=True, progress=False)
    assert_same_run(r, model)
    assert_same_files(out)


def test_a_second_sigint_inside_the_stop_save_quits_at_once_and_corrupts_nothing(
        make_tiny, resume_config, run_stopped, assert_same_run, assert_same_files):
    config = {**resume_config, "ckpt_every": 5}
    proc, out = run_stopped("step", 13, "INT2", config)
    assert proc.returncode == 130 and "KeyboardInterrupt" in proc.stdout, proc.stderr[-2000:]
    assert "SIGINT received again: quitting at once" in proc.stderr
    assert load_latest(out / "checkpoints").step == 10  # the interrupted save of step 13 left no step_ folder
    assert any(p.name.startswith(".tmp-step_00000013") for p in (out / "checkpoints").iterdir())
    assert not (out / ".attnlab-run.lock").exists()  # released on the way out
    model, task = make_tiny(seed=5)
    r = train(model, task, TrainConfig(**config), out_dir=out, resume=True, progress=False)
    assert_same_run(r, model)
    assert_same_files(out)
