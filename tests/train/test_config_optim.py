"""TrainConfig validation, LR schedule, weight-decay modes and the no-decay rule, z-loss."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from attnlab.train import TrainConfig, build_optimizer, decay_split, log_partition, z_loss
from attnlab.train.optim import set_lr


@pytest.mark.parametrize(
    "kw, exc, msg",
    [
        ({"steps": 0}, ValueError, "steps: expected an int >= 1, received 0"),
        ({"steps": 2.5}, TypeError, "steps: expected an int >= 1"),
        ({"lr": 0.0}, ValueError, "lr: expected a number > 0.0"),
        ({"lr": float("nan")}, ValueError, "lr: expected a finite number"),
        ({"wd_mode": "decoupled"}, ValueError, "wd_mode: expected one of ['coupled', 'independent'], received 'decoupled'"),
        ({"betas": (0.9, 1.0)}, ValueError, "betas[1]: expected a number in [0, 1)"),
        ({"betas": 0.9}, TypeError, "betas: expected a pair"),
        ({"min_lr_ratio": 1.5}, ValueError, "min_lr_ratio: expected a number <= 1.0"),
        ({"grad_clip": -1.0}, ValueError, "grad_clip: expected a number >= 0.0"),
        ({"eval_batches": 0}, ValueError, "eval_batches: expected an int >= 1"),
        ({"batch_size": True}, TypeError, "batch_size: expected an int >= 1, received True"),
    ],
)
def test_config_rejects_bad_values(kw, exc, msg):
    with pytest.raises(exc) as e:
        TrainConfig(**kw)
    assert msg in str(e.value)


def test_config_json_round_trip():
    c = TrainConfig(steps=7, lr=0.3, betas=[0.8, 0.9], wd_mode="independent")
    assert c.betas == (0.8, 0.9)
    assert TrainConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown keys \\['nope'\\]"):
        TrainConfig.from_dict({**c.to_dict(), "nope": 1})


def test_schedule_warmup_then_cosine_to_floor():
    c = TrainConfig(steps=110, lr=2.0, warmup_steps=10, min_lr_ratio=0.1)
    assert [c.lr_at(s) for s in (1, 5, 10)] == pytest.approx([0.2, 1.0, 2.0], abs=1e-12)
    assert c.lr_at(60) == pytest.approx((2.0 + 0.2) / 2, abs=1e-12)  # cosine half-way
    assert c.lr_at(110) == pytest.approx(0.2, abs=1e-12)
    lrs = [c.lr_at(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # monotone decay after warm-up
    assert TrainConfig(steps=5, warmup_steps=0, lr=1.0, min_lr_ratio=0.0).lr_at(1) < 1.0


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(5, 4)
        self.pos_embed = nn.Parameter(torch.randn(1, 3, 4))
        self.norm = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 4)
        self.conv = nn.Conv1d(4, 4, 3)
        self.gate = nn.Parameter(torch.ones(4))

    def no_weight_decay(self):
        return {"pos_embed"}


def test_decay_rule():
    decay, no_decay = decay_split(_Net())
    assert sorted(n for n, _ in decay) == ["conv.weight", "fc.weight"]
    assert sorted(n for n, _ in no_decay) == ["conv.bias", "emb.weight", "fc.bias", "gate", "norm.bias", "norm.weight", "pos_embed"]


@pytest.mark.parametrize("mode", ["coupled", "independent"])
def test_weight_decay_modes_shrink_factor(mode):
    # With zero gradients AdamW's update is pure decay: p <- p * (1 - lr_t * wd_torch).
    torch.manual_seed(0)
    net = nn.Linear(3, 3)
    lam, lr_max, lr_t = 0.1, 0.5, 0.2
    opt = build_optimizer(net, TrainConfig(lr=lr_max, weight_decay=lam, wd_mode=mode))
    w0, b0 = net.weight.detach().clone(), net.bias.detach().clone()
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    set_lr(opt, lr_t)
    opt.step()
    factor = 1 - lr_t * lam if mode == "coupled" else 1 - (lr_t / lr_max) * lam
    torch.testing.assert_close(net.weight.detach(), w0 * factor, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(net.bias.detach(), b0, rtol=0, atol=0)  # biases never decay


def test_z_loss_value_and_gradient():
    logits = torch.tensor([[[0.0, 0.0], [1.0, 3.0]]], dtype=torch.float64, requires_grad=True)
    lz = torch.tensor([math.log(2.0), math.log(math.e + math.e**3)], dtype=torch.float64)
    loss, mean_lz = z_loss(logits, 0.5)
    assert loss.item() == pytest.approx(0.5 * (lz**2).mean().item(), rel=1e-12)
    assert mean_lz.item() == pytest.approx(lz.mean().item(), rel=1e-12)
    loss.backward()
    # d/dlogits of coef * mean(lz^2) = coef * 2 * lz * softmax / n_predictions
    expect = 0.5 * 2 * lz[:, None] * torch.softmax(logits.detach()[0], -1) / 2
    torch.testing.assert_close(logits.grad[0], expect, rtol=1e-12, atol=1e-12)
    assert log_partition(torch.zeros(2, 7)).tolist() == pytest.approx([math.log(7)] * 2)
    with pytest.raises(ValueError, match="logits: expected a tensor of rank >= 2"):
        z_loss(torch.zeros(3), 1.0)
