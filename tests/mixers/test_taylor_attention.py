"""The taylor_attention mixer (P08's Approximate): equals the polynomial-weights reference with its projections."""
from __future__ import annotations

import pytest
import torch

import attnlab.mixers as mixers
from attnlab.ops.taylor_attention import taylor_attention_reference


@pytest.mark.parametrize("causal", [False, True])
def test_mixer_equals_the_reference_with_its_weights(causal):
    torch.manual_seed(0)
    m = mixers.create("taylor_attention", 12, num_heads=3, chunk_size=4).double().eval()
    x = torch.randn(2, 10, 12, dtype=torch.float64)
    q, k, v = (x @ m.qkv.weight.T).view(2, 10, 3, 3, 4).permute(2, 0, 3, 1, 4)
    o = taylor_attention_reference(q, k, v, causal=causal)
    want = o.transpose(1, 2).reshape(2, 10, 12) @ m.proj.weight.T + m.proj.bias
    torch.testing.assert_close(m(x, causal=causal), want, atol=1e-10, rtol=1e-10)
