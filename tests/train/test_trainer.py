"""Trainer: the phases of a run (setup, step, evaluate, checkpoint, finish) and exact resume.

(a) a step is one AdamW update at the scheduled LR on the step's batch, checked by hand;
(b) driving the phases by hand gives train()'s run; a pinned curve made by the loop before it was
    split into these phases;
(c) stop at N + resume to 2N == 2N uninterrupted (losses, weights, metrics files); without
    restoring the RNG state the curves differ (control). (SIGKILL during a run: test_checkpoint.py.)
"""
from __future__ import annotations

import math

import pytest
import torch

import attnlab.train.checkpoint as ckpt_mod
from attnlab.train import TrainConfig, Trainer, build_optimizer, load_latest, save_checkpoint, train
from attnlab.train.metrics import read_jsonl
from attnlab.train.optim import set_lr


def _losses(result):
    return [(r["step"], r["loss"]) for r in result.history]


def test_a_step_is_one_clipped_adamw_update_on_its_batch(make_tiny):
    config = TrainConfig(steps=10, batch_size=4, lr=1e-2, warmup_steps=4, grad_clip=0.05, weight_decay=0.1)
    model, task = make_tiny(dropout=0.0)
    by_hand, _ = make_tiny(dropout=0.0)
    trainer = Trainer(model, task, config)
    opt = build_optimizer(by_hand, config)
    for step in (1, 2):
        row = trainer.step()
        set_lr(opt, config.lr_at(step))
        batch = task.batch("train", step - 1, 4)
        loss = task.loss(by_hand(batch.inputs), batch)[0]
        opt.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(list(by_hand.parameters()), 0.05)
        opt.step()
        assert row["step"] == step and row["lr"] == config.lr_at(step) and row["loss"] == float(loss.detach())
        assert row["grad_norm"] == float(norm) > 0.05  # clipping was active
        for (k, v), w in zip(model.state_dict().items(), by_hand.state_dict().values()):
            assert torch.equal(v, w), (step, k)
    assert trainer.steps_done == 2 and trainer.history == []  # log_every=10: no row due yet


def test_a_diverged_step_is_logged_not_applied(make_regression):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    trainer = Trainer(model, make_regression(nan_at=1), TrainConfig(steps=5, batch_size=4, log_every=5))
    trainer.step()
    before = [p.detach().clone() for p in model.parameters()]
    row = trainer.step()
    assert trainer.diverged and trainer.steps_done == 1 and math.isnan(row["loss"]) and math.isnan(row["grad_norm"])
    assert trainer.history == [row]  # logged although step 2 is not a log step
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    assert trainer.done
    with pytest.raises(RuntimeError, match="step: the run is done \\(diverged after step 1 of 5\\); call finish"):
        trainer.step()
    result = trainer.finish()
    assert result.diverged and result.steps_done == 1 and math.isfinite(result.final_eval["loss"])


def test_phases_by_hand_equal_train(tmp_path, make_tiny, resume_config, reference_run):
    model, task = make_tiny()
    trainer = Trainer(model, task, TrainConfig(**resume_config), out_dir=tmp_path)
    assert trainer.start_step == 0 and not any(tmp_path.glob("checkpoints/*"))
    while not trainer.done:
        trainer.step()
        if trainer.eval_due():
            trainer.evaluate()
        if trainer.steps_done == 7:
            assert trainer.checkpoint().name == "step_00000007"  # a checkpoint whenever the caller wants one
    with pytest.raises(RuntimeError, match="step: the run is done \\(20 steps done of 20\\)"):
        trainer.step()
    result = trainer.finish()
    ref, ref_state, ref_out = reference_run
    assert result.history == ref.history and result.evals == ref.evals and result.final_eval == ref.final_eval
    assert all(torch.equal(v, ref_state[k]) for k, v in model.state_dict().items())
    assert (tmp_path / "metrics.jsonl").read_text() == (ref_out / "metrics.jsonl").read_text()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00000007", "step_00000020"]
    assert result.tokens_per_second == pytest.approx(8 * 8 * 20 / result.train_seconds)


