"""SpectFormer (P04): the spectral / attention split covers both ends (GFNet-like and ViT-like)."""
from __future__ import annotations

import pytest

from attnlab.models.spectformer import SpectFormer, SpectralBlock


def test_spectformer_split_covers_both_ends():
    gfnet = SpectFormer(embed_dim=16, depth=3, num_spectral=3, num_heads=2)
    vit = SpectFormer(embed_dim=16, depth=3, num_spectral=0, num_heads=2)
    assert all(isinstance(b, SpectralBlock) for b in gfnet.blocks)
    assert not any(isinstance(b, SpectralBlock) for b in vit.blocks)
    assert SpectFormer(embed_dim=16, depth=4, layers="aass", num_heads=2).layers == "aass"
    with pytest.raises(ValueError, match="num_spectral: expected an int in"):
        SpectFormer(depth=2, num_spectral=3)
    with pytest.raises(ValueError, match="layers: expected a string of 2 letters"):
        SpectFormer(depth=2, layers="sx")
