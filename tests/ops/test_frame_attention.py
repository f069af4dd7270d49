"""ConvTSA: the SDPA path against the per-head, per-frame-pair loops (odd frame counts and map sizes, cross and
causal, fp32 and fp64, forward and backward), the scale of P21 checked on a hand case, causality by perturbation."""
from __future__ import annotations

import math

import pytest
import torch

from attnlab.ops.frame_attention import frame_attention, frame_attention_reference
from attnlab.ops.recording import record_attention


@pytest.mark.parametrize("b, tq, tk, c, h, w, heads, causal", [
    (1, 1, 1, 2, 1, 1, 1, False), (1, 1, 1, 2, 1, 1, 1, True), (2, 5, 5, 4, 3, 3, 2, False),
    (2, 5, 5, 4, 3, 3, 2, True), (2, 3, 6, 6, 5, 4, 3, False),  # cross-attention: 3 query frames, 6 key frames
])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_matches_the_loops(assert_close, b, tq, tk, c, h, w, heads, causal, dtype, tol):
    q = torch.randn(b, tq, c, h, w, dtype=dtype, requires_grad=True)
    k, v = (torch.randn(b, tk, c, h, w, dtype=dtype, requires_grad=True) for _ in range(2))
    assert_close(frame_attention(q, k, v, num_heads=heads, causal=causal),
                 frame_attention_reference(q, k, v, num_heads=heads, causal=causal), atol=tol, rtol=tol,
                 grads_of=[q, k, v])


def test_scores_are_scaled_by_sqrt_of_channels_per_head_times_map_size():
    """Constant maps: Q_i = a_i, K_j = b_j on all D = 2 * 3 * 3 entries of a head, so the score is
    a_i b_j D / sqrt(D) = a_i b_j sqrt(D); the recorded probabilities must be its softmax."""
    a, bvals = torch.tensor([0.3, -0.2]), torch.tensor([0.5, 0.1, -0.4])
    q = a.view(1, 2, 1, 1, 1).expand(1, 2, 2, 3, 3).contiguous()
    k = bvals.view(1, 3, 1, 1, 1).expand(1, 3, 2, 3, 3).contiguous()
    v = torch.randn(1, 3, 2, 3, 3)
    with record_attention() as rec:
        out = frame_attention(q, k, v, num_heads=1)
    expected = torch.softmax(a[:, None] * bvals[None, :] * math.sqrt(18), dim=1)
    torch.testing.assert_close(rec.maps["call0"][0][0, 0], expected)
    torch.testing.assert_close(out[0, 0], (expected[0, :, None, None, None] * v[0]).sum(0))


def test_causal_frame_sees_no_later_frame():
    x = torch.randn(2, 5, 4, 3, 3)
    y = frame_attention(x, x, x, num_heads=2, causal=True)
    x2 = x.clone()
    x2[:, 3:] += 3 * torch.randn_like(x2[:, 3:])
    y2 = frame_attention(x2, x2, x2, num_heads=2, causal=True)
    torch.testing.assert_close(y2[:, :3], y[:, :3], atol=0, rtol=0)
    assert (y2[:, 3:] - y[:, 3:]).abs().max() > 0.1


def test_bad_input_is_named():
    x = torch.randn(1, 3, 4, 2, 2)
    with pytest.raises(ValueError, match="num_heads: expected a divisor of the channels C=4"):
        frame_attention(x, x, x, num_heads=3)
    with pytest.raises(ValueError, match="k: expected shape"):
        frame_attention(x, x[:, :, :2], x[:, :, :2], num_heads=1)
    with pytest.raises(ValueError, match="causal: expected False when queries and keys"):
        frame_attention(x, x[:, :2], x[:, :2], num_heads=1, causal=True)
    with pytest.raises(ValueError, match="q: expected a tensor of rank 5"):
        frame_attention(x[0], x, x, num_heads=1)
