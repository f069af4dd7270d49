"""The context_sharing mixer (P30's CST attention): query independence with a stated threshold (softmax fails it),
the context by hand, zero init, bad options."""
from __future__ import annotations

import pytest
import torch

import attnlab.mixers as mixers


def _row_spread(y: torch.Tensor) -> float:
    """Largest difference between the output row of any position and that of position 0."""
    return (y - y[:, :1]).abs().max().item()


def test_output_is_the_same_for_every_query_position():
    """CST's output does not depend on which query position asks: rows differ by <= 1e-6 (fp32). The same
    measure on softmax attention over the same tokens is > 0.05: the check tells the two apart."""
    torch.manual_seed(0)
    x = torch.randn(3, 37, 16)
    cst = mixers.create("context_sharing", 16, zero_init=False)
    assert _row_spread(cst(x)) <= 1e-6
    assert _row_spread(mixers.create("softmax", 16, num_heads=2)(x)) > 0.05
    # a perturbed position moves the context, hence every row, by the same amount
    x2 = x.clone()
    x2[:, 5] += 2.0
    delta = cst(x2) - cst(x)
    assert _row_spread(delta) <= 1e-6 and delta.abs().max() > 1e-3


def test_context_is_the_softmax_weighted_mean_by_hand():
    torch.manual_seed(1)
    m = mixers.create("context_sharing", 8, ratio=1.0, zero_init=False).double()
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    w = torch.softmax(x @ m.score.weight[0] + m.score.bias, dim=1)
    torch.testing.assert_close(m.context(x), (w[..., None] * x).sum(1), atol=1e-12, rtol=1e-12)
    expected = m.fc2(torch.relu(m.norm(m.fc1((w[..., None] * x).sum(1)))))
    torch.testing.assert_close(m(x), expected[:, None].expand(2, 6, 8), atol=1e-12, rtol=1e-12)


def test_zero_init_starts_at_zero_and_still_trains():
    m = mixers.create("context_sharing", 8)
    x = torch.randn(2, 5, 8)
    y = m(x)
    assert y.abs().max() == 0
    (y * torch.randn_like(y)).sum().backward()
    assert m.fc2.weight.grad.abs().sum() > 0  # the last layer gets a gradient: the block can leave the identity


def test_hidden_width_follows_ratio_and_bad_ratio_is_named():
    assert mixers.create("context_sharing", 8).fc1.out_features == 128  # DLUT-yyc/Isomer's ratio 16: expansion
    with pytest.raises(ValueError, match="ratio: expected a number > 0"):
        mixers.create("context_sharing", 8, ratio=0)
