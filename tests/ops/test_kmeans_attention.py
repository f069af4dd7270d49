"""attnlab.ops.kmeans_attention: the scatter fast path against the explicit one-hot reference, and the update
against one Lloyd step of k-means computed by hand.

Tolerances: fp64 1e-12 (forward and gradients: the same sums in another order); fp32 1e-5.
"""
from __future__ import annotations

import pytest
import torch

from attnlab.ops.kmeans_attention import (
    kmeans_assignment,
    kmeans_cross_attention,
    kmeans_cross_attention_reference,
    kmeans_update,
    kmeans_update_reference,
)

TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


def _qkv(b, h, l, n, d, dv, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, h, l, d, generator=g, dtype=dtype), torch.randn(b, h, n, d, generator=g, dtype=dtype),
            torch.randn(b, h, n, dv, generator=g, dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("normalize", ["sum", "mean"])
@pytest.mark.parametrize("b,h,l,n,d,dv", [(1, 1, 1, 1, 3, 2), (2, 3, 5, 17, 8, 6), (1, 2, 8, 257, 16, 16),
                                          (2, 1, 40, 33, 4, 5)])
def test_fast_path_matches_the_one_hot_reference(assert_close, dtype, normalize, b, h, l, n, d, dv):
    q, k, v = _qkv(b, h, l, n, d, dv, dtype)
    v.requires_grad_(True)
    tol = TOL[dtype]
    assert_close(kmeans_cross_attention(q, k, v, normalize=normalize),
                 kmeans_cross_attention_reference(q, k, v, normalize=normalize), atol=tol, rtol=tol, grads_of=[v])


def test_one_lloyd_step_by_hand_with_mean_normalisation():
    """Centres and points on the unit circle: nearest centre = largest dot product; the mean update is the
    centroid of each cluster, computed here with plain Python loops over the points."""
    g = torch.Generator().manual_seed(3)
    points = torch.nn.functional.normalize(torch.randn(23, 2, generator=g, dtype=torch.float64), dim=-1)
    centres = torch.nn.functional.normalize(torch.randn(4, 2, generator=g, dtype=torch.float64), dim=-1)
    # Lloyd's assignment step by Euclidean distance, and its update step, by hand
    members = {c: [] for c in range(4)}
    for p in points.tolist():
        dist = [sum((pi - ci) ** 2 for pi, ci in zip(p, c)) for c in centres.tolist()]
        members[dist.index(min(dist))].append(p)
    expected = torch.tensor([[sum(x[j] for x in members[c]) / len(members[c]) if members[c] else 0.0 for j in range(2)]
                             for c in range(4)], dtype=torch.float64)
    q, k = centres[None, None], points[None, None]
    got = kmeans_cross_attention(q, k, k, normalize="mean")[0, 0]
    torch.testing.assert_close(got, expected, atol=1e-14, rtol=0)
    assert sum(len(m) > 0 for m in members.values()) >= 3  # the case is not degenerate
    # the sum normalisation (kMaX) is the centroid times the cluster size
    sizes = torch.tensor([len(members[c]) for c in range(4)], dtype=torch.float64)
    torch.testing.assert_close(kmeans_cross_attention(q, k, k)[0, 0], expected * sizes[:, None], atol=1e-13, rtol=0)


def test_a_hand_made_assignment_and_update():
    # 3 clusters x 4 pixels: pixel 0 -> 2, pixel 1 -> 0, pixel 2 -> 0 (tie between 0 and 2: first wins), pixel 3 -> 1
    logits = torch.tensor([[0.0, 5.0, 2.0, 0.0], [1.0, 1.0, 1.0, 3.0], [4.0, 0.0, 2.0, -1.0]], dtype=torch.float64)
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [10.0, -10.0]], dtype=torch.float64)
    assert kmeans_assignment(logits[None, None]).flatten().tolist() == [2, 0, 0, 1]
    want_sum = torch.tensor([[2.0, 3.0], [10.0, -10.0], [1.0, 0.0]], dtype=torch.float64)
    want_mean = torch.tensor([[1.0, 1.5], [10.0, -10.0], [1.0, 0.0]], dtype=torch.float64)
    for fn in (kmeans_update, kmeans_update_reference):
        torch.testing.assert_close(fn(logits[None, None], v[None, None])[0, 0], want_sum, atol=0, rtol=0)
        torch.testing.assert_close(fn(logits[None, None], v[None, None], normalize="mean")[0, 0], want_mean,
                                   atol=0, rtol=0)


def test_an_empty_cluster_gets_zero_and_no_gradient_reaches_the_assignment():
    logits = torch.tensor([[[[3.0, 3.0, 3.0], [0.0, 0.0, 0.0]]]], requires_grad=True)  # cluster 1 is empty
    v = torch.randn(1, 1, 3, 4, requires_grad=True)
    out = kmeans_update(logits, v, normalize="mean")
    assert torch.equal(out[0, 0, 1], torch.zeros(4))
    out.sum().backward()
    assert logits.grad is None  # the argmax is a stop-gradient: logits take no part in the graph
    torch.testing.assert_close(v.grad, torch.full_like(v, 1.0 / 3.0))


def test_gradients_reach_values_only_and_are_the_gather_of_the_upstream():
    q, k, v = _qkv(1, 2, 3, 10, 4, 5, torch.float64)
    q.requires_grad_(True), k.requires_grad_(True), v.requires_grad_(True)
    up = torch.randn(1, 2, 3, 5, dtype=torch.float64)
    out = kmeans_cross_attention(q, k, v)
    gq, gk, gv = torch.autograd.grad(out, (q, k, v), up, allow_unused=True)
    assert gq is None and gk is None
    idx = kmeans_assignment(q @ k.transpose(-2, -1))  # (1, 2, 10)
    torch.testing.assert_close(gv, torch.gather(up, 2, idx.unsqueeze(-1).expand(-1, -1, -1, 5)), atol=0, rtol=0)


def test_bad_input_is_named():
    q, k, v = _qkv(1, 1, 3, 6, 4, 4, torch.float32)
    with pytest.raises(ValueError, match="normalize: expected one of"):
        kmeans_cross_attention(q, k, v, normalize="max")
    with pytest.raises(ValueError, match=r"v: expected shape \(B, H, N, Dv\)"):
        kmeans_update(torch.randn(1, 1, 3, 6), torch.randn(1, 1, 5, 4))
    with pytest.raises(TypeError, match="logits, v: expected one dtype"):
        kmeans_update(torch.randn(1, 1, 3, 6), torch.randn(1, 1, 6, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="k: expected head dim"):
        kmeans_cross_attention(q, torch.randn(1, 1, 6, 5), v)
