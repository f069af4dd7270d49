"""The six vision designs as models: the structural property each paper relies on, training, bad input.

Sizes are tiny (16 or 32 px) so the file runs in a few seconds.
"""
from __future__ import annotations

import pytest
import torch

from attnlab.models.activator import Activator
from attnlab.models.biformer import BiFormer
from attnlab.models.convit import ConViT
from attnlab.models.dinat import DiNAT
from attnlab.models.hyena_vit import HyenaViT
from attnlab.models.path_ensemble import PathEnsembleViT
from attnlab.models.s2aformer import S2AFormer
from attnlab.models.crossvit import CrossViT, MultiScaleBlock
from attnlab.models.shvit import SHSA, SHViT
from attnlab.models.spectformer import SpectFormer, SpectralBlock
from attnlab.models.tnt import TNT

DESIGNS = {
    "spectformer": lambda **k: SpectFormer(embed_dim=32, depth=2, num_spectral=1, num_heads=2, **k),
    "activator": lambda **k: Activator(embed_dim=32, depth=2, **k),
    "convit": lambda **k: ConViT(embed_dim=32, depth=3, num_heads=4, local_up_to_layer=2, **k),
    "crossvit": lambda **k: CrossViT(embed_dim=(16, 32), depth=((1, 1, 0),), num_heads=(2, 2), **k),
    "tnt": lambda **k: TNT(embed_dim=32, inner_dim=8, depth=2, num_heads_inner=2, num_heads_outer=2, **k),
    "shvit": lambda **k: SHViT(embed_dim=(16, 24, 32), partial_dim=(4, 8, 8), depth=(1, 1, 1), **k),
    "path_ensemble": lambda **k: PathEnsembleViT(dim=32, depth=2, num_heads=2, **k),
    "biformer": lambda **k: BiFormer(embed_dim=(16, 32), depth=(1, 1), num_heads=(1, 2), n_win=(2, 1), topk=(2, -1),
                                     **k),
    "dinat": lambda **k: DiNAT(embed_dim=(16, 32), depth=(2, 1), num_heads=(1, 2), dilations=((1, 2), (1,)), **k),
    "s2aformer": lambda **k: S2AFormer(embed_dim=(16, 32), depth=(1, 1), num_heads=(1, 2), sr_ratio=(2, 1), **k),
    "hyena_vit": lambda **k: HyenaViT(dim=32, depth=2, num_heads=2, hyena_kwargs={"filter_width": 16}, **k),
    "hyena_hybrid": lambda **k: HyenaViT(dim=32, depth=2, num_hyena=1, num_heads=2, hyena_kwargs={"filter_width": 16},
                                         **k),
}


@pytest.mark.parametrize("name", sorted(DESIGNS))
def test_design_learns_a_fixed_batch(name):
    """Any img_size / num_classes; 25 Adam steps on one batch must cut the loss by more than half."""
    torch.manual_seed(0)
    model = DESIGNS[name](img_size=16, num_classes=5)
    x = torch.randn(16, 3, 16, 16)
    y = torch.arange(16) % 5
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(25):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model(x).shape == (16, 5)
    assert loss.item() < 0.5 * first, (name, first, loss.item())


@pytest.mark.parametrize("name", sorted(DESIGNS))
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    model = DESIGNS[name](img_size=16, num_classes=3).train()
    model(torch.randn(4, 3, 16, 16)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing


@pytest.mark.parametrize("name", ["spectformer", "activator", "convit", "crossvit", "tnt"])
def test_patch_size_must_divide_image(name):
    with pytest.raises(ValueError, match="patch_size: expected a divisor of img_size=30"):
        DESIGNS[name](img_size=30, num_classes=3)


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


def test_tnt_inner_words_reach_the_patch_tokens_not_the_class_token():
    torch.manual_seed(0)
    model = TNT(img_size=16, patch_size=8, embed_dim=16, inner_dim=4, depth=1, num_heads_inner=2,
                num_heads_outer=2, num_classes=3).eval()
    blk = model.blocks[0]
    pixel = torch.randn(2 * 4, 16, 4)
    patch = torch.randn(2, 5, 16)
    blk.attn_out.proj.weight.data.zero_()
    blk.attn_out.proj.bias.data.zero_()
    blk.mlp.fc2.weight.data.zero_()
    blk.mlp.fc2.bias.data.zero_()
    # With the outer residual branches silenced, the output is patch + word projection exactly.
    new_pixel, new_patch = blk(pixel, patch)
    words = blk.norm2_proj(blk.proj(blk.norm1_proj(new_pixel.reshape(2, 4, -1))))
    assert torch.equal(new_patch[:, 0], patch[:, 0])
    assert torch.allclose(new_patch[:, 1:], patch[:, 1:] + words, atol=1e-6)


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
