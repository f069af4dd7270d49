"""The neighborhood mixer (P26: NA and DiNA) beyond the registry contract: projections around the op's
dense reference (fp64, 1e-10) in 1-D, 2-D and 3-D, windows fitted to small axes, the rpb table, DiNA in a ViT."""
from __future__ import annotations

import pytest
import torch

import attnlab.mixers as mixers
from attnlab.mixers.neighborhood import fit_window
from attnlab.ops.neighborhood import neighborhood_attention_reference


@pytest.mark.parametrize("grid,kw,causal", [
    ((5, 6), {"kernel_size": 3, "dilation": (1, 2)}, False),
    ((5, 6), {"kernel_size": 3}, True),
    (None, {"kernel_size": (5,), "dilation": 3}, False),
    (None, {"kernel_size": 5, "rel_pos_bias": False}, True),
    ((2, 3, 4), {"kernel_size": (1, 3, 3)}, False),
])
def test_neighborhood_mixer_is_projections_around_the_op(grid, kw, causal, heads_io):
    qkv, out = heads_io
    m = mixers.create("neighborhood", 12, num_heads=3, **kw).double().eval()
    n = 30 if grid is None else int(torch.tensor(grid).prod())
    x = torch.randn(2, n, 12, dtype=torch.float64)
    with torch.no_grad():
        m.rpb is None or m.rpb.normal_()  # a visible bias
        q, k, v = qkv(m, x)
        ks = kw["kernel_size"]
        o = neighborhood_attention_reference(q, k, v, ks, grid=grid or (n,), dilation=kw.get("dilation", 1),
                                             causal=causal, rpb=m.rpb)
        torch.testing.assert_close(m(x, grid=grid, causal=causal), out(m, o), atol=1e-10, rtol=1e-10)


def test_windows_are_fitted_to_small_axes(heads_io):
    qkv, out = heads_io
    assert fit_window(8, 7, 2) == (7, 1)
    assert fit_window(4, 7, 1) == (3, 1)
    assert fit_window(5, 7, 3) == (5, 1)
    assert fit_window(64, 7, 4) == (7, 4)
    # k=7 on a 3x4 grid: kernels (3, 3), the rpb table's centre 5 x 5 (indices 4..8 of 13)
    m = mixers.create("neighborhood", 8, num_heads=2, kernel_size=7).double().eval()
    x = torch.randn(1, 12, 8, dtype=torch.float64)
    with torch.no_grad():
        m.rpb.normal_()
        q, k, v = qkv(m, x)
        rpb = m.rpb[:, 4:9, 4:9]
        o = neighborhood_attention_reference(q, k, v, 3, grid=(3, 4), rpb=rpb)
        torch.testing.assert_close(m(x, grid=(3, 4)), out(m, o), atol=1e-10, rtol=1e-10)


def test_rpb_table_dimensionality_is_checked():
    m = mixers.create("neighborhood", 8, num_heads=2, kernel_size=3)
    assert tuple(m.rpb.shape) == (2, 5, 5)
    with pytest.raises(ValueError, match=r"grid: expected a 2-D grid \(this layer's rel_pos_bias table is 2-D"):
        m(torch.randn(1, 10, 8), grid=(10,))
    assert tuple(mixers.create("neighborhood", 8, num_heads=2, kernel_size=(3,)).rpb.shape) == (2, 5)
    with pytest.raises(ValueError, match=r"kernel_size: expected odd sizes"):
        mixers.create("neighborhood", 8, kernel_size=4)


def test_dinat_pattern_in_a_vit():
    from attnlab.models import ViT

    vit = ViT(img_size=32, patch_size=4, in_chans=3, num_classes=8, dim=32, depth=2, num_heads=2,
              mixer=[("neighborhood", {"kernel_size": 3, "dilation": 1}), ("neighborhood", {"kernel_size": 3, "dilation": 2})])
    assert [blk.mixer.dilation for blk in vit.blocks] == [(1,), (2,)]
    out = vit(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert out.shape == (2, 8) and vit.blocks[1].mixer.rpb.grad is not None


@pytest.mark.parametrize("causal", [False, True])
def test_defaults_run_on_a_sequence_without_grid(causal, heads_io):
    """The registry lists grid "optional": at its defaults (k=7, a 2-D bias table) the layer runs on a plain
    sequence as the 1 x N grid, i.e. 1-D NA along N with the table's centre row (offset 0 along the unit axis)."""
    qkv, out = heads_io
    torch.manual_seed(0)
    m = mixers.create("neighborhood", 8, num_heads=2).double().eval()
    x = torch.randn(2, 19, 8, dtype=torch.float64)
    with torch.no_grad():
        m.rpb.normal_()
        q, k, v = qkv(m, x)
        o = neighborhood_attention_reference(q, k, v, 7, grid=(19,), causal=causal, rpb=m.rpb[:, 6])
        torch.testing.assert_close(m(x, causal=causal), out(m, o), atol=1e-10, rtol=1e-10)
