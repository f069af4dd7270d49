"""count_flops: a linear layer by hand, softmax attention through SDPA counted like its explicit form."""
from __future__ import annotations

import torch

import attnlab.mixers as mixers
from attnlab.analysis import count_flops
from attnlab.ops.attention import attention


def test_linear_layer_by_hand():
    lin = torch.nn.Linear(16, 8)
    assert count_flops(lin, torch.randn(5, 16)) == 2 * 5 * 16 * 8


def test_attention_is_counted_although_sdpa_is_fused():
    q, k, v = (torch.randn(2, 3, 11, 4) for _ in range(3))
    assert count_flops(attention, q, k, v) == 2 * (2 * 2 * 3 * 11 * 11 * 4)  # Q K^T and P V
    m = mixers.create("softmax", 12, num_heads=3)
    x = torch.randn(2, 11, 12)
    projections = 2 * 2 * 11 * (12 * 36 + 12 * 12)
    assert count_flops(m, x) == projections + 2 * (2 * 2 * 3 * 11 * 11 * 4)
