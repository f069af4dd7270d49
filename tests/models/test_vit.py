"""ViT: the patch grid reaches the mixers that use it; class-token pooling refuses grid mixers; bad images named."""
from __future__ import annotations

import pytest
import torch

from attnlab.models import ViT


def test_vit_passes_the_patch_grid_to_mixers_that_use_it():
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self, mixer):
            super().__init__()
            self.inner = mixer

        def forward(self, x, **kw):
            seen.append(kw.get("grid"))
            return self.inner(x, **kw)

    v = ViT(img_size=16, patch_size=4, in_chans=1, num_classes=3, dim=32, depth=1, mixer="spectral_gating")
    assert v.blocks[0].uses_grid
    v.blocks[0].mixer = Spy(v.blocks[0].mixer)
    out = v(torch.randn(2, 1, 16, 16))
    assert seen == [(4, 4)] and out.shape == (2, 3)


def test_vit_cls_pool_refuses_grid_mixers_and_wrong_images():
    with pytest.raises(ValueError, match="pool"):
        ViT(img_size=16, mixer="spectral_gating", pool="cls")
    v = ViT(img_size=16, in_chans=3, num_classes=4, dim=32, depth=1, pool="cls")
    assert v(torch.randn(2, 3, 16, 16)).shape == (2, 4)
    with pytest.raises(ValueError, match=r"x: expected images of shape \(B, 3, 16, 16\)"):
        v(torch.randn(2, 3, 20, 20))
    with pytest.raises(ValueError, match="img_size"):
        ViT(img_size=18, patch_size=4)


def test_vit_refuses_mixers_that_need_context():
    import pytest as _pytest

    with _pytest.raises(ValueError, match=r"mixer: expected mixers that need no extra context \(ViT provides none\), "
                                          r"received layer 0: 'static_emb_qk' needs \['embeddings'\]"):
        ViT(img_size=16, mixer="static_emb_qk")
