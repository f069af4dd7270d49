"""The sea mixer (P20) beyond the registry contract: reduction to softmax when every key is kept,
weight transfer from a softmax teacher, the exposed estimate, recorded maps, a few training steps."""
from __future__ import annotations

import pytest
import torch

import attnlab.mixers as mixers
from attnlab.ops.sea import expand_estimate


def test_sea_keeping_every_key_is_the_softmax_mixer(softmax_and):
    teacher, student, missing = softmax_and("sea", top_k=10_000, t_m=8, average_mix=False)
    assert missing == ["feature_proj"]  # a buffer of fixed random features
    x = torch.randn(2, 29, 16, dtype=torch.float64)
    for causal in (True, False):
        torch.testing.assert_close(student(x, causal=causal), teacher(x, causal=causal), atol=1e-12, rtol=1e-12)


def test_sea_teacher_weights_load_and_gates_start_near_plain_sparse_attention(softmax_and):
    _, student, missing = softmax_and("sea", top_k=4, t_m=8)
    assert sorted(missing) == ["feature_proj", "gates.bias", "gates.weight"]
    g = torch.sigmoid(student.gates(torch.randn(3, 16, dtype=torch.float64)))
    assert (g > 0.9).all()


def test_sea_exposes_its_estimate_for_distillation():
    torch.manual_seed(0)
    m = mixers.create("sea", 16, num_heads=2, top_k=4, t_m=8, block=4).double()
    x = torch.randn(2, 21, 16, dtype=torch.float64, requires_grad=True)
    m(x, causal=True)
    assert m.last_estimate is None
    m.keep_estimate = True
    m(x, causal=True)
    est = m.last_estimate
    assert est.shape == (2, 2, 21, 8) and est.requires_grad
    torch.testing.assert_close(est.sum(-1), torch.ones(2, 2, 21, dtype=torch.float64), atol=1e-12, rtol=0)
    est.sum().backward()  # reaches the q/k projection
    assert m.qkv.weight.grad is not None and m.qkv.weight.grad.abs().sum() > 0
    torch.testing.assert_close(m.estimate(x.detach(), causal=True), est.detach(), atol=1e-12, rtol=0)
    full = expand_estimate(est.detach(), causal=True, block=4)
    assert (full[..., ~torch.ones(21, 21, dtype=torch.bool).tril()] == 0).all()
    with pytest.raises(ValueError, match=r"x: expected a tensor of rank 3"):
        m.estimate(x[0])


def test_recorded_maps_are_row_stochastic_and_causal(recorded_causal_maps):
    probs = recorded_causal_maps("sea", {"top_k": 4, "t_m": 8, "block": 4})
    assert ((probs > 0).sum(-1) <= 8).all()


def test_a_small_language_model_trains(period2_lm_losses):
    losses = period2_lm_losses("sea", {"top_k": 8, "t_m": 16})
    assert losses[-1] < 0.5 * losses[0]
