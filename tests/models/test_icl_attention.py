"""ICLAttention (P24's single attention layer) against its formula written per head: the query reads the
L context tokens (not itself), softmax or linear scores, prediction at the last position only."""
from __future__ import annotations

import pytest
import torch

from attnlab.models import ICLAttention


def _explicit(m, z):
    e, n = m.dim + 1, z.shape[1] - 1
    ctx, query = z[:, :-1], z[:, -1]
    pred = torch.zeros(z.shape[0], dtype=z.dtype)
    for h in range(m.num_heads):
        rows = slice(h * e, (h + 1) * e)
        q = query @ m.q_proj.weight[rows].T
        k = ctx @ m.k_proj.weight[rows].T
        v = ctx @ m.v_proj.weight[rows].T
        scores = torch.einsum("be,bne->bn", q, k) / e ** 0.5
        a = scores.softmax(-1) if m.kind == "softmax" else scores / (m.length_norm or n)
        pred = pred + torch.einsum("bn,bne->be", a, v) @ m.o_proj.weight[0, rows]
    return pred


@pytest.mark.parametrize("kind, length_norm", [("softmax", None), ("linear", None), ("linear", 40)])
def test_prediction_equals_the_formula_at_the_last_position(kind, length_norm):
    torch.manual_seed(0)
    m = ICLAttention(3, num_heads=2, kind=kind, length_norm=length_norm).double()
    z = torch.randn(4, 9, 4, dtype=torch.float64)
    out = m(z)
    assert out.shape == (4, 9, 1) and (out[:, :-1] == 0).all()
    torch.testing.assert_close(out[:, -1, 0], _explicit(m, z), atol=1e-12, rtol=1e-10)
    assert m.kq().shape == (2, 4, 4) and m.ov().shape == (2, 4)


def test_bad_input_is_named():
    m = ICLAttention(3)
    with pytest.raises(ValueError, match=r"z: expected a tensor \(B, L \+ 1, 4\) with L >= 1"):
        m(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match=r"kind: expected one of"):
        ICLAttention(3, kind="cosine")
