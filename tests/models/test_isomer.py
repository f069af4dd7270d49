"""Isomer's segmenter (P30): shapes, the fusion stages alone, learning a fixed batch, gradients everywhere, the SGST
block's side FFNs against a literal loop, the paper's SGST against the official code's by a stated threshold,
bad input."""
from __future__ import annotations

import pytest
import torch

import attnlab.mixers as mixers
from attnlab import models
from attnlab.models.isomer import IsomerSegmenter, SGSTBlock

SMALL = dict(img_size=16, widths=(8, 8, 16, 16), num_heads=(1, 1, 2, 2), num_tokens=(4, 4, 4, 2), decoder_dim=8)


@pytest.mark.parametrize("name", ["isomer_tiny", "vanilla_fusion_tiny"])
def test_output_is_per_pixel_logits_and_fuse_all_is_the_fusion_of_features(name):
    torch.manual_seed(0)
    m = models.create(name, **SMALL).eval()
    x = torch.randn(2, 5, 16, 16)
    assert m(x).shape == (2, 256, 2)
    assert m.stage_shapes() == [(8, 16, 16), (8, 8, 8), (16, 4, 4), (16, 2, 2)]
    a, mo, apps, mots = x[:, :3], x[:, 3:], [], []
    for ea, em in zip(m.appearance, m.motion):
        a, mo = ea(a), em(mo)
        apps.append(a)
        mots.append(mo)
    for got, want in zip(m.fuse_all(apps, mots), m.features(x)):
        torch.testing.assert_close(got, want, atol=0, rtol=0)


@pytest.mark.parametrize("name", ["isomer_tiny", "vanilla_fusion_tiny"])
def test_learns_a_fixed_batch_and_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    m = models.create(name, **SMALL)
    x = torch.randn(4, 5, 16, 16)
    y = (x[:, 3] > 0.5).long().flatten(1)  # a mask read from the first flow channel
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss = torch.nn.functional.cross_entropy(m(x).reshape(-1, 2), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        if not losses:
            missing = [n for n, p in m.named_parameters() if p.grad is None]
            assert not missing, missing
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_sgst_block_applies_each_sides_ffn_to_its_own_positions():
    torch.manual_seed(1)
    gs = mixers.create("gathering_scattering", 8, num_heads=2, num_tokens=3, tau=0.55).double()
    block = SGSTBlock(8, gs).double()
    x = torch.randn(3, 20, 8, dtype=torch.float64)
    h, fg, bg = gs.forward_split(block.norm1(x))
    mid = x + h
    expected = mid.clone()
    normed = block.norm2(mid)
    for b in range(3):
        for n in range(20):
            if fg[b, n]:
                expected[b, n] = mid[b, n] + block.ffn_fg(normed[b, n])
            elif bg[b, n]:
                expected[b, n] = mid[b, n] + block.ffn_bg(normed[b, n])
    assert fg.any() and bg.any() and (~(fg | bg)).any()
    torch.testing.assert_close(block(x), expected, atol=1e-12, rtol=1e-12)


def test_paper_sgst_and_official_sgst_are_told_apart():
    """The official code's SGST (scatter discarded) returns its projected input exactly (difference 0); the
    paper's changes the fused map of both SGST stages by more than 5 % of its norm."""
    torch.manual_seed(0)
    paper = IsomerSegmenter(**SMALL).eval()
    official = IsomerSegmenter(**SMALL, sgst_discard_scatter=True).eval()
    official.load_state_dict(paper.state_dict())
    x = torch.randn(4, 5, 16, 16)
    a, mo, apps, mots = x[:, :3], x[:, 3:], [], []
    for ea, em in zip(paper.appearance, paper.motion):
        a, mo = ea(a), em(mo)
        apps.append(a)
        mots.append(mo)
    fused_paper, fused_official = paper.fuse_all(apps, mots), official.fuse_all(apps, mots)
    for stage in (2, 3):
        projected = official.fuse[stage].project(torch.cat([apps[stage], mots[stage]], 1))
        assert (fused_official[stage] - projected).abs().max() == 0
        change = (fused_paper[stage] - fused_official[stage]).norm() / fused_official[stage].norm()
        assert change > 0.05, (stage, change)
    for stage in (0, 1):  # the CST stages are the same in both
        torch.testing.assert_close(fused_paper[stage], fused_official[stage], atol=0, rtol=0)


def test_cst_starts_as_the_identity_plus_ffn():
    torch.manual_seed(0)
    fuse = IsomerSegmenter(**SMALL).fuse[0]
    z = torch.randn(2, 16 * 16, 8)
    block = fuse.block
    torch.testing.assert_close(block.mixer(block.norm1(z)), torch.zeros_like(z), atol=0, rtol=0)


def test_bad_input_is_named():
    m = models.create("isomer_tiny", **SMALL)
    with pytest.raises(ValueError, match=r"x: expected shape \(B, 5, 16, 16\)"):
        m(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="img_size: expected a multiple of the total stride 8"):
        IsomerSegmenter(img_size=20)
    with pytest.raises(ValueError, match="fusion: expected one of"):
        IsomerSegmenter(fusion=("cst", "cst", "sgst", "mamba"))
    with pytest.raises(ValueError, match="num_heads: expected one value per stage"):
        IsomerSegmenter(num_heads=(1, 2))
