"""ConViT (P11): the class token joins after the GPSA layers."""
from __future__ import annotations

import torch

from attnlab.models.convit import ConViT


def test_convit_class_token_joins_after_the_gpsa_layers():
    """Changing the class token cannot affect the tokens leaving the GPSA layers, only what follows."""
    torch.manual_seed(0)
    model = ConViT(img_size=16, patch_size=4, embed_dim=16, depth=3, num_heads=4, local_up_to_layer=2).eval()
    seen = {}
    model.blocks[1].register_forward_hook(lambda m, i, o: seen.__setitem__("gpsa_out", o.clone()))
    model.blocks[2].register_forward_hook(lambda m, i, o: seen.__setitem__("mhsa_out", o.clone()))
    x = torch.randn(2, 3, 16, 16)
    model(x)
    a, b = seen["gpsa_out"], seen["mhsa_out"]
    assert a.shape[1] == 16 and b.shape[1] == 17
    with torch.no_grad():
        model.cls_token.add_(1.0)
    model(x)
    assert torch.equal(seen["gpsa_out"], a)
    assert not torch.allclose(seen["mhsa_out"], b)