def test_pinned_curve_of_the_loop_before_the_split(make_tiny):
    # Numbers printed by train() at commit f6ac192 (the one-function loop), this machine's torch, one thread.
    model, task = make_tiny()
    cfg = TrainConfig(steps=12, batch_size=8, lr=1e-2, warmup_steps=3, weight_decay=0.1, wd_mode="independent",
                      grad_clip=0.5, z_loss=1e-3, eval_every=6, eval_batches=2, log_every=3)
    r = train(model, task, cfg, progress=False)
    assert [h["loss"] for h in r.history] == pytest.approx(
        [2.2705647945404053, 2.072789430618286, 2.1761691570281982, 2.0365426540374756], rel=1e-6, abs=0)
    assert [h["grad_norm"] for h in r.history] == pytest.approx(
        [1.1018503904342651, 0.9223436117172241, 0.684613823890686, 0.7610656023025513], rel=1e-5, abs=0)
    assert [(e["step"], e["loss"]) for e in r.evals] == [(6, pytest.approx(2.0520899295806885, rel=1e-6)),
                                                         (12, pytest.approx(1.969409465789795, rel=1e-6))]
    assert float(sum(p.detach().double().sum() for p in model.parameters())) == pytest.approx(21.825786317524035,
                                                                                              rel=1e-6)


def test_setup_refuses_bad_arguments(make_tiny, make_regression):
    model, task = make_tiny()
    with pytest.raises(TypeError, match="config: expected an attnlab.train.TrainConfig"):
        Trainer(model, task, {"steps": 2})
    with pytest.raises(ValueError, match="out_dir: expected a folder when resume=True or config.ckpt_every > 0"):
        Trainer(model, task, TrainConfig(ckpt_every=5))
    with pytest.raises(ValueError, match="config.z_loss: expected 0 for a task with 'regression' output"):
        Trainer(torch.nn.Linear(3, 1), make_regression(), TrainConfig(z_loss=1e-4))
    with pytest.raises(TypeError, match="task: expected an attnlab.tasks.Task"):
        Trainer(model, "shift", TrainConfig())


def test_stop_and_resume_is_exact(tmp_path, make_tiny, resume_config, reference_run, assert_same_run):
    model, task = make_tiny()
    r1 = train(model, task, TrainConfig(**resume_config), out_dir=tmp_path, progress=False,
               callbacks=[lambda s, row: s == 10])
    assert r1.steps_done == 10 and load_latest(tmp_path / "checkpoints").step == 10
    fresh, _ = make_tiny(seed=123)  # different init: everything must come from the checkpoint
    trainer = Trainer(fresh, task, TrainConfig(**resume_config), out_dir=tmp_path, resume=True)
    assert trainer.start_step == trainer.steps_done == 10 and len(trainer.history) == 10
    trainer.close()  # releases the folder's lock without saving
    r2 = train(fresh, task, TrainConfig(**resume_config), out_dir=tmp_path, resume=True, progress=False)
    assert_same_run(r2, fresh)
    ref_out = reference_run[2]
    assert (tmp_path / "metrics.jsonl").read_text() == (ref_out / "metrics.jsonl").read_text()
    assert (tmp_path / "metrics.csv").read_text() == (ref_out / "metrics.csv").read_text()


def test_resume_needs_the_rng_state(tmp_path, make_tiny, resume_config, reference_run, monkeypatch):
    # Control: without restoring the RNG the dropout masks differ and so does the curve.
    model, task = make_tiny()
    train(model, task, TrainConfig(**resume_config), out_dir=tmp_path, progress=False,
          callbacks=[lambda s, row: s == 10])
    monkeypatch.setattr(ckpt_mod.torch, "set_rng_state", lambda state: None)
    torch.manual_seed(999)
    r = train(model, task, TrainConfig(**resume_config), out_dir=tmp_path, resume=True, progress=False)
    ref = reference_run[0]
    assert _losses(r)[:10] == _losses(ref)[:10] and _losses(r)[10:] != _losses(ref)[10:]


