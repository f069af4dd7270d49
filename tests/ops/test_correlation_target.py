"""attnlab.ops.correlation_target (P16 FOD): the target against the pairwise density reference, rows that sum to
one, the widths' range, the divergences by hand. Tolerances: fp64 1e-12; fp32 2e-6."""
from __future__ import annotations

import math

import pytest
import torch

from attnlab.ops.correlation_target import (
    correlation_terms,
    correlation_terms_reference,
    fod_sigma,
    gaussian_target,
    gaussian_target_reference,
    row_entropy,
    symmetric_kl,
)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
@pytest.mark.parametrize("grid", [(1, 1), (3, 4), (5, 5), (2, 7)])
def test_target_matches_the_pairwise_density_reference(assert_close, dtype, tol, grid):
    s = torch.randn(2, 3, grid[0] * grid[1], 2, dtype=dtype, generator=torch.Generator().manual_seed(0))
    s.requires_grad_(True)
    sigma = fod_sigma(s)
    assert_close(gaussian_target(sigma, grid), gaussian_target_reference(sigma, grid), atol=tol, rtol=tol,
                 grads_of=[s])


def test_rows_sum_to_one_and_a_hand_made_row():
    sigma = torch.tensor([1.0, 2.0], dtype=torch.float64).expand(1, 1, 6, 2).clone()
    t = gaussian_target(sigma, (2, 3))
    torch.testing.assert_close(t.sum(-1), torch.ones(1, 1, 6, dtype=torch.float64), atol=1e-15, rtol=0)
    # query 0 at (0, 0): weight of (dy, dx) is exp(-dy^2 / 2 - dx^2 / 8)
    raw = [math.exp(-(j // 3) ** 2 / 2 - (j % 3) ** 2 / 8) for j in range(6)]
    torch.testing.assert_close(t[0, 0, 0], torch.tensor(raw, dtype=torch.float64) / sum(raw), atol=1e-15, rtol=0)


def test_tiny_sigma_gives_the_identity_and_sigma_range():
    s = torch.full((1, 1, 9, 2), -20.0, dtype=torch.float64)
    torch.testing.assert_close(gaussian_target(fod_sigma(s), (3, 3))[0, 0], torch.eye(9, dtype=torch.float64),
                               atol=1e-12, rtol=0)
    sig = fod_sigma(torch.linspace(-30, 30, 101, dtype=torch.float64))
    assert sig.min() > 1e-5 and sig.max() <= 3 ** (1 + 1e-5) - 1  # (1.1e-5, 2.00003]


def test_symmetric_kl_and_entropy_by_hand():
    p = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64).reshape(1, 1, 1, 3)
    q = torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64).reshape(1, 1, 1, 3)
    e = 1e-4
    want = sum((a - b) * (math.log(a + e) - math.log(b + e)) for a, b in zip([0.5, 0.5, 0.0], [0.25, 0.25, 0.5]))
    torch.testing.assert_close(symmetric_kl(p, q), torch.tensor([[want]], dtype=torch.float64), atol=1e-14, rtol=0)
    torch.testing.assert_close(symmetric_kl(p, p), torch.zeros(1, 1, dtype=torch.float64), atol=0, rtol=0)
    torch.testing.assert_close(row_entropy(q), torch.tensor([[-sum(x * math.log(x + e) for x in [0.25, 0.25, 0.5])]],
                                                            dtype=torch.float64), atol=1e-14, rtol=0)
    # the mean over heads: two heads with KL 0 and `want` give want / 2
    pp, qq = torch.cat([p, p], 1), torch.cat([p, q], 1)
    torch.testing.assert_close(symmetric_kl(pp, qq), torch.tensor([[want / 2]], dtype=torch.float64), atol=1e-14,
                               rtol=0)


def test_symmetric_kl_is_non_negative_on_random_rows():
    g = torch.Generator().manual_seed(1)
    p = torch.softmax(3 * torch.randn(2, 4, 7, 11, generator=g), -1)
    q = torch.softmax(3 * torch.randn(2, 4, 7, 11, generator=g), -1)
    assert (symmetric_kl(p, q) >= 0).all()


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"sigma: expected shape \(B, H, L, 2\) with L = h \* w = 6"):
        gaussian_target(torch.rand(1, 1, 5, 2), (2, 3))
    with pytest.raises(TypeError, match=r"grid: expected \(h, w\)"):
        gaussian_target(torch.rand(1, 1, 6, 2), 6)
    with pytest.raises(ValueError, match="q: expected the shape of p"):
        symmetric_kl(torch.rand(1, 1, 2, 3), torch.rand(1, 1, 2, 4))


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 5, 5), (2, 4, 9, 7)])
def test_correlation_terms_match_three_separate_graphs(assert_close, dtype, tol, shape):
    g = torch.Generator().manual_seed(2)
    p = torch.softmax(2 * torch.randn(*shape, generator=g, dtype=dtype), -1).requires_grad_(True)
    t = torch.softmax(2 * torch.randn(*shape, generator=g, dtype=dtype), -1).requires_grad_(True)
    assert_close(correlation_terms(p, t), correlation_terms_reference(p, t), atol=tol, rtol=tol, grads_of=[p, t])


def test_correlation_terms_route_each_gradient_to_one_side():
    g = torch.Generator().manual_seed(3)
    p = torch.softmax(torch.randn(1, 2, 4, 4, generator=g, dtype=torch.float64), -1).requires_grad_(True)
    t = torch.softmax(torch.randn(1, 2, 4, 4, generator=g, dtype=torch.float64), -1).requires_grad_(True)
    to_target, to_attention, entropy = correlation_terms(p, t)
    gp, gt = torch.autograd.grad(to_target.sum(), (p, t), retain_graph=True, allow_unused=True)
    assert (gp is None or gp.abs().max() == 0) and gt.abs().max() > 0
    gp, gt = torch.autograd.grad(to_attention.sum() + entropy.sum(), (p, t), allow_unused=True)
    assert gp.abs().max() > 0 and (gt is None or gt.abs().max() == 0)
    torch.testing.assert_close(to_target, symmetric_kl(p, t), atol=1e-14, rtol=0)
    # each routed gradient is the true one of its side: gradcheck with the other side held fixed
    pd, td = p.detach(), t.detach()
    assert torch.autograd.gradcheck(lambda a: correlation_terms(a, td)[1:], (p,), eps=1e-7, atol=1e-6)
    assert torch.autograd.gradcheck(lambda b: correlation_terms(pd, b)[0], (t,), eps=1e-7, atol=1e-6)
