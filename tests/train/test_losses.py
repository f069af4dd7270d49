"""The z-loss of P02 and the log-partition it is built on: values and gradient against hand formulas."""
from __future__ import annotations

import math

import pytest
import torch

from attnlab.train import log_partition, z_loss


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
