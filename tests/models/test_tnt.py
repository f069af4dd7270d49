"""TNT (P32): the inner words reach the patch tokens but not the class token; the inner attention
(`ShortSequenceAttention`, an explicit-product fast path for short sequences) equals attnlab's softmax mixer
with the same weights, forward and backward, and hands causal, key-padding and recorded calls to the parent."""
from __future__ import annotations

import pytest
import torch

from attnlab import record_attention
from attnlab.mixers.softmax import MultiHeadAttention
from attnlab.models.tnt import TNT, ShortSequenceAttention


def test_tnt_inner_words_reach_the_patch_tokens_not_the_class_token():
    torch.manual_seed(0)
    model = TNT(img_size=16, patch_size=8, embed_dim=16, inner_dim=4, depth=1, num_heads_inner=2,
                num_heads_outer=2, num_classes=3).eval()
    blk = model.blocks[0]
    pixel = torch.randn(2 * 4, 16, 4)
    patch = torch.randn(2, 5, 16)
    blk.attn_out.proj.weight.data.zero_()
    blk.attn_out.proj.bias.data.zero_()
    blk.mlp.fc2.weight.data.zero_()
    blk.mlp.fc2.bias.data.zero_()
    # With the outer residual branches silenced, the output is patch + word projection exactly.
    new_pixel, new_patch = blk(pixel, patch)
    words = blk.norm2_proj(blk.proj(blk.norm1_proj(new_pixel.reshape(2, 4, -1))))
    assert torch.equal(new_patch[:, 0], patch[:, 0])
    assert torch.allclose(new_patch[:, 1:], patch[:, 1:] + words, atol=1e-6)


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
