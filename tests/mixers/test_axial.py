"""The axial mixer (P19) beyond the registry contract: rows then columns against the op's reference
(fp64, 1e-10), P19's raster-causal structure with full context (exact zeros above the diagonal of the
token Jacobian, non-zeros on and below it), single-axis layers."""
from __future__ import annotations

import pytest
import torch

import attnlab.mixers as mixers
from attnlab.ops.axial import axial_attention_reference


def test_axial_mixer_bidirectional_is_rows_then_columns(heads_io):
    qkv, out = heads_io
    m = mixers.create("axial", 12, num_heads=3).double().eval()
    x = torch.randn(2, 20, 12, dtype=torch.float64)
    with torch.no_grad():
        q, k, v = qkv(m, x)
        rows = axial_attention_reference(q, k, v, (4, 5), 1)
        o = axial_attention_reference(q, k, rows, (4, 5), 0)
        torch.testing.assert_close(m(x, grid=(4, 5)), out(m, o), atol=1e-10, rtol=1e-10)


def _dependency(m, x, grid, causal):
    """(N, N) total |d out_p / d x_q| over channels."""
    jac = torch.autograd.functional.jacobian(lambda t: m(t, grid=grid, causal=causal)[0], x)  # (N, C, 1, N, C)
    return jac.abs().sum(dim=(1, 4))[:, 0]


def test_axial_causal_form_is_raster_causal_with_full_context():
    torch.manual_seed(1)
    m = mixers.create("axial", 8, num_heads=2).double().eval()
    x = torch.randn(1, 20, 8, dtype=torch.float64)
    dep = _dependency(m, x, (4, 5), True)
    upper = torch.ones(20, 20, dtype=torch.bool).triu(1)
    assert (dep[upper] == 0).all(), "a token depends on a later one"
    assert (dep[~upper] > 1e-8).all(), "a token misses an earlier one (P19: full context, no independence)"
    # bidirectional: global receptive field in one layer
    assert (_dependency(m, x, (4, 5), False) > 1e-8).all()


def test_axial_single_axis_layers():
    m = mixers.create("axial", 8, num_heads=2, axis=0).double().eval()
    x = torch.randn(1, 12, 8, dtype=torch.float64)
    dep = _dependency(m, x, (3, 4), True)
    same_col = torch.arange(12)[:, None] % 4 == torch.arange(12)[None, :] % 4
    before = torch.arange(12)[None, :] <= torch.arange(12)[:, None]
    assert ((dep > 0) == (same_col & before)).all()
    with pytest.raises(ValueError, match=r"axis: expected None \(all axes in turn\), 0 \(columns\) or 1 \(rows\)"):
        mixers.create("axial", 8, axis=2)
