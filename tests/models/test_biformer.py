"""BiFormer (P10): every block routes with its stage's regions and top-k; bad stage configs are named."""
from __future__ import annotations

import pytest

from attnlab import mixers
from attnlab.models.biformer import BiFormer


def test_biformer_blocks_route_with_the_stage_settings():
    model = BiFormer(embed_dim=(16, 32), depth=(1, 1), num_heads=(1, 2), n_win=(2, 1), topk=(3, -1))
    attn = [blk.block.mixer for stage in model.stages for blk in stage]
    assert all(type(a) is mixers.get_info("bilevel_routing").cls for a in attn)
    assert [(a.n_win, a.topk, a.num_heads) for a in attn] == [(2, 3, 1), (1, 1, 2)]  # -1 = every region


def test_bad_configs_are_named():
    with pytest.raises(ValueError, match="depth: expected 3 entries"):
        BiFormer(embed_dim=(16, 32, 64), depth=(1, 1))
    with pytest.raises(ValueError, match="topk: expected -1 or a count in"):
        BiFormer(embed_dim=(16,), depth=(1,), num_heads=(1,), n_win=(2,), topk=(5,))
