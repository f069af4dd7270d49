"""The random_features mixer and functional form (P01): the loop reference, the sampling of the frozen QK
matrices, ridge regression of the readout, and the mixer against explicit attention."""
from __future__ import annotations

import pytest
import torch

import attnlab.mixers as mixers
from attnlab.mixers.random_features import (
    rfa_features,
    rfa_function,
    rfa_function_reference,
    ridge_fit,
    sample_qk_matrices,
)


@pytest.mark.parametrize("sigma", ["relu", "exp", "softmax"])
def test_rfa_function_equals_loop_reference(sigma):
    g = torch.Generator().manual_seed(0)
    d, n, m, b = 4, 5, 3, 6
    x0 = torch.randn(b, d, generator=g, dtype=torch.float64)
    keys = torch.randn(b, n, d, generator=g, dtype=torch.float64)
    w = sample_qk_matrices(m, d, bias=0.5, generator=g, dtype=torch.float64)
    v = torch.randn(m, d, generator=g, dtype=torch.float64)
    f = rfa_function(x0, keys, w, v, sigma=sigma)
    torch.testing.assert_close(f, rfa_function_reference(x0, keys, w, v, sigma=sigma), atol=1e-12, rtol=1e-12)
    # batch chunking of the features changes nothing
    torch.testing.assert_close(rfa_features(x0, keys, w, sigma=sigma, batch_chunk=2), rfa_features(x0, keys, w, sigma=sigma))
    # key-permutation invariance (no positional information)
    perm = torch.randperm(n, generator=g)
    torch.testing.assert_close(rfa_function(x0, keys[:, perm], w, v, sigma=sigma), f, atol=1e-12, rtol=1e-12)


def test_sampling_means():
    g = torch.Generator().manual_seed(0)
    w0 = sample_qk_matrices(400, 8, generator=g, dtype=torch.float64)
    wb = sample_qk_matrices(400, 8, bias=2.0, generator=g, dtype=torch.float64)
    assert abs(w0.mean().item()) < 0.01 and abs(w0.var().item() - 1 / 8) < 0.01
    torch.testing.assert_close(wb.mean(0), 2.0 * torch.eye(8, dtype=torch.float64), atol=0.1, rtol=0)


def test_ridge_fit_recovers_a_linear_readout():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(300, 20, generator=g, dtype=torch.float64)
    v = torch.randn(20, generator=g, dtype=torch.float64)
    torch.testing.assert_close(ridge_fit(f, f @ v, 1e-10), v, atol=1e-6, rtol=1e-6)
    # the dual form (p > n) gives the primal solution
    f2 = torch.randn(10, 40, generator=g, dtype=torch.float64)
    y2 = torch.randn(10, generator=g, dtype=torch.float64)
    primal = torch.linalg.solve(f2.T @ f2 / 10 + 0.1 * torch.eye(40, dtype=torch.float64), f2.T @ y2 / 10)
    torch.testing.assert_close(ridge_fit(f2, y2, 0.1), primal, atol=1e-10, rtol=1e-10)


def test_rf_mixer_frozen_qk_gets_no_gradient_and_matches_explicit_attention():
    torch.manual_seed(0)
    m = mixers.create("random_features", 6, num_heads=3, value_dim=2, sigma="relu", query_chunk=4).double()
    assert "qk" not in dict(m.named_parameters()) and "qk" in m.state_dict()
    x = torch.randn(2, 9, 6, dtype=torch.float64, requires_grad=True)
    for causal in (False, True):
        y = m(x, causal=causal)
        # explicit: a_m(i, j) = relu(x_i^T W_m x_j / sqrt(C)) / N_i
        logits = torch.einsum("bic,mce,bje->bmij", x, m.qk, x) / 6**0.5
        mask = torch.ones(9, 9, dtype=torch.bool).tril() if causal else torch.ones(9, 9, dtype=torch.bool)
        a = torch.relu(logits) * mask / mask.sum(-1, keepdim=True)
        v = m.values(x).reshape(2, 9, 3, 2).transpose(1, 2)
        ref = m.proj((a @ v).transpose(1, 2).reshape(2, 9, 6))
        torch.testing.assert_close(y, ref, atol=1e-12, rtol=1e-12)
    y.sum().backward()  # query-chunked + checkpointed path (N=9 > query_chunk=4)
    assert m.qk.grad is None and m.values.weight.grad is not None
