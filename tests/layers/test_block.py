"""attnlab.layers.block: MixerBlock and Block are x + mixer(norm1 x), then x + ffn(norm2 x); the grid reaches only
mixers that use geometry; the parameter names are the ones checkpoints and timm state dicts rely on."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import attnlab.mixers as mixers
from attnlab.layers.block import Block, MixerBlock


class GridSpy(torch.nn.Module):
    """A stand-in mixer that records the grid it was given and doubles its input."""

    def __init__(self, grid_mode):
        super().__init__()
        self.capabilities = mixers.Capabilities(grid=grid_mode)
        self.seen = []

    def forward(self, x, grid=None, causal=False, key_padding_mask=None):
        self.seen.append(grid)
        return 2 * x


def _formula(x, norm1, mix, norm2, fc1, fc2):
    h = x + mix(F.layer_norm(x, (x.shape[-1],), norm1.weight, norm1.bias, norm1.eps))
    z = F.layer_norm(h, (x.shape[-1],), norm2.weight, norm2.bias, norm2.eps)
    return h + F.linear(F.gelu(F.linear(z, fc1.weight, fc1.bias)), fc2.weight, fc2.bias)


def test_mixer_block_equals_the_formula_and_keeps_its_names():
    torch.manual_seed(0)
    mixer = mixers.create("softmax", 8, num_heads=2).double()
    blk = MixerBlock(8, mixer, mlp_ratio=2.0).double().eval()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    want = _formula(x, blk.norm1, lambda t: mixer(t, causal=True), blk.norm2, blk.ffn.fc1, blk.ffn.fc2)
    torch.testing.assert_close(blk(x, causal=True), want, atol=1e-12, rtol=1e-12)
    assert {k.split(".")[0] for k in blk.state_dict()} == {"norm1", "mixer", "norm2", "ffn"}


def test_block_equals_the_formula_and_keeps_timms_names():
    torch.manual_seed(0)
    attn = mixers.create("softmax", 8, num_heads=2).double()
    blk = Block(8, attn, mlp_ratio=3.0).double().eval()
    assert blk.norm1.eps == 1e-6 and blk.mlp.fc1.out_features == 24
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    want = _formula(x, blk.norm1, attn, blk.norm2, blk.mlp.fc1, blk.mlp.fc2)
    torch.testing.assert_close(blk(x), want, atol=1e-12, rtol=1e-12)
    assert {k.split(".")[0] for k in blk.state_dict()} == {"norm1", "attn", "norm2", "mlp"}
    assert Block(8, attn, mlp_ratio=0).mlp is None


@pytest.mark.parametrize("block", [lambda m: MixerBlock(4, m), lambda m: Block(4, m)])
def test_the_grid_reaches_only_mixers_that_use_geometry(block):
    x = torch.randn(1, 6, 4)
    for mode, expected in (("none", None), ("optional", (2, 3)), ("required", (2, 3))):
        spy = GridSpy(mode)
        block(spy)(x, grid=(2, 3))
        assert spy.seen == [expected]
