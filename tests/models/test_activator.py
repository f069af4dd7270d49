"""Activator (P07): nothing mixes tokens, so the model is a bag of patches (invariant to their order)."""
from __future__ import annotations

import torch

from attnlab.models.activator import Activator


def test_activator_is_a_bag_of_patches():
    """No token mixing and no position embedding: permuting whole patches leaves the logits unchanged."""
    torch.manual_seed(0)
    model = Activator(img_size=16, patch_size=4, embed_dim=16, depth=2, num_classes=3).eval()
    x = torch.randn(2, 3, 16, 16)
    patches = x.reshape(2, 3, 4, 4, 4, 4).permute(0, 2, 4, 1, 3, 5).reshape(2, 16, 3, 4, 4)
    perm = torch.randperm(16)
    xp = patches[:, perm].reshape(2, 4, 4, 3, 4, 4).permute(0, 3, 1, 4, 2, 5).reshape(2, 3, 16, 16)
    assert not torch.equal(xp, x)
    assert torch.allclose(model(xp), model(x), atol=1e-5)
    only_glu = Activator(embed_dim=16, depth=2, channel_mlp=False)
    assert all(b.mlp is None for b in only_glu.blocks)
