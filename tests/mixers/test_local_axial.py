"""The neighborhood, sliding_window and axial mixers: what they compute, beyond the registry contract.

Each mixer is checked against its projections composed with the ops' dense references
(fp64, 1e-10), plus the behaviours the papers are about: DiNA's dilated windows in a ViT
(P26), P19's raster-causal structure with full context (exact zeros above the diagonal of
the token Jacobian, non-zeros on and below it).
"""
from __future__ import annotations

import pytest
import torch
from einops import rearrange

import attnlab.mixers as mixers
from attnlab.mixers.neighborhood import fit_window
from attnlab.ops.axial import axial_attention_reference
from attnlab.ops.neighborhood import neighborhood_attention_reference
from attnlab.ops.sliding_window import sliding_window_attention_reference


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _qkv(m, x):
    return rearrange(m.qkv(x), "b n (three h d) -> three b h n d", three=3, h=m.num_heads)


def _out(m, o):
    return m.proj(rearrange(o, "b h n d -> b n (h d)"))


@pytest.mark.parametrize("grid,kw,causal", [
    ((5, 6), {"kernel_size": 3, "dilation": (1, 2)}, False),
    ((5, 6), {"kernel_size": 3}, True),
    (None, {"kernel_size": (5,), "dilation": 3}, False),
    (None, {"kernel_size": 5, "rel_pos_bias": False}, True),
    ((2, 3, 4), {"kernel_size": (1, 3, 3)}, False),
])
def test_neighborhood_mixer_is_projections_around_the_op(grid, kw, causal):
    m = mixers.create("neighborhood", 12, num_heads=3, **kw).double().eval()
    n = 30 if grid is None else int(torch.tensor(grid).prod())
    x = torch.randn(2, n, 12, dtype=torch.float64)
    with torch.no_grad():
        m.rpb is None or m.rpb.normal_()  # a visible bias
        q, k, v = _qkv(m, x)
        ks = kw["kernel_size"]
        o = neighborhood_attention_reference(q, k, v, ks, grid=grid or (n,), dilation=kw.get("dilation", 1),
                                             causal=causal, rpb=m.rpb)
        torch.testing.assert_close(m(x, grid=grid, causal=causal), _out(m, o), atol=1e-10, rtol=1e-10)


def test_windows_are_fitted_to_small_axes():
    assert fit_window(8, 7, 2) == (7, 1)
    assert fit_window(4, 7, 1) == (3, 1)
    assert fit_window(5, 7, 3) == (5, 1)
    assert fit_window(64, 7, 4) == (7, 4)
    # k=7 on a 3x4 grid: kernels (3, 3), the rpb table's centre 5 x 5 (indices 4..8 of 13)
    m = mixers.create("neighborhood", 8, num_heads=2, kernel_size=7).double().eval()
    x = torch.randn(1, 12, 8, dtype=torch.float64)
    with torch.no_grad():
        m.rpb.normal_()
        q, k, v = _qkv(m, x)
        rpb = m.rpb[:, 4:9, 4:9]
        o = neighborhood_attention_reference(q, k, v, 3, grid=(3, 4), rpb=rpb)
        torch.testing.assert_close(m(x, grid=(3, 4)), _out(m, o), atol=1e-10, rtol=1e-10)


def test_rpb_table_dimensionality_is_checked():
    m = mixers.create("neighborhood", 8, num_heads=2, kernel_size=3)
    assert tuple(m.rpb.shape) == (2, 5, 5)
    with pytest.raises(ValueError, match=r"grid: expected a 2-D grid \(this layer's rel_pos_bias table is 2-D"):
        m(torch.randn(1, 10, 8))
    assert tuple(mixers.create("neighborhood", 8, num_heads=2, kernel_size=(3,)).rpb.shape) == (2, 5)
    with pytest.raises(ValueError, match=r"kernel_size: expected odd sizes"):
        mixers.create("neighborhood", 8, kernel_size=4)


@pytest.mark.parametrize("causal", [False, True])
def test_sliding_window_mixer_is_projections_around_the_op(causal):
    m = mixers.create("sliding_window", 12, num_heads=3, window=5).double().eval()
    x = torch.randn(2, 23, 12, dtype=torch.float64)
    kpm = torch.ones(2, 23, dtype=torch.bool)
    kpm[1, 15:] = False
    with torch.no_grad():
        q, k, v = _qkv(m, x)
        o = sliding_window_attention_reference(q, k, v, 5, causal=causal, key_padding_mask=kpm)
        torch.testing.assert_close(m(x, causal=causal, key_padding_mask=kpm), _out(m, o), atol=1e-10, rtol=1e-10)


def test_axial_mixer_bidirectional_is_rows_then_columns():
    m = mixers.create("axial", 12, num_heads=3).double().eval()
    x = torch.randn(2, 20, 12, dtype=torch.float64)
    with torch.no_grad():
        q, k, v = _qkv(m, x)
        rows = axial_attention_reference(q, k, v, (4, 5), 1)
        o = axial_attention_reference(q, k, rows, (4, 5), 0)
        torch.testing.assert_close(m(x, grid=(4, 5)), _out(m, o), atol=1e-10, rtol=1e-10)


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


def test_dinat_pattern_in_a_vit_and_sliding_window_hybrid_in_a_sequence_model():
    from attnlab.models import SequenceModel, ViT

    vit = ViT(img_size=32, patch_size=4, in_chans=3, num_classes=8, dim=32, depth=2, num_heads=2,
              mixer=[("neighborhood", {"kernel_size": 3, "dilation": 1}), ("neighborhood", {"kernel_size": 3, "dilation": 2})])
    assert [blk.mixer.dilation for blk in vit.blocks] == [(1,), (2,)]
    out = vit(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert out.shape == (2, 8) and vit.blocks[1].mixer.rpb.grad is not None
    lm = SequenceModel(vocab_size=20, dim=32, depth=2, num_heads=2, mixer="linear_attention,sliding_window",
                       mixer_kwargs={"sliding_window": {"window": 4}})
    tokens = torch.randint(0, 20, (2, 17))
    logits = lm(tokens)
    tokens2 = tokens.clone()
    tokens2[:, 9:] = (tokens2[:, 9:] + 1) % 20
    torch.testing.assert_close(lm(tokens2)[:, :9], logits[:, :9])
