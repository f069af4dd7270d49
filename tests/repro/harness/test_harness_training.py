"""Arms, LR sweeps, step timing and teacher-student helpers of the harness, on tiny real tasks and models."""
from __future__ import annotations

import math

import pytest
import torch
from einops import rearrange
from torch import nn

from attnlab.repro.harness.arms import Arm, mixer_arm, train_arms
from attnlab.repro.harness.distill import finetune, linear_attention_maps, student_from_teacher, token_mixers
from attnlab.repro.harness.sweep import lr_sweep
from attnlab.repro.harness.timing import task_step_seconds
from attnlab.train import TrainConfig


@pytest.fixture
def task():
    from attnlab.tasks import create

    return create("associative_recall", vocab_size=16, seq_len=12, num_pairs=2, seed=0)


def _cfg(lr=3e-3, steps=4):
    return TrainConfig(steps=steps, batch_size=4, lr=lr, warmup_steps=1, eval_every=2, eval_batches=1, log_every=1)


def test_train_arms_gives_every_arm_the_same_start(task):
    arms = [mixer_arm("a", "softmax", dim=16, depth=1, num_heads=2), mixer_arm("b", "softmax", dim=16, depth=1,
                                                                              num_heads=2),
            mixer_arm("c", "linear_attention", dim=16, depth=1, num_heads=2)]
    res = train_arms(task, arms, _cfg(), seed=3)
    assert res.final["a"] == res.final["b"] and list(res.final) == ["a", "b", "c"]
    assert all(torch.equal(p, q) for p, q in zip(res.models["a"].parameters(), res.models["b"].parameters()))
    assert [s for s, _ in res.curves["a"]] == [2, 4] and res.params["a"] == res.params["b"] > 0
    assert type(token_mixers(res.models["c"])["blocks.0.mixer"]).__name__ == "LinearAttention"


def test_lr_sweep_starts_every_run_alike_and_records_divergence_as_nan(task):
    arm = mixer_arm("softmax", "softmax", dim=16, depth=1, num_heads=2)
    out = lr_sweep([arm], task, (1e-3, 1e-3, 1e9), lambda name, lr: _cfg(lr, steps=4),
                   probes={"weight norm": lambda m: sum(float(p.detach().norm()) for p in m.parameters())})
    r = out["softmax"]
    assert r["final_loss"][0] == r["final_loss"][1] and r["weight norm"][0] == r["weight norm"][1]
    assert r["diverged"] == [False, False, True] and math.isnan(r["final_loss"][2])


def test_task_step_seconds_times_a_real_step_and_updates_only_with_an_optimizer(task):
    model = mixer_arm("m", "softmax", dim=16, depth=1, num_heads=2).build(task.spec)
    before = [p.detach().clone() for p in model.parameters()]
    sec = task_step_seconds({"m": model}, task, 4, 2)
    assert sec["m"] > 0 and all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    task_step_seconds({"m": model}, task, 4, 2, optimizer_lr=1e-2)
    assert not all(torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_student_keeps_every_teacher_weight_outside_the_mixers(task):
    teacher = mixer_arm("t", "softmax", dim=16, depth=2, num_heads=2).build(task.spec)
    student = student_from_teacher(teacher, task.spec, "linear_attention", {}, seed=0, dim=16, depth=2, num_heads=2)
    t, s = teacher.state_dict(), student.state_dict()
    shared = [k for k in s if ".mixer." not in k]
    assert shared and all(torch.equal(t[k], s[k]) for k in shared)
    with pytest.raises(RuntimeError, match="teacher weights do not fit"):
        student_from_teacher(teacher, task.spec, "softmax", {}, seed=0, dim=16, depth=1, num_heads=2)


def test_finetune_adds_the_extra_loss_and_ends_in_eval_mode(task):
    model = mixer_arm("m", "softmax", dim=16, depth=1, num_heads=2).build(task.spec)
    plain = finetune(model, task, steps=3, batch_size=4, seed=0)
    model = mixer_arm("m", "softmax", dim=16, depth=1, num_heads=2).build(task.spec)
    extra = finetune(model, task, steps=3, batch_size=4, seed=0, add_loss=lambda m, b, loss: loss + 5.0)
    assert len(plain) == 3 and not model.training and extra[0] == pytest.approx(plain[0] + 5.0, abs=1e-4)


class _Causal(nn.Module):
    def __init__(self, mixer):
        super().__init__()
        self.mixer = mixer

    def forward(self, x):
        return self.mixer(x, causal=True)


def test_linear_attention_maps_reproduce_the_mixer_output():
    import attnlab.mixers as mixers

    torch.manual_seed(0)
    model = _Causal(mixers.create("linear_attention", 12, num_heads=3)).double()
    x = torch.randn(2, 7, 12, dtype=torch.float64)
    maps = linear_attention_maps(model, x)["mixer"]
    assert maps.shape == (2, 3, 7, 7) and torch.all(maps.triu(1) == 0)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 3, 7, dtype=torch.float64), atol=1e-5, rtol=0)
    _, _, v = rearrange(model.mixer.qkv(x), "b n (three h d) -> three b h n d", three=3, h=3)
    want = model.mixer.proj(rearrange(maps @ v, "b h n d -> b n (h d)"))
    torch.testing.assert_close(model(x), want, atol=1e-5, rtol=1e-5)


def test_arm_is_data():
    arm = Arm("x", lambda spec: nn.Linear(2, 2))
    assert arm.name == "x" and isinstance(arm.build(None), nn.Linear)
