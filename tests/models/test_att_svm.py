"""P22's one-layer attention model: the output by hand, the (K, Q) form, bad shapes."""
from __future__ import annotations

import math

import pytest
import torch

from attnlab.models.att_svm import SVMAttention


def test_output_by_hand():
    model = SVMAttention(torch.tensor([1.0, -1.0], dtype=torch.float64))
    with torch.no_grad():
        model.W.copy_(torch.tensor([[2.0, 0.0], [0.0, 0.0]], dtype=torch.float64))
    X = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    z = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    out, probs = model(X, z)
    # logits x_t^T W z = (2, 0); softmax (e^2, 1) / (e^2 + 1); scores v^T x_t = (1, -1)
    p0 = math.exp(2) / (math.exp(2) + 1)
    torch.testing.assert_close(probs, torch.tensor([[p0, 1 - p0]], dtype=torch.float64))
    torch.testing.assert_close(out, torch.tensor([p0 - (1 - p0)], dtype=torch.float64))


def test_kq_form_and_init():
    model = SVMAttention(torch.ones(4, dtype=torch.float64), param="KQ", hidden=3)
    assert model.K.shape == (4, 3) and model.attention_matrix().shape == (4, 4)
    torch.testing.assert_close(model.attention_matrix(), model.K @ model.Q.T)
    assert float(model.K.detach().abs().max()) <= 0.5 and "v" not in dict(model.named_parameters())


def test_bad_input():
    model = SVMAttention(torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"X, z: expected shapes \(n, T, 3\) and \(n, 3\)"):
        model(torch.zeros(2, 4, 3, dtype=torch.float64), torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="param: expected one of"):
        SVMAttention(torch.ones(3), param="QK")