def test_resume_refuses_a_different_config_and_warns_without_checkpoint(tmp_path, make_tiny, resume_config):
    model, task = make_tiny()
    train(model, task, TrainConfig(**{**resume_config, "steps": 4}), out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"config: expected the settings of checkpoint .* lr=0.02 \(checkpoint: 0.01"):
        train(model, task, TrainConfig(**{**resume_config, "steps": 4, "lr": 2e-2}), out_dir=tmp_path, resume=True,
              progress=False)
    with pytest.warns(UserWarning, match="resuming with steps=6 \\(checkpoint: 4\\): the cosine schedule changes"):
        assert train(model, task, TrainConfig(**{**resume_config, "steps": 6}), out_dir=tmp_path, resume=True,
                     progress=False).steps_done == 6
    with pytest.warns(UserWarning, match="resume: no checkpoint in .*; starting from step 0"):
        Trainer(model, task, TrainConfig(**resume_config), out_dir=tmp_path / "empty", resume=True)


def test_a_fresh_run_refuses_a_folder_holding_a_run_unless_told_to_overwrite(tmp_path, make_tiny):
    model, task = make_tiny()
    cfg = TrainConfig(steps=3, batch_size=4, eval_every=0)
    train(model, task, cfg, out_dir=tmp_path, progress=False)
    kept = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert tmp_path / "checkpoints" / "step_00000003" / "model.safetensors" in kept
    with pytest.raises(ValueError, match=r"out_dir: expected a folder without an earlier run \(resume=True / --resume "
                                         r"continues that run, overwrite=True / --overwrite deletes it and starts "
                                         r"again\), received .*, which holds a run \(checkpoints up to step 3, "
                                         r"metrics.jsonl, metrics.csv\)"):
        train(model, task, cfg, out_dir=tmp_path, progress=False)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == kept  # nothing touched
    with pytest.raises(ValueError, match="overwrite: expected False when resume=True"):
        Trainer(model, task, cfg, out_dir=tmp_path, resume=True, overwrite=True)
    trainer = Trainer(model, task, TrainConfig(steps=5, batch_size=4), out_dir=tmp_path, overwrite=True)
    assert not (tmp_path / "checkpoints").exists() and (tmp_path / "metrics.jsonl").read_text() == ""
    trainer.close()
    # metrics from a run killed before its first checkpoint count as a run too; an empty folder does not
    (tmp_path / "metrics.csv").unlink()
    (tmp_path / "metrics.jsonl").write_text('{"split": "train", "step": 1, "loss": 2.0}\n')
    with pytest.raises(ValueError, match=r"which holds a run \(metrics.jsonl\)"):
        Trainer(model, task, cfg, out_dir=tmp_path)
    Trainer(model, task, cfg, out_dir=tmp_path / "new").close()


def test_a_second_trainer_on_the_same_folder_is_refused_until_the_first_lets_go(tmp_path, make_tiny):
    model, task = make_tiny()
    cfg = TrainConfig(steps=4, batch_size=4, eval_every=0)
    first = Trainer(model, task, cfg, out_dir=tmp_path)
    with pytest.raises(RuntimeError, match=r"out_dir: expected a run folder no other run is writing to, received "
                                           r".* locked by pid \d+ on host .*, started .* \(this process"):
        Trainer(model, task, cfg, out_dir=tmp_path, overwrite=True)
    first.step()
    first.finish()
    assert not (tmp_path / ".attnlab-run.lock").exists()
    train(model, task, cfg, out_dir=tmp_path, resume=True, progress=False)  # the folder is free again


