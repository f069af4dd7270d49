"""The complex_attention mixer (CMHA, P18): equals the literal formula per head with its own projections, the
official initialisation, decoding positions, odd head dims refused."""
from __future__ import annotations

import pytest
import torch

import attnlab.mixers as mixers
from attnlab.ops.complex_attention import complex_attention_reference


def test_mixer_equals_the_literal_formula_with_its_weights():
    torch.manual_seed(0)
    m = mixers.create("complex_attention", 12, num_heads=3).double().eval()
    with torch.no_grad():
        m.bias.normal_()
    x = torch.randn(2, 9, 12, dtype=torch.float64)
    kpm = torch.ones(2, 9, dtype=torch.bool)
    kpm[1, 6:] = False
    x = x.masked_fill(~kpm[..., None], 0.0)  # the mixer contract zeroes padded positions before mixing
    qkv = (x @ m.qkv.weight.T).view(2, 9, 3, 3, 4).permute(2, 0, 3, 1, 4)
    o = complex_attention_reference(qkv[0], qkv[1], qkv[2], m.delta, m.bias, causal=True, key_padding_mask=kpm)
    want = o.transpose(1, 2).reshape(2, 9, 12) @ m.proj.weight.T + m.proj.bias
    torch.testing.assert_close(m(x, causal=True, key_padding_mask=kpm), want, atol=1e-12, rtol=1e-10)


def test_official_initialisation_and_parameter_count():
    torch.manual_seed(0)
    m = mixers.create("complex_attention", 256, num_heads=4)
    assert m.delta.shape == (4, 32) and (m.bias == 0).all()
    assert abs(m.delta.std().item() - 32 ** -0.5) < 0.03
    softmax = mixers.create("softmax", 256, num_heads=4)
    extra = sum(p.numel() for p in m.parameters()) - sum(p.numel() for p in softmax.parameters())
    assert extra == 256  # delta and b: H * d_h / 2 each


def test_decoding_matches_the_causal_forward_past_its_first_positions():
    torch.manual_seed(0)
    m = mixers.create("complex_attention", 8, num_heads=2).double().eval()
    x = torch.randn(2, 12, 8, dtype=torch.float64)
    state = m.init_state(2, dtype=torch.float64)
    outs = []
    for x_t in x.unbind(1):
        y_t, state = m.step(x_t, state)
        outs.append(y_t)
    torch.testing.assert_close(torch.stack(outs, 1), m(x, causal=True), atol=1e-12, rtol=1e-12)


def test_bad_configuration_is_named():
    with pytest.raises(ValueError, match=r"num_heads: expected a head count giving an even head dim"):
        mixers.create("complex_attention", 12, num_heads=4)
    with pytest.raises(ValueError, match=r"eps: expected a float >= 0"):
        mixers.create("complex_attention", 8, num_heads=2, eps=-1.0)
