"""AdamW groups: the no-decay rule and the two weight-decay modes (coupled, P02's independent)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from attnlab.train import TrainConfig, build_optimizer, decay_split
from attnlab.train.optim import set_lr


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


def test_shared_and_frozen_parameters():
    # A tied weight is optimised once; a frozen one not at all; a model with nothing to train is refused.
    net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4))
    net[1].weight = net[0].weight
    net[2].requires_grad_(False)
    decay, no_decay = decay_split(net)
    assert [n for n, _ in decay] == ["0.weight"] and [n for n, _ in no_decay] == ["0.bias", "1.bias"]
    opt = build_optimizer(net, TrainConfig(weight_decay=0.1))
    assert [len(g["params"]) for g in opt.param_groups] == [1, 2]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    with pytest.raises(ValueError, match="model: expected a module with trainable parameters"):
        build_optimizer(nn.Linear(2, 2).requires_grad_(False), TrainConfig())