def test_an_error_inside_the_loop_releases_the_folder(tmp_path, make_tiny):
    model, task = make_tiny()

    def boom(step, row):
        if step == 2:
            raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        train(model, task, TrainConfig(steps=4, batch_size=4, log_every=1), out_dir=tmp_path, progress=False,
              callbacks=[boom])
    assert not (tmp_path / ".attnlab-run.lock").exists()
    assert [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [1, 2]
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 3  # closed: header + the two rows
    r = train(model, task, TrainConfig(steps=4, batch_size=4), out_dir=tmp_path, progress=False, overwrite=True)
    assert r.steps_done == 4


def test_throughput_is_reported_per_example_and_per_token(make_tiny):
    model, task = make_tiny()
    r = train(model, task, TrainConfig(steps=3, batch_size=4, eval_every=0), progress=False)
    assert r.examples_per_second == pytest.approx(4 * 3 / r.train_seconds)
    assert r.tokens_per_second == pytest.approx(r.examples_per_second * task.tokens_per_example())
    assert r.interrupted is None


# ---- precision ----------------------------------------------------------------


def test_bf16_steps_run_under_autocast_with_fp32_master_weights(make_tiny):
    """precision="bf16": the forward runs in bf16 (the logits are bf16), the weights, their gradients and AdamW's
    moments stay fp32, and one step's update agrees with the fp32 step's to bf16 accuracy."""
    seen = []
    steps = {}
    for precision in ("fp32", "bf16"):
        model, task = make_tiny(dropout=0.0)
        hook = model.head.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
        trainer = Trainer(model, task, TrainConfig(steps=2, batch_size=8, lr=1e-2, warmup_steps=0, eval_every=0,
                                                   precision=precision))
        before = {k: v.clone() for k, v in model.state_dict().items()}
        trainer.step()
        hook.remove()
        assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())
        assert all(t.dtype == torch.float32 for st in trainer.optimizer.state.values() for t in st.values()
                   if torch.is_tensor(t) and t.is_floating_point())
        steps[precision] = {k: model.state_dict()[k] - before[k] for k in before}
    assert seen == [torch.float32, torch.bfloat16]
    for k, d32 in steps["fp32"].items():
        assert (steps["bf16"][k] - d32).norm() <= 0.05 * d32.norm(), k


def test_bf16_run_learns_and_resumes_exactly(tmp_path, make_tiny, resume_config):
    """A bf16 run stopped at step 10 and resumed equals the uninterrupted bf16 run bit for bit (the checkpoint holds
    fp32 master weights, exactly as in fp32), and it learns the task like the fp32 run."""
    cfg = TrainConfig(**{**resume_config, "precision": "bf16"})
    model, task = make_tiny()
    whole = train(model, task, cfg, out_dir=tmp_path / "whole", progress=False)
    whole_state = {k: v.clone() for k, v in model.state_dict().items()}
    model, task = make_tiny()
    train(model, task, cfg, out_dir=tmp_path / "split", progress=False, callbacks=[lambda s, row: s == 10])
    fresh, _ = make_tiny(seed=123)
    resumed = train(fresh, task, cfg, out_dir=tmp_path / "split", resume=True, progress=False)
    assert _losses(resumed) == _losses(whole) and resumed.final_eval == whole.final_eval
    assert all(torch.equal(v, whole_state[k]) for k, v in fresh.state_dict().items())
    model, task = make_tiny()
    fp32 = train(model, task, TrainConfig(**resume_config), progress=False)
    assert abs(whole.final_eval["loss"] - fp32.final_eval["loss"]) < 0.05 * fp32.final_eval["loss"]
    with pytest.raises(ValueError, match=r"precision='fp32' \(checkpoint: 'bf16'\)"):
        train(fresh, task, TrainConfig(**resume_config), out_dir=tmp_path / "split", resume=True, progress=False)


def test_a_checkpoint_from_before_the_precision_field_resumes_as_fp32(tmp_path, make_tiny, resume_config):
    """A checkpoint written before TrainConfig had ``precision`` holds no such key: it resumes as fp32 (the default
    then), and is refused for a bf16 run."""
    model, task = make_tiny()
    old_config = TrainConfig(**resume_config).to_dict()
    del old_config["precision"]
    save_checkpoint(tmp_path / "checkpoints", 10, model, build_optimizer(model, TrainConfig(**resume_config)),
                    {"config": old_config, "history": [], "evals": []})
    trainer = Trainer(model, task, TrainConfig(**resume_config), out_dir=tmp_path, resume=True)
    assert trainer.start_step == 10
    trainer.close()
    with pytest.raises(ValueError, match=r"precision='bf16' \(checkpoint: 'fp32'\)"):
        Trainer(model, task, TrainConfig(**{**resume_config, "precision": "bf16"}), out_dir=tmp_path, resume=True)
