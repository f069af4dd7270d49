"""BiFormer, S2AFormer, Hyena N-D ViT: the structure each paper specifies, any image size, clear errors."""
from __future__ import annotations

import pytest
import torch

from attnlab import mixers
from attnlab.models import ViT, create
from attnlab.models.biformer import BiFormer
from attnlab.models.dinat import DiNAT
from attnlab.models.hyena_vit import HyenaViT
from attnlab.models.s2aformer import S2AFormer


def _grids_seen(model, x):
    """The grid every block of a hierarchical model is called with, in order."""
    seen = []
    hooks = [blk.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[1])))
             for stage in model.stages for blk in stage]
    model(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("name", ["biformer_tiny", "s2aformer_tiny", "dinat_tiny"])
def test_hierarchy_runs_its_stages_at_4x_8x_16x_and_takes_any_size(name):
    torch.manual_seed(0)
    model = create(name, img_size=32, in_chans=1, num_classes=7).eval()
    assert _grids_seen(model, torch.randn(2, 1, 32, 32)) == [(8, 8)] * 2 + [(4, 4)] * 2 + [(2, 2)] * 2
    # Odd sizes: every stride-2 conv rounds up (28 -> 7 -> 4 -> 2).
    assert _grids_seen(model, torch.randn(2, 1, 28, 28)) == [(7, 7)] * 2 + [(4, 4)] * 2 + [(2, 2)] * 2
    assert model(torch.randn(3, 1, 40, 24)).shape == (3, 7)


def test_biformer_blocks_route_with_the_stage_settings():
    model = BiFormer(embed_dim=(16, 32), depth=(1, 1), num_heads=(1, 2), n_win=(2, 1), topk=(3, -1))
    attn = [blk.block.mixer for stage in model.stages for blk in stage]
    assert all(type(a) is mixers.get_info("bilevel_routing").cls for a in attn)
    assert [(a.n_win, a.topk, a.num_heads) for a in attn] == [(2, 3, 1), (1, 1, 2)]  # -1 = every region


def test_s2aformer_blocks_use_strip_attention_with_compressed_qk():
    model = S2AFormer(embed_dim=(32, 64), depth=(1, 1), num_heads=(1, 2), sr_ratio=(4, 2))
    attn = [blk.attn for stage in model.stages for blk in stage]
    assert all(type(a) is mixers.get_info("strip_attention").cls for a in attn)
    assert [(a.qk_dim, a.sr_ratio) for a in attn] == [(8, 4), (16, 2)]


def _stage0_reach(model) -> torch.Tensor:
    """Which input tokens of the 8x8 stage-1 grid reach output token (0, 0) through that stage's blocks (fp64)."""
    model = model.double().eval()
    x = torch.randn(1, 64, 32, dtype=torch.float64, requires_grad=True)
    h = x
    for blk in model.stages[0]:
        h = blk(h, (8, 8))
    (h[0, 0] * torch.randn(32, dtype=torch.float64)).sum().backward()
    return (x.grad[0].abs().sum(-1) > 0).view(8, 8)


def test_dinat_dilated_block_widens_the_receptive_field_over_nat():
    torch.manual_seed(0)
    cfg = dict(embed_dim=(32,), depth=(2,), num_heads=(1,), kernel_size=3)
    nat = _stage0_reach(DiNAT(dilations=((1,),), **cfg))
    dinat = _stage0_reach(DiNAT(dilations=((1, 2),), **cfg))
    # Output (0, 0): NA then NA (k=3, corner windows) reaches 0..3 per axis; NA then DiNA (d=2: window {0, 2, 4},
    # each widened by the NA below) reaches 0..5.
    assert nat[:4, :4].all() and not nat[4:].any() and not nat[:, 4:].any()
    assert dinat[:6, :6].all() and not dinat[6:].any() and not dinat[:, 6:].any()
    blocks = [b for stage in create("dinat_tiny").stages for b in stage]
    assert [b.dilation for b in blocks] == [1, 2, 1, 1, 1, 1]
    assert type(blocks[0].block.mixer) is mixers.get_info("neighborhood").cls


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


def test_bad_configs_are_named():
    with pytest.raises(ValueError, match="depth: expected 3 entries"):
        BiFormer(embed_dim=(16, 32, 64), depth=(1, 1))
    with pytest.raises(ValueError, match="topk: expected -1 or a count in"):
        BiFormer(embed_dim=(16,), depth=(1,), num_heads=(1,), n_win=(2,), topk=(5,))
    with pytest.raises(TypeError, match="dilations: expected per stage a non-empty tuple"):
        DiNAT(embed_dim=(16,), depth=(1,), num_heads=(1,), dilations=((0,),))
    with pytest.raises(ValueError, match="num_hyena: expected an int in \\[0, depth=2\\]"):
        HyenaViT(depth=2, num_hyena=3)
    with pytest.raises(ValueError, match="x: expected an image batch"):
        S2AFormer(in_chans=1, embed_dim=(16,), depth=(1,), num_heads=(1,), sr_ratio=(1,))(torch.randn(2, 3, 16, 16))
