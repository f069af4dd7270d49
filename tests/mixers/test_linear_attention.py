"""The linear_attention mixer (P12's baseline) beyond the registry contract: projections around the
quadratic reference of the op, and token-by-token decoding equal to the causal forward (fp64, 1e-10)."""
from __future__ import annotations

import pytest
import torch

import attnlab.mixers as mixers
from attnlab.ops.linear_attention import linear_attention_quadratic


@pytest.mark.parametrize("kw", [dict(num_heads=2, chunk_size=5),
                                dict(num_heads=2, feature_map="identity", normalize=False)])
def test_step_decoding_equals_causal_forward(kw, decode):
    torch.manual_seed(0)
    m = mixers.create("linear_attention", 16, **kw).double().eval()
    x = torch.randn(2, 19, 16, dtype=torch.float64)
    torch.testing.assert_close(decode(m, x), m(x, causal=True), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("feature_map,normalize", [("elu+1", True), ("relu", True), ("identity", False)])
def test_mixer_is_projections_around_the_quadratic_reference(causal, feature_map, normalize, heads_io):
    qkv, out = heads_io
    torch.manual_seed(0)
    m = mixers.create("linear_attention", 12, num_heads=3, chunk_size=4, feature_map=feature_map,
                      normalize=normalize).double().eval()
    x = torch.randn(2, 11, 12, dtype=torch.float64)
    kpm = torch.ones(2, 11, dtype=torch.bool)
    kpm[1, 7:] = False
    with torch.no_grad():
        q, k, v = qkv(m, x)
        o = linear_attention_quadratic(q, k, v, causal=causal, feature_map=feature_map, normalize=normalize,
                                       key_mask=kpm)
        # padded positions carry no meaning (the base class zeroes them before mixing): real tokens only
        torch.testing.assert_close(m(x, causal=causal, key_padding_mask=kpm)[kpm], out(m, o)[kpm], atol=1e-10, rtol=1e-10)
