"""Bi-level routing attention (P10): gather fast path vs dense-masked reference, routing semantics, errors."""
from __future__ import annotations

import math

import pytest
import torch

from attnlab.ops.attention import attention_reference
from attnlab.ops.recording import record_attention
from attnlab.ops.bilevel_routing import bilevel_routing_attention, bilevel_routing_attention_reference, region_ids

TOL = {torch.float32: dict(atol=2e-5, rtol=1e-4), torch.float64: dict(atol=1e-12, rtol=1e-10)}

# (h, w, n_win, topk): multiples of n_win, grids padded inside (odd, smaller than n_win), topk >= regions
CASES = [(4, 4, 2, 2), (5, 7, 2, 3), (9, 9, 4, 4), (3, 2, 4, 3), (7, 7, 7, 4), (8, 8, 4, 16), (6, 10, 3, 1)]


def _qkv(b, h, n, d, dtype, seed=0, dv=None):
    g = torch.Generator().manual_seed(seed)
    shapes = [(b, h, n, d), (b, h, n, d), (b, h, n, dv or d)]
    return [torch.randn(*s, generator=g, dtype=dtype).requires_grad_() for s in shapes]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("masked", [False, True])
def test_fast_equals_reference_forward_and_backward(case, dtype, masked):
    h, w, s, tk = case
    n = h * w
    q, k, v = _qkv(2, 3, n, 5, dtype, seed=h * 31 + w, dv=6)
    kpm = (torch.rand(2, n, generator=torch.Generator().manual_seed(1)) > 0.3) if masked else None
    o1, i1 = bilevel_routing_attention(q, k, v, (h, w), n_win=s, topk=tk, key_padding_mask=kpm, return_index=True)
    o2, i2 = bilevel_routing_attention_reference(q, k, v, (h, w), n_win=s, topk=tk, key_padding_mask=kpm,
                                                 return_index=True)
    assert torch.equal(i1, i2), "the two paths route differently"
    torch.testing.assert_close(o1, o2, **TOL[dtype])
    g = torch.randn_like(o1)
    for a, b in zip(torch.autograd.grad(o1, (q, k, v), g), torch.autograd.grad(o2, (q, k, v), g)):
        torch.testing.assert_close(a, b, **TOL[dtype])


def test_gradcheck_fast_path_float64():
    q, k, v = _qkv(1, 1, 10, 2, torch.float64, seed=3)
    fn = lambda q, k, v: bilevel_routing_attention(q, k, v, (5, 2), n_win=2, topk=2)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (q, k, v), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_routing_is_top_k_of_region_mean_affinity_by_loop():
    h, w, s, tk = 5, 6, 2, 2
    q, k, v = _qkv(1, 2, h * w, 4, torch.float64, seed=7)
    _, index = bilevel_routing_attention(q, k, v, (h, w), n_win=s, topk=tk, return_index=True)
    rh, rw = math.ceil(h / s), math.ceil(w / s)
    qc = q[0].detach().permute(1, 0, 2).reshape(h * w, -1)  # heads concatenated
    kc = k[0].detach().permute(1, 0, 2).reshape(h * w, -1)
    members = {r: [] for r in range(s * s)}
    for i in range(h):
        for j in range(w):
            members[(i // rh) * s + j // rw].append(i * w + j)
    q_r = torch.stack([qc[members[r]].mean(0) for r in range(s * s)])
    k_r = torch.stack([kc[members[r]].mean(0) for r in range(s * s)])
    aff = q_r @ k_r.T
    for r in range(s * s):
        want = set(torch.argsort(aff[r], descending=True)[:tk].tolist())
        assert set(index[0, r].tolist()) == want


def test_output_ignores_keys_outside_routed_regions():
    h, w, s, tk = 6, 6, 3, 2
    q, k, v = _qkv(1, 2, h * w, 4, torch.float64, seed=11)
    out, index = bilevel_routing_attention(q, k, v, (h, w), n_win=s, topk=tk, return_index=True)
    rid = region_ids((h, w), s)
    r = 4  # the centre region
    routed = set(index[0, r].tolist())
    far = torch.tensor([int(rid[j]) not in routed for j in range(h * w)])
    k2, v2 = k.detach().clone(), v.detach().clone()
    k2[:, :, far] += 3.0 * torch.randn_like(k2[:, :, far])
    v2[:, :, far] += 3.0 * torch.randn_like(v2[:, :, far])
    out2 = bilevel_routing_attention(q, k2, v2, (h, w), n_win=s, topk=tk, index=index)
    mine = rid == r
    torch.testing.assert_close(out2[:, :, mine], out[:, :, mine], atol=1e-12, rtol=0)
    assert not torch.allclose(out2[:, :, ~mine], out[:, :, ~mine])


def test_all_regions_routed_is_full_attention():
    q, k, v = _qkv(2, 2, 35, 4, torch.float64, seed=5)
    out = bilevel_routing_attention(q, k, v, (5, 7), n_win=3, topk=9)
    torch.testing.assert_close(out, attention_reference(q, k, v), atol=1e-12, rtol=1e-10)


def test_padded_keys_are_never_attended_and_never_route():
    h, w = 5, 5
    q, k, v = _qkv(1, 2, h * w, 4, torch.float64, seed=9)
    kpm = torch.ones(1, h * w, dtype=torch.bool)
    kpm[0, -7:] = False
    out = bilevel_routing_attention(q, k, v, (h, w), n_win=2, topk=2, key_padding_mask=kpm)
    q2, k2, v2 = (t.detach().clone() for t in (q, k, v))
    for t in (q2, k2, v2):
        t[:, :, ~kpm[0]] = 50.0 * torch.randn_like(t[:, :, ~kpm[0]])
    out2 = bilevel_routing_attention(q2, k2, v2, (h, w), n_win=2, topk=2, key_padding_mask=kpm)
    torch.testing.assert_close(out2[:, :, kpm[0]], out[:, :, kpm[0]], atol=1e-12, rtol=0)


def test_recording_gives_dense_probabilities_with_routed_support():
    q, k, v = _qkv(1, 2, 16, 4, torch.float32, seed=2)
    with record_attention() as rec:
        out, index = bilevel_routing_attention(q, k, v, (4, 4), n_win=2, topk=2, return_index=True)
    (probs,) = rec.maps["call0"]
    assert probs.shape == (1, 2, 16, 16)
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 2, 16))
    rid = region_ids((4, 4), 2)
    allowed = torch.zeros(16, 16, dtype=torch.bool)
    for i in range(16):
        allowed[i] = torch.isin(rid, index[0, rid[i]])
    assert (probs[0][:, ~allowed] == 0).all()
    torch.testing.assert_close(out, bilevel_routing_attention(q, k, v, (4, 4), n_win=2, topk=2))


def test_bad_input_is_named():
    q, k, v = _qkv(1, 2, 12, 4, torch.float32)
    with pytest.raises(ValueError, match="grid: expected a grid whose product"):
        bilevel_routing_attention(q, k, v, (3, 5), n_win=2, topk=2)
    with pytest.raises(ValueError, match="n_win: expected a positive int"):
        bilevel_routing_attention(q, k, v, (3, 4), n_win=0, topk=2)
    with pytest.raises(ValueError, match="index: expected a long tensor"):
        bilevel_routing_attention(q, k, v, (3, 4), n_win=2, topk=2, index=torch.zeros(1, 4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="k: expected the shape of q"):
        bilevel_routing_attention(q, k[:, :, :6], v, (3, 4), n_win=2, topk=2)
