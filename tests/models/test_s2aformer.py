"""S2AFormer (P09): its blocks use strip attention with compressed q/k and per-stage reduction; bad input named."""
from __future__ import annotations

import pytest
import torch

from attnlab import mixers
from attnlab.models.s2aformer import S2AFormer


def test_s2aformer_blocks_use_strip_attention_with_compressed_qk():
    model = S2AFormer(embed_dim=(32, 64), depth=(1, 1), num_heads=(1, 2), sr_ratio=(4, 2))
    attn = [blk.attn for stage in model.stages for blk in stage]
    assert all(type(a) is mixers.get_info("strip_attention").cls for a in attn)
    assert [(a.qk_dim, a.sr_ratio) for a in attn] == [(8, 4), (16, 2)]


def test_wrong_image_channels_are_named():
    with pytest.raises(ValueError, match="x: expected an image batch"):
        S2AFormer(in_chans=1, embed_dim=(16,), depth=(1,), num_heads=(1,), sr_ratio=(1,))(torch.randn(2, 3, 16, 16))
