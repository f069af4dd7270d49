"""The softmax / softmax_qknorm mixers (the baseline and P02's qk-layernorm) against the formula written out:
softmax(q k^T / sqrt(d_h)) v per head, with LayerNorm over each head's d_h on q and k for softmax_qknorm."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import attnlab.mixers as mixers
from attnlab.ops.rope import apply_rope_reference


def _explicit(m, x, causal, kpm, qk_norm, rotate=None):
    """Per-head loop over the formula (fp64), independent of the op and of einops; ``rotate(t)`` (RoPE's reference)
    turns the (B, N, d) queries and keys of a head."""
    b, n, c = x.shape
    h, d = m.num_heads, c // m.num_heads
    qkv = x @ m.qkv.weight.T + (m.qkv.bias if m.qkv.bias is not None else 0)
    q, k, v = qkv[..., :c], qkv[..., c:2 * c], qkv[..., 2 * c:]
    heads = []
    for i in range(h):
        qi, ki, vi = (t[..., i * d:(i + 1) * d] for t in (q, k, v))
        if qk_norm:
            qi = F.layer_norm(qi, (d,), m.q_norm.weight, m.q_norm.bias, m.q_norm.eps)
            ki = F.layer_norm(ki, (d,), m.k_norm.weight, m.k_norm.bias, m.k_norm.eps)
        if rotate is not None:
            qi, ki = rotate(qi), rotate(ki)
        logits = qi @ ki.transpose(-1, -2) / d ** 0.5
        allowed = torch.ones(n, n, dtype=torch.bool)
        if causal:
            allowed = allowed.tril()
        allowed = allowed & kpm[:, None, :]
        heads.append(logits.masked_fill(~allowed, float("-inf")).softmax(-1) @ vi)
    return torch.cat(heads, -1) @ m.proj.weight.T + m.proj.bias


@pytest.mark.parametrize("name", ["softmax", "softmax_qknorm"])
@pytest.mark.parametrize("causal", [False, True])
def test_mixer_equals_the_formula_per_head(name, causal):
    torch.manual_seed(0)
    m = mixers.create(name, 12, num_heads=3, qkv_bias=True).double().eval()
    if name == "softmax_qknorm":
        with torch.no_grad():  # a visible, non-trivial norm
            for norm in (m.q_norm, m.k_norm):
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.normal_()
    x = torch.randn(2, 11, 12, dtype=torch.float64)
    kpm = torch.ones(2, 11, dtype=torch.bool)
    kpm[1, 8:] = False
    want = _explicit(m, x, causal, kpm, qk_norm=name == "softmax_qknorm")
    # padded positions carry no meaning (the base class zeroes them before mixing): real tokens only
    torch.testing.assert_close(m(x, causal=causal, key_padding_mask=kpm)[kpm], want[kpm], atol=1e-12, rtol=1e-10)


def test_qknorm_is_per_head_and_differs_from_plain_softmax():
    torch.manual_seed(0)
    plain = mixers.create("softmax", 16, num_heads=4).double().eval()
    normed = mixers.create("softmax_qknorm", 16, num_heads=4).double().eval()
    assert tuple(normed.q_norm.weight.shape) == (4,)  # over d_h = 16 / 4, not over C
    normed.load_state_dict(plain.state_dict(), strict=False)
    x = 3 * torch.randn(1, 9, 16, dtype=torch.float64)
    assert (normed(x) - plain(x)).abs().max() > 1e-3


@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_rope_option_equals_the_formula_with_rotated_queries_and_keys(layout):
    torch.manual_seed(0)
    m = mixers.create("softmax_qknorm", 12, num_heads=3, rope={"base": 100.0, "layout": layout}).double().eval()
    x = torch.randn(2, 11, 12, dtype=torch.float64)
    kpm = torch.ones(2, 11, dtype=torch.bool)

    def rotate(t):  # (B, N, d) -> the rotation-matrix definition at positions 0 .. N-1
        return apply_rope_reference(t[:, None], torch.arange(t.shape[1]), base=100.0, layout=layout)[:, 0]

    want = _explicit(m, x, True, kpm, qk_norm=True, rotate=rotate)
    torch.testing.assert_close(m(x, causal=True), want, atol=1e-12, rtol=1e-10)
    plain = mixers.create("softmax_qknorm", 12, num_heads=3).double().eval()
    plain.load_state_dict(m.state_dict())
    assert (plain(x, causal=True) - want).abs().max() > 1e-3


def test_decoding_step_uses_the_token_position():
    torch.manual_seed(0)
    m = mixers.create("softmax", 8, num_heads=2, rope=True).double().eval()
    x = torch.randn(1, 6, 8, dtype=torch.float64)
    state = m.init_state(1, dtype=torch.float64)
    for t in range(5):
        _, state = m.step(x[:, t], state)
    y_last, _ = m.step(x[:, 5], state)
    torch.testing.assert_close(y_last, m(x, causal=True)[:, 5], atol=1e-12, rtol=1e-12)
    # the same cache with the position counter reset: a different (wrong) row, so the position is used
    y_wrong, _ = m.step(x[:, 5], {**state, "pos": 0})
    assert (y_wrong - y_last).abs().max() > 1e-4
    with pytest.raises(TypeError, match=r"state: expected a key-value cache dict"):
        m.step(x[:, 0], {"k": state["k"]})


def test_attention_fn_replaces_the_attention_op():
    # the hook sequence parallelism uses: the mixer calls attention_fn with attention's arguments
    import attnlab.mixers as mixers
    from attnlab.ops.attention import attention

    m = mixers.create("softmax", 8, num_heads=2).eval()
    x = torch.randn(2, 5, 8)
    kpm = torch.tensor([[True] * 5, [True, True, True, False, False]])
    want = m(x, causal=True, key_padding_mask=kpm)
    calls = []

    def spy(q, k, v, **kw):
        calls.append((q.shape, kw))
        return attention(q, k, v, **kw)

    m.attention_fn = spy
    torch.testing.assert_close(m(x, causal=True, key_padding_mask=kpm), want, rtol=0, atol=0)
    assert calls == [((2, 2, 5, 4), {"causal": True, "key_padding_mask": kpm, "dropout_p": 0.0})]
    m.attention_fn = lambda q, k, v, **kw: torch.zeros_like(q)
    assert m(x).abs().max() <= m.proj.bias.abs().max() + 1e-6  # only the output projection's bias is left
