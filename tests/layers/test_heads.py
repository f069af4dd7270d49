"""attnlab.layers.heads.split_qkv: the head split by hand, one-token input, norms before RoPE."""
from __future__ import annotations

import torch
from torch import nn

from attnlab.layers import RotaryEmbedding, split_qkv
from attnlab.ops.rope import apply_rope


def test_split_by_hand_and_single_token():
    t = torch.arange(2 * 3 * 12, dtype=torch.float64).view(2, 3, 12)  # (B, N, 3C) with C = 4, H = 2, d = 2
    q, k, v = split_qkv(t, 2)
    assert q.shape == (2, 2, 3, 2)
    torch.testing.assert_close(q[1, 1, 2], t[1, 2, 2:4])
    torch.testing.assert_close(k[0, 0, 1], t[0, 1, 4:6])
    torch.testing.assert_close(v[0, 1, 0], t[0, 0, 10:12])
    q1, _, _ = split_qkv(t[:, 2], 2)
    torch.testing.assert_close(q1[:, :, 0], q[:, :, 2])


def test_norms_then_rope_from_the_offset():
    t = torch.randn(1, 5, 24, dtype=torch.float64)
    norm = nn.LayerNorm(4).double()
    q, k, _ = split_qkv(t, 2, rope=RotaryEmbedding(4).double(), offset=7, q_norm=norm, k_norm=norm)
    q0, k0, _ = split_qkv(t, 2)
    torch.testing.assert_close(q, apply_rope(norm(q0), torch.arange(7, 12)))
    torch.testing.assert_close(k, apply_rope(norm(k0), torch.arange(7, 12)))
