"""The self_gated_attention mixer (P08's Non-approximate, Eq. 7-8) against the formula written out per head."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import attnlab.mixers as mixers


@pytest.mark.parametrize("causal", [False, True])
def test_mixer_equals_the_formula_per_head(causal):
    torch.manual_seed(0)
    m = mixers.create("self_gated_attention", 8, num_heads=2, chunk_size=3).double().eval()
    x = torch.randn(2, 7, 8, dtype=torch.float64)
    q, k, v = (x @ m.qkv.weight.T).split(8, -1)
    out = []
    for i in range(2):
        sl = slice(4 * i, 4 * i + 4)
        s = (F.silu(q[..., sl]) * k[..., sl]).sum(-1) / 2.0  # (B, N): one score per token, sqrt(d_h) = 2
        rows = []
        for t in range(7):
            seen = slice(0, t + 1) if causal else slice(0, 7)
            w = torch.softmax(s[:, seen], -1)
            rows.append((w[..., None] * v[:, seen, sl]).sum(1))
        out.append(torch.stack(rows, 1))
    want = torch.cat(out, -1) @ m.proj.weight.T + m.proj.bias
    torch.testing.assert_close(m(x, causal=causal), want, atol=1e-12, rtol=1e-10)
    assert "rope" not in mixers.get_info("self_gated_attention").cls.__init__.__code__.co_varnames
