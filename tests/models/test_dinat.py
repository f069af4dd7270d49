"""DiNAT (P26): the dilated block widens the receptive field over NAT's at the same cost; bad dilations are named."""
from __future__ import annotations

import pytest
import torch

from attnlab import mixers
from attnlab.models import create
from attnlab.models.dinat import DiNAT


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


def test_bad_dilations_are_named():
    with pytest.raises(TypeError, match="dilations: expected per stage a non-empty tuple"):
        DiNAT(embed_dim=(16,), depth=(1,), num_heads=(1,), dilations=((0,),))
