"""The shared ``assert_close`` fixture (tests/conftest.py): it passes what matches within the stated
tolerances and fails, naming the culprit, on a wrong output, a wrong backward, or a missing gradient."""
from __future__ import annotations

import pytest
import torch
from torch import nn


class _ScaledBackward(torch.autograd.Function):
    """Identity forward; backward multiplies the upstream gradient by ``scale`` (1 = correct)."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * ctx.scale, None


class _MeanBackward(torch.autograd.Function):
    """Identity forward; a backward that returns the mean of the upstream gradient everywhere (wrong,
    but right whenever the upstream gradient is constant, e.g. ones)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g.mean().expand_as(g)


def test_outputs_within_and_beyond_the_stated_tolerance(assert_close):
    e = torch.linspace(-1, 1, 7, dtype=torch.float64)
    assert_close(e + 0.9e-6, e, atol=1e-6, rtol=0)
    with pytest.raises(AssertionError, match=r"output\[0\]: Tensor-likes are not close"):
        assert_close(e + 1.1e-6, e, atol=1e-6, rtol=0)
    assert_close(e * (1 + 0.9e-3), e, atol=0, rtol=1e-3)
    with pytest.raises(AssertionError, match=r"output\[0\]"):
        assert_close(e * (1 + 1.1e-3), e, atol=0, rtol=1e-3)
    with pytest.raises(AssertionError, match="shape"):
        assert_close(e[:6], e, atol=1, rtol=1)


def test_tolerances_are_required(assert_close):
    with pytest.raises(TypeError, match="atol"):
        assert_close(torch.ones(2), torch.ones(2), rtol=0)


def test_a_wrong_backward_is_caught_after_a_correct_forward(assert_close):
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert_close(_ScaledBackward.apply(x, 1.0), x * 1, atol=1e-12, rtol=1e-12, grads_of=[x])
    with pytest.raises(AssertionError, match=r"gradient wrt grads_of\[0\]"):
        assert_close(_ScaledBackward.apply(x, 1.001), x * 1, atol=1e-12, rtol=1e-12, grads_of=[x])
    # separate gradient tolerances: 1e-3 relative error passes at grad_rtol 2e-3
    assert_close(_ScaledBackward.apply(x, 1.001), x * 1, atol=1e-12, rtol=1e-12, grads_of=[x], grad_atol=0,
                 grad_rtol=2e-3)


def test_the_default_upstream_is_not_ones(assert_close):
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    ones = torch.ones(4, 6, dtype=torch.float64)
    assert_close(_MeanBackward.apply(x), x * 1, atol=1e-12, rtol=0, grads_of=[x], upstream=ones)  # blind spot
    with pytest.raises(AssertionError, match=r"gradient wrt grads_of\[0\]"):
        assert_close(_MeanBackward.apply(x), x * 1, atol=1e-12, rtol=0, grads_of=[x])


def test_paired_parameters_and_mixed_dtypes(assert_close):
    # A fp32 module against a fp64 copy of itself: compared in fp64 at fp32 tolerances.
    fast = nn.Linear(5, 3)
    ref = nn.Linear(5, 3).double()
    ref.load_state_dict({k: v.double() for k, v in fast.state_dict().items()})
    x = torch.randn(4, 5, dtype=torch.float64)
    pair = (list(fast.parameters()), list(ref.parameters()))
    assert_close(fast(x.float()), ref(x), atol=1e-6, rtol=1e-5, grads_of=pair)
    with torch.no_grad():
        ref.bias[0] += 1e-3
    with pytest.raises(AssertionError, match=r"output\[0\]"):
        assert_close(fast(x.float()), ref(x), atol=1e-6, rtol=1e-5, grads_of=pair)
    with pytest.raises(ValueError, match="grads_of: expected two lists of equal length"):
        assert_close(fast(x.float()), ref(x), atol=1, rtol=1, grads_of=(pair[0], pair[1][:1]))


def test_tuple_outputs_shared_graph_and_missing_gradients(assert_close):
    x = torch.randn(2, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(7, dtype=torch.float64, requires_grad=True)
    h = x * 2  # shared by both sides: the first backward must not free it
    assert_close((h.exp(), h.sum(-1)), (torch.exp(h), h.sum(-1)), atol=1e-12, rtol=1e-12, grads_of=[x])
    with pytest.raises(AssertionError, match=r"output\[1\]"):
        assert_close((h.exp(), h.sum(-1)), (torch.exp(h), h.sum(-1) + 1), atol=1e-12, rtol=1e-12)
    with pytest.raises(AssertionError, match=r"gradient wrt grads_of\[1\]: the actual outputs do not depend on it"):
        assert_close(x * 3, x * 3 + w * 0, atol=0, rtol=0, grads_of=[x, w])
    with pytest.raises(AssertionError, match="actual has 1 outputs, expected has 2"):
        assert_close(x, (x, x), atol=0, rtol=0)
