"""The gathering_scattering mixer (P30's SGST attention): the masked fast path against the literal per-example
gather / attend / scatter with the same weights, the paper's behaviour against the official code's (discarded
scatter) by a stated threshold, the band between the thresholds, bad options."""
from __future__ import annotations

import pytest
import torch
from einops import rearrange

import attnlab.mixers as mixers
from attnlab.ops.gathering_scattering import gathering_scattering_attention_reference, soft_token_merge_reference


def _literal(m, x):
    """The mixer written out with the reference ops (per-example gathering and scattering)."""
    heat = torch.sigmoid(m.heat(x)[..., 0])
    fg, bg = heat >= m.tau, heat < 1 - m.tau
    t_fg = soft_token_merge_reference(x, m.merge_fg(x * heat[..., None]), heat)
    t_bg = soft_token_merge_reference(x, m.merge_bg(x * (1 - heat)[..., None]), 1 - heat)
    q = rearrange(m.q(x), "b n (h d) -> b h n d", h=m.num_heads)
    k_fg, v_fg = rearrange(m.kv_fg(t_fg), "b k (two h d) -> two b h k d", two=2, h=m.num_heads)
    k_bg, v_bg = rearrange(m.kv_bg(t_bg), "b k (two h d) -> two b h k d", two=2, h=m.num_heads)
    o = gathering_scattering_attention_reference(q, k_fg, v_fg, k_bg, v_bg, fg, bg)
    return m.proj(rearrange(o, "b h n d -> b n (h d)")) * (fg | bg)[..., None].to(x.dtype)


@pytest.mark.parametrize("tau", [0.5, 0.6])
def test_matches_the_literal_algorithm_forward_and_backward(assert_close, tau):
    torch.manual_seed(0)
    m = mixers.create("gathering_scattering", 16, num_heads=2, num_tokens=3, tau=tau).double()
    x = torch.randn(3, 23, 16, dtype=torch.float64, requires_grad=True)
    params = list(m.parameters())
    assert_close(m(x), _literal(m, x), atol=1e-12, rtol=1e-12, grads_of=[x] + params[1:])


def test_paper_and_official_behaviour_are_told_apart():
    """Same weights: the official code's SGST (scatter discarded) returns exactly 0 here (its block returns its
    input); the paper's returns updates whose norm is > 10 % of the input's on every example."""
    torch.manual_seed(0)
    paper = mixers.create("gathering_scattering", 16, num_heads=2, num_tokens=4)
    official = mixers.create("gathering_scattering", 16, num_heads=2, num_tokens=4, discard_scatter=True)
    official.load_state_dict(paper.state_dict())
    x = torch.randn(4, 30, 16)
    assert official(x).abs().max() == 0
    ratio = paper(x).norm(dim=(1, 2)) / x.norm(dim=(1, 2))
    assert (ratio > 0.1).all(), ratio


def test_positions_between_the_thresholds_get_zero():
    torch.manual_seed(2)
    m = mixers.create("gathering_scattering", 8, tau=0.55)
    with torch.no_grad():  # heat logit = the first channel: about 16 % of N(0, 1) draws fall in the band
        m.heat.weight.zero_()
        m.heat.weight[0, 0] = 1.0
        m.heat.bias.zero_()
    x = torch.randn(2, 40, 8)
    heat, fg, bg = m.split(x)
    band = ~(fg | bg)
    assert band.any() and ((heat >= 0.45) & (heat < 0.55) == band).all()
    y = m(x)
    assert y[band].abs().max() == 0 and y[fg | bg].abs().max() > 0


@pytest.mark.parametrize("kw, match", [({"tau": 0.4}, "tau"), ({"tau": 1.0}, "tau"), ({"num_tokens": 0}, "num_tokens"),
                                       ({"num_heads": 3}, "num_heads")])
def test_bad_options_are_named(kw, match):
    with pytest.raises(ValueError, match=f"{match}: expected"):
        mixers.create("gathering_scattering", 8, **kw)
    with pytest.raises(TypeError, match="discard_scatter: expected a bool"):
        mixers.create("gathering_scattering", 8, discard_scatter="yes")
