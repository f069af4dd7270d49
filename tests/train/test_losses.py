"""The z-loss of P02 and the log-partition it is built on: values and gradient against hand formulas; knowledge
distillation (EchoAtt, P14): pseudo-labels keep unscored positions, the KL term by hand."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attnlab.train import distillation_loss, log_partition, pseudo_labels, z_loss


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


# ---- knowledge distillation (EchoAtt, P14) ----


def test_pseudo_labels_follow_the_teacher_and_the_scored_positions():
    t = torch.tensor([[[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]]])
    y = torch.tensor([[2, -100]])
    assert pseudo_labels(t, y).tolist() == [[1, -100]]


def test_loss_is_the_weighted_sum_written_out():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 5, 7, generator=g, dtype=torch.float64), torch.randn(2, 5, 7, generator=g, dtype=torch.float64)
    y = torch.randint(0, 7, (2, 5), generator=g)
    y[0, 0] = -100
    keep = y != -100
    ce = F.cross_entropy(s[keep], y[keep])
    p_t = F.softmax(t[keep] / 2, -1)
    kl = (p_t * (p_t.log() - F.log_softmax(s[keep] / 2, -1))).sum(-1).mean()
    got = distillation_loss(s, t, y, ce_weight=0.3, kl_weight=0.7, temperature=2.0)
    assert abs(got.item() - (0.3 * ce + 0.7 * 4 * kl).item()) < 1e-5
    assert distillation_loss(t, t, y, ce_weight=0.0, kl_weight=1.0).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"teacher_logits: expected shape \(2, 5, 7\)"):
        distillation_loss(s, t[:, :3], y, ce_weight=1.0, kl_weight=1.0)
