"""The Hyena N-D ViT and hybrid (P15): Hyena blocks first and attention after, the plain ViT with no Hyena
block, one block mixing across the whole grid, bad num_hyena named."""
from __future__ import annotations

import pytest
import torch

from attnlab import mixers
from attnlab.models import ViT, create
from attnlab.models.hyena_vit import HyenaViT


def test_hyena_hybrid_puts_hyena_first_and_attention_after():
    model = HyenaViT(dim=32, depth=4, num_hyena=2, num_heads=2, img_size=16, num_classes=3)
    names = [type(b.mixer).__name__ for b in model.blocks]
    hyena_cls, softmax_cls = mixers.get_info("hyena_nd").cls.__name__, mixers.get_info("softmax").cls.__name__
    assert names == [hyena_cls, hyena_cls, softmax_cls, softmax_cls]
    assert create("hyena_vit_tiny").num_hyena == 4 and create("hyena_hybrid_tiny").num_hyena == 2


def test_hyena_vit_without_hyena_is_the_plain_vit():
    torch.manual_seed(0)
    plain = ViT(img_size=16, num_classes=3, dim=32, depth=2, num_heads=2).eval()
    h0 = HyenaViT(img_size=16, num_classes=3, dim=32, depth=2, num_heads=2, num_hyena=0).eval()
    h0.load_state_dict(plain.state_dict(), strict=True)
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(h0(x), plain(x), rtol=0, atol=0)


def test_hyena_block_mixes_across_the_whole_grid():
    """The FFT long convolution reaches the far corner within one block (fp64; the init filters decay with distance)."""
    torch.manual_seed(0)
    model = HyenaViT(img_size=32, num_classes=3, dim=32, depth=1, num_heads=2).double().eval()
    h = torch.randn(1, 64, 32, dtype=torch.float64, requires_grad=True)
    y = model.blocks[0](h, grid=model.grid)
    (y[0, -1] * torch.randn(32, dtype=torch.float64)).sum().backward()
    assert h.grad[0, 0].abs().max() > 1e-9  # top-left token -> bottom-right token
    assert (h.grad[0, :-1].abs().sum(-1) > 0).all()


def test_bad_num_hyena_is_named():
    with pytest.raises(ValueError, match="num_hyena: expected an int in \\[0, depth=2\\]"):
        HyenaViT(depth=2, num_hyena=3)
