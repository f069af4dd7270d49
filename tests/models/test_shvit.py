"""SHViT (P29): single-head attention touches only the partial channels; the stem sets the token grid."""
from __future__ import annotations

import pytest
import torch

from attnlab.models.shvit import SHSA, SHViT


def test_shvit_attention_touches_only_the_partial_channels():
    torch.manual_seed(0)
    shsa = SHSA(dim=12, qk_dim=4, pdim=4).eval()
    captured = {}
    shsa.proj.register_forward_hook(lambda m, i, o: captured.__setitem__("in", i[0]))
    x = torch.randn(2, 12, 3, 3)
    shsa(x)
    assert torch.equal(captured["in"][:, 4:], x[:, 4:])  # passed through to the output projection
    assert not torch.allclose(captured["in"][:, :4], x[:, :4])
    with pytest.raises(ValueError, match="pdim: expected an int in"):
        SHSA(dim=8, qk_dim=4, pdim=9)


def test_shvit_stem_sets_the_token_grid():
    model = SHViT(embed_dim=(16, 24, 32), partial_dim=(4, 8, 8), depth=(1, 1, 1), stem_convs=2)
    assert model.patch_embed(torch.randn(1, 3, 32, 32)).shape[-2:] == (8, 8)
    assert model.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 32, 2, 2)
    with pytest.raises(ValueError, match="types: expected"):
        SHViT(types=("i", "x", "s"))
