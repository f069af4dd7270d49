"""CrossViT (P13): the cross-attention fusion updates the class tokens and leaves patch tokens unchanged."""
from __future__ import annotations

import torch

from attnlab.models.crossvit import MultiScaleBlock


def test_crossvit_fusion_leaves_patch_tokens_unchanged():
    torch.manual_seed(0)
    blk = MultiScaleBlock((8, 16), (0, 0), (2, 2), (4.0, 4.0, 1.0)).eval()
    xs = [torch.randn(2, 1 + 16, 8), torch.randn(2, 1 + 4, 16)]
    out = blk(xs)
    for x, o in zip(xs, out):
        assert torch.equal(o[:, 1:], x[:, 1:])  # no branch blocks: patches pass the fusion untouched
        assert not torch.allclose(o[:, :1], x[:, :1])  # the class tokens did take in the other branch
    # Branch 0's class token depends on branch 1's patches (that is the fusion).
    xs2 = [xs[0], xs[1].clone()]
    xs2[1][:, 1:] += torch.randn_like(xs2[1][:, 1:])  # random: a constant shift would vanish in the LayerNorm
    assert not torch.allclose(blk(xs2)[0][:, :1], out[0][:, :1])
