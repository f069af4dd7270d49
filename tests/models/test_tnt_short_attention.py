"""TNT's inner attention (`ShortSequenceAttention`, an explicit-product fast path for short sequences)
equals attnlab's softmax mixer with the same weights, forward and backward; the paths it hands back
to the parent (causal, key padding, recording) are the parent's exactly."""
from __future__ import annotations

import pytest
import torch

from attnlab import record_attention
from attnlab.mixers.softmax import MultiHeadAttention
from attnlab.models.tnt import ShortSequenceAttention


def _pair(dim, heads, dtype, qk_norm=False):
    torch.manual_seed(0)
    fast = ShortSequenceAttention(dim, num_heads=heads, qkv_bias=True, qk_norm=qk_norm).to(dtype)
    ref = MultiHeadAttention(dim, num_heads=heads, qkv_bias=True, qk_norm=qk_norm).to(dtype)
    ref.load_state_dict(fast.state_dict())
    return fast, ref


@pytest.mark.parametrize("dtype,atol,rtol", [(torch.float32, 2e-6, 1e-5), (torch.float64, 1e-12, 1e-10)])
@pytest.mark.parametrize("n,dim,heads,qk_norm", [(16, 12, 2, False), (7, 24, 4, False), (1, 8, 2, False),
                                                 (16, 12, 2, True)])
def test_fast_path_equals_the_softmax_mixer_forward_and_backward(dtype, atol, rtol, n, dim, heads, qk_norm):
    fast, ref = _pair(dim, heads, dtype, qk_norm)
    x = torch.randn(5, n, dim, dtype=dtype)
    xf, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    yf, yr = fast(xf), ref(xr)
    torch.testing.assert_close(yf, yr, atol=atol, rtol=rtol)
    g = torch.randn_like(yf)
    (yf * g).sum().backward()
    (yr * g).sum().backward()
    torch.testing.assert_close(xf.grad, xr.grad, atol=atol, rtol=rtol)
    for (name, pf), (_, pr) in zip(fast.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(pf.grad, pr.grad, atol=atol, rtol=rtol, msg=f"gradient of {name}")


def test_gradcheck_float64():
    fast, _ = _pair(8, 2, torch.float64)
    x = torch.randn(2, 5, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: fast(t), (x,))


def test_causal_masked_and_recorded_calls_take_the_parents_path():
    fast, ref = _pair(12, 2, torch.float64)
    x = torch.randn(3, 9, 12, dtype=torch.float64)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 5:] = False
    torch.testing.assert_close(fast(x, causal=True), ref(x, causal=True), atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(fast(x, key_padding_mask=mask), ref(x, key_padding_mask=mask), atol=1e-12, rtol=1e-10)
    with record_attention(fast) as rec:
        fast(x)
    assert len(rec.maps) == 1  # recorded: the parent's path ran (the fast path records nothing)
    ((probs,),) = rec.maps.values()
    assert probs.shape == (3, 2, 9, 9)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 2, 9, dtype=torch.float64))


def test_bad_input_is_still_refused_with_the_contract_error():
    fast, _ = _pair(12, 2, torch.float32)
    with pytest.raises(ValueError, match="x"):
        fast(torch.randn(2, 9, 10))
