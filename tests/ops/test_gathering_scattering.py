"""SGST's gather / attend / scatter: the masked one-call form against the literal per-example algorithm (shapes
incl. odd N and different token counts per side, fp32 and fp64, forward and backward), the soft token merge
against its token-by-token form, and hand-made cases that the two paths cannot share a bug on."""
from __future__ import annotations

import pytest
import torch

from attnlab.ops.gathering_scattering import (gathering_scattering_attention, gathering_scattering_attention_reference,
                                              soft_token_merge, soft_token_merge_reference)


def _split(b, n, seed):
    g = torch.Generator().manual_seed(seed)
    heat = torch.rand(b, n, generator=g)
    return heat >= 0.6, heat < 0.4  # a band in between is on neither side


@pytest.mark.parametrize("b, h, n, d, kf, kb", [(1, 1, 5, 3, 1, 2), (2, 2, 17, 4, 3, 3), (3, 4, 31, 8, 4, 2)])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_masked_form_matches_gather_attend_scatter(assert_close, b, h, n, d, kf, kb, dtype, tol):
    q = torch.randn(b, h, n, d, dtype=dtype, requires_grad=True)
    k_fg, v_fg = (torch.randn(b, h, kf, d, dtype=dtype, requires_grad=True) for _ in range(2))
    k_bg, v_bg = (torch.randn(b, h, kb, d, dtype=dtype, requires_grad=True) for _ in range(2))
    fg, bg = _split(b, n, n)
    args = (q, k_fg, v_fg, k_bg, v_bg, fg, bg)
    assert_close(gathering_scattering_attention(*args), gathering_scattering_attention_reference(*args), atol=tol,
                 rtol=tol, grads_of=[q, k_fg, v_fg, k_bg, v_bg])


def test_each_side_sees_only_its_tokens_and_neither_gets_zeros():
    """Hand case: one token per side with distinct values; a foreground query returns the foreground value
    whatever its logits, a background query the background value, a position on neither side zeros."""
    q = torch.randn(1, 1, 3, 2)
    k = torch.randn(1, 1, 1, 2)
    v_fg, v_bg = torch.full((1, 1, 1, 2), 7.0), torch.full((1, 1, 1, 2), -3.0)
    fg = torch.tensor([[True, False, False]])
    bg = torch.tensor([[False, True, False]])
    for fn in (gathering_scattering_attention, gathering_scattering_attention_reference):
        out = fn(q, k, v_fg, k, v_bg, fg, bg)
        torch.testing.assert_close(out[0, 0], torch.tensor([[7.0, 7.0], [-3.0, -3.0], [0.0, 0.0]]))


def test_changing_the_other_sides_tokens_changes_nothing():
    q = torch.randn(2, 2, 11, 4)
    k_fg, v_fg, k_bg, v_bg = (torch.randn(2, 2, 3, 4) for _ in range(4))
    fg, bg = _split(2, 11, 3)
    out = gathering_scattering_attention(q, k_fg, v_fg, k_bg, v_bg, fg, bg)
    out2 = gathering_scattering_attention(q, k_fg, v_fg, k_bg * 5, v_bg + 1, fg, bg)
    torch.testing.assert_close(out2.transpose(1, 2)[fg], out.transpose(1, 2)[fg], atol=0, rtol=0)
    assert (out2.transpose(1, 2)[bg] - out.transpose(1, 2)[bg]).abs().max() > 0.1


@pytest.mark.parametrize("b, n, c, k", [(1, 4, 3, 1), (2, 19, 8, 5)])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_soft_token_merge_matches_its_token_by_token_form(assert_close, b, n, c, k, dtype, tol):
    x = torch.randn(b, n, c, dtype=dtype, requires_grad=True)
    logits = torch.randn(b, n, k, dtype=dtype, requires_grad=True)
    weight = torch.rand(b, n, dtype=dtype, requires_grad=True)
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[0, -2:] = False
    for w, m in ((weight, None), (None, mask), (weight, mask)):
        assert_close(soft_token_merge(x, logits, w, key_padding_mask=m),
                     soft_token_merge_reference(x, logits, w, key_padding_mask=m), atol=tol, rtol=tol,
                     grads_of=[x, logits])


def test_soft_token_merge_by_hand():
    # equal logits: each token is the weighted mean; weights (1, 0) keep only the first position
    x = torch.tensor([[[2.0], [6.0]]])
    logits = torch.zeros(1, 2, 2)
    torch.testing.assert_close(soft_token_merge(x, logits), torch.full((1, 2, 1), 4.0))
    torch.testing.assert_close(soft_token_merge(x, logits, torch.tensor([[1.0, 0.0]])), torch.full((1, 2, 1), 1.0))


def test_bad_input_is_named():
    q = torch.randn(1, 1, 4, 2)
    t = torch.randn(1, 1, 2, 2)
    fg = torch.tensor([[True, True, False, False]])
    with pytest.raises(ValueError, match="bg: expected a mask disjoint from fg"):
        gathering_scattering_attention(q, t, t, t, t, fg, fg)
    with pytest.raises(ValueError, match=r"fg: expected shape \(B, N\)"):
        gathering_scattering_attention(q, t, t, t, t, fg[:, :3], ~fg[:, :3])
    with pytest.raises(ValueError, match=r"logits: expected shape \(B, N, K\)"):
        soft_token_merge(torch.randn(1, 4, 3), torch.randn(1, 5, 2))
