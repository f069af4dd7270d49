"""The deltanet mixer (P12) beyond the registry contract: the chunkwise layer equals the recurrent
reference (forward and backward), decoding equals the causal forward, and it refuses to be bidirectional."""
from __future__ import annotations

import pytest
import torch

import attnlab.mixers as mixers


def test_deltanet_chunkwise_equals_recurrent_reference_in_the_layer():
    torch.manual_seed(0)
    m = mixers.create("deltanet", 32, num_heads=4, chunk_size=8)
    x = torch.randn(2, 37, 32, requires_grad=True)
    y = m(x, causal=True)
    y_ref = m.mix(x, grid=None, causal=True, key_padding_mask=None, reference=True)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, g)
    (gx_ref,) = torch.autograd.grad(y_ref, x, g)
    torch.testing.assert_close(gx, gx_ref, atol=1e-5, rtol=1e-5)


def test_deltanet_is_causal_only():
    m = mixers.create("deltanet", 8, num_heads=2)
    assert not m.capabilities.bidirectional
    with pytest.raises(ValueError, match="causal: expected True"):
        m(torch.randn(1, 4, 8), causal=False)


@pytest.mark.parametrize("kw", [dict(num_heads=2, chunk_size=4),
                                dict(num_heads=2, chunk_size=4, use_gate=True, use_short_conv=False)])
def test_step_decoding_equals_causal_forward(kw, decode):
    torch.manual_seed(0)
    m = mixers.create("deltanet", 16, **kw).double().eval()
    x = torch.randn(2, 19, 16, dtype=torch.float64)
    torch.testing.assert_close(decode(m, x), m(x, causal=True), atol=1e-10, rtol=1e-10)


def test_default_chunk_follows_the_precision():
    """chunk_size=None: 32 in fp32, 64 in bf16 and under autocast (where the op measured faster); an explicit size
    always wins."""
    m = mixers.create("deltanet", 16, num_heads=2)
    assert m.chunk_for(torch.float32) == 32 and m.chunk_for(torch.bfloat16) == 64
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert m.chunk_for(torch.float32) == 64
    assert mixers.create("deltanet", 16, num_heads=2, chunk_size=8).chunk_for(torch.bfloat16) == 8
