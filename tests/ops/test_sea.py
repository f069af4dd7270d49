"""SEA (P20) ops: kernel estimate, top-k bins, gathered sparse attention vs the dense references."""
from __future__ import annotations

import math

import pytest
import torch

from attnlab.ops.attention import attention_reference
from attnlab.ops.recording import record_attention
from attnlab.ops.sea import (
    bin_edges,
    expand_estimate,
    favor_features,
    favor_projection,
    sea_attention,
    sea_attention_reference,
    sea_estimate,
    sea_estimate_reference,
    sea_mask_reference,
    sea_select,
    selection_to_mask,
    sparse_gather_attention,
)

TOL = {torch.float32: dict(atol=2e-5, rtol=1e-4), torch.float64: dict(atol=1e-11, rtol=1e-10)}


def _inputs(b, h, n, d, dv, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, x, generator=g, dtype=dtype, requires_grad=True) for x in (d, d, dv)]


def _grads(out, inputs):
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    return torch.autograd.grad((out * g).sum(), inputs)


def _padding(b, n, seed=3):
    mask = torch.rand(b, n, generator=torch.Generator().manual_seed(seed)) > 0.3
    mask[:, 0] = True
    return mask


CASES = [(9, 4, 3, 1), (17, 8, 4, 4), (33, 8, 6, 7), (5, 8, 2, 64), (40, 16, 5, 16)]  # n, t_m, top_k, block


F32, F64 = torch.float32, torch.float64
# every case, dtype, mode and padding at least once; the full grid runs with -m slow
FAST = [(CASES[0], F64, True, False), (CASES[1], F32, True, True), (CASES[2], F64, True, True),
        (CASES[2], F32, False, False), (CASES[3], F64, False, True), (CASES[4], F64, True, False),
        (CASES[4], F32, False, True)]
GRID = [(c, dt, ca, p) for c in CASES for dt in (F32, F64) for ca in (True, False) for p in (False, True)]


@pytest.mark.parametrize("case,dtype,causal,padded", FAST)
def test_sea_equals_dense_reference_forward_and_grads(case, dtype, causal, padded):
    _compare(*case, dtype, causal, padded)


@pytest.mark.slow
@pytest.mark.parametrize("case,dtype,causal,padded", [c for c in GRID if c not in FAST])
def test_sea_equals_dense_reference_full_grid(case, dtype, causal, padded):
    _compare(*case, dtype, causal, padded)


def _compare(n, t_m, top_k, block, dtype, causal, padded):
    q, k, v = _inputs(2, 2, n, 6, 5, dtype)
    proj = favor_projection(12, 6, dtype=dtype)
    kw = dict(t_m=t_m, top_k=top_k, causal=causal, block=block, key_padding_mask=_padding(2, n) if padded else None)
    out, est = sea_attention(q, k, v, proj, estimate_grad=True, return_estimate=True, **kw)
    out_r, est_r = sea_attention_reference(q, k, v, proj, return_estimate=True, **kw)
    torch.testing.assert_close(est, est_r, **TOL[dtype])
    torch.testing.assert_close(out, out_r, **TOL[dtype])
    for a, r in zip(_grads(out, (q, k, v)), _grads(out_r, (q, k, v))):
        torch.testing.assert_close(a, r, **TOL[dtype])
    # the estimate is differentiable too (distillation): its gradients match the explicit form
    for a, r in zip(_grads(est, (q, k)), _grads(est_r, (q, k))):
        torch.testing.assert_close(a, r, **TOL[dtype])


@pytest.mark.parametrize("n,t_m,top_k,block", CASES)
@pytest.mark.parametrize("causal", [True, False])
def test_selection_equals_row_by_row_mask(n, t_m, top_k, block, causal):
    est = torch.rand(2, 3, n, t_m, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    mask = _padding(2, n)
    idx, valid = sea_select(est, top_k=top_k, causal=causal, block=block, key_padding_mask=mask)
    dense = selection_to_mask(idx, valid, n)
    torch.testing.assert_close(dense, sea_mask_reference(est, top_k=top_k, causal=causal, block=block, key_padding_mask=mask))
    if causal:
        assert not (dense & ~torch.ones(n, n, dtype=torch.bool).tril()).any()
    assert not dense[~mask[:, None, None, :].expand_as(dense)].any()
    # keys are listed once each, in increasing order
    picked = idx.masked_fill(~valid, -1)
    assert (picked[..., 1:][valid[..., 1:]] > picked[..., :-1][valid[..., 1:]]).all()


def test_budget_is_about_top_k_keys_per_query():
    n, t_m, top_k = 512, 32, 32
    est = torch.rand(1, 2, n, t_m, generator=torch.Generator().manual_seed(0))
    for causal, block in ((False, 1), (True, 1), (True, 32)):
        _, valid = sea_select(est, top_k=top_k, causal=causal, block=block)
        count = valid.sum(-1).float()
        late = count[..., 128:]
        assert 0.7 * top_k <= late.mean() <= 1.3 * top_k, (causal, block, late.mean())
        assert count.max() <= 2 * top_k
        if causal:  # a query never keeps more keys than it can see
            assert (count <= torch.arange(1, n + 1)).all()


@pytest.mark.parametrize("causal", [True, False])
def test_keeping_every_bin_is_full_softmax_attention(causal):
    q, k, v = (t.detach() for t in _inputs(2, 2, 21, 8, 4, torch.float64))
    proj = favor_projection(16, 8, dtype=torch.float64)
    out = sea_attention(q, k, v, proj, t_m=8, top_k=10_000, causal=causal, block=5)
    torch.testing.assert_close(out, attention_reference(q, k, v, causal=causal), atol=1e-12, rtol=1e-12)


def test_favor_features_estimate_the_softmax_kernel():
    d, f = 8, 8192
    proj = favor_projection(f, d, seed=1, dtype=torch.float64)
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(64, d, generator=g, dtype=torch.float64) * 0.5, torch.randn(64, d, generator=g, dtype=torch.float64) * 0.5
    exact = torch.exp((x * y).sum(-1))

    def rel_error(w):
        c = 0.5 * w.pow(2).sum(-1).max()  # the features' stabiliser, undone here
        est = (favor_features(x, w) * favor_features(y, w)).sum(-1) * torch.exp(2 * c)
        return float(((est - exact).abs() / exact).mean())

    assert rel_error(proj) < 0.08
    assert rel_error(proj[:256]) > 1.5 * rel_error(proj)  # Monte Carlo: more features, smaller error
    assert (favor_features(x, proj) > 0).all()


def test_favor_projection_blocks_are_orthogonal():
    w = favor_projection(20, 8, seed=0, dtype=torch.float64)
    block = w[:8] / w[:8].norm(dim=1, keepdim=True)
    torch.testing.assert_close(block @ block.T, torch.eye(8, dtype=torch.float64), atol=1e-12, rtol=0)
    assert w.shape == (20, 8)


@pytest.mark.parametrize("causal", [True, False])
def test_estimate_tracks_the_true_attention_with_many_features(causal):
    """With enough random features the compressed estimate is the true softmax mass per bin."""
    n, t_m, d = 48, 12, 8
    q, k, _ = (t.detach() * 0.6 for t in _inputs(1, 2, n, d, 1, torch.float64, seed=5))
    est = sea_estimate(q, k, favor_projection(4096, d, seed=3, dtype=torch.float64), t_m=t_m, causal=causal, block=1)
    probs = attention_reference(q, k, k[..., :1], causal=causal, return_probs=True)[1]
    edges = bin_edges(n, t_m, causal, 1).expand(n, t_m + 1)
    true = torch.stack([torch.stack([probs[..., i, edges[i, m]:edges[i, m + 1]].sum(-1) for m in range(t_m)], -1)
                        for i in range(n)], -2)
    assert (est - true).abs().max() < 0.06
    # and the kept bins hold nearly as much true attention as the best bins would
    idx, valid = sea_select(est, top_k=8, causal=causal, block=1)
    captured = (probs * selection_to_mask(idx, valid, n)).sum(-1)
    idx_best, valid_best = sea_select(true, top_k=8, causal=causal, block=1)
    best = (probs * selection_to_mask(idx_best, valid_best, n)).sum(-1)
    assert (captured / best).mean() > 0.98  # a random choice of bins scores about 0.79 here


def test_estimate_with_few_features_is_not_exact():
    """Control: with 4 random features the estimate is visibly off (the test above can fail)."""
    n, t_m, d = 48, 12, 8
    q, k, _ = (t.detach() * 0.6 for t in _inputs(1, 2, n, d, 1, torch.float64, seed=5))
    est = sea_estimate(q, k, favor_projection(4, d, seed=3, dtype=torch.float64), t_m=t_m, causal=False)
    probs = attention_reference(q, k, k[..., :1], return_probs=True)[1]
    true = probs.view(1, 2, n, t_m, n // t_m).sum(-1)
    assert (est - true).abs().max() > 0.06


@pytest.mark.parametrize("causal,block", [(True, 1), (True, 6), (False, 1)])
def test_expand_estimate_spreads_each_bin_over_its_keys(causal, block):
    n, t_m = 23, 5
    est = torch.rand(1, 2, n, t_m, dtype=torch.float64)
    est = est / est.sum(-1, keepdim=True)
    # bins with no key carry no mass in a real estimate
    edges = bin_edges(n, t_m, causal, block).expand(n, t_m + 1)
    est = est * ((edges[:, 1:] - edges[:, :-1]) > 0)
    est = est / est.sum(-1, keepdim=True)
    full = expand_estimate(est, causal=causal, block=block)
    torch.testing.assert_close(full.sum(-1), torch.ones(1, 2, n, dtype=torch.float64), atol=1e-12, rtol=0)
    for i in (0, 7, 22):
        for m in range(t_m):
            lo, hi = int(edges[i, m]), int(edges[i, m + 1])
            torch.testing.assert_close(full[..., i, lo:hi].sum(-1), est[..., i, m], atol=1e-12, rtol=0)
    if causal:
        assert (full[..., ~torch.ones(n, n, dtype=torch.bool).tril()] == 0).all()


def test_causal_perturbing_the_future():
    q, k, v = (t.detach() for t in _inputs(2, 2, 30, 6, 4, torch.float64))
    proj = favor_projection(12, 6, dtype=torch.float64)
    kw = dict(t_m=8, top_k=5, causal=True, block=4)
    out, est = sea_attention(q, k, v, proj, return_estimate=True, **kw)
    cut = 13
    q2, k2, v2 = (t.clone() for t in (q, k, v))
    for t in (q2, k2, v2):
        t[:, :, cut:] += 3 * torch.randn_like(t[:, :, cut:])
    out2, est2 = sea_attention(q2, k2, v2, proj, return_estimate=True, **kw)
    torch.testing.assert_close(out2[:, :, :cut], out[:, :, :cut], atol=1e-13, rtol=0)
    torch.testing.assert_close(est2[:, :, :cut], est[:, :, :cut], atol=1e-13, rtol=0)
    assert not torch.allclose(out2[:, :, cut:], out[:, :, cut:])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gathered_attention_equals_dense_masked_attention(dtype):
    b, h, n, kk = 2, 3, 19, 6
    q, k, v = _inputs(b, h, n, 5, 4, dtype)
    g = torch.Generator().manual_seed(7)
    idx = torch.stack([torch.randperm(n, generator=g)[:kk] for _ in range(b * h * n)]).view(b, h, n, kk)
    valid = torch.rand(b, h, n, kk, generator=g) > 0.3
    valid[..., 0, :] = False  # a query with no key gives zeros
    out = sparse_gather_attention(q, k, v, idx, valid)
    out_r = attention_reference(q, k, v, attn_mask=selection_to_mask(idx, valid, n))
    torch.testing.assert_close(out, out_r, **TOL[dtype])
    assert (out[..., 0, :] == 0).all()
    for a, r in zip(_grads(out, (q, k, v)), _grads(out_r, (q, k, v))):
        torch.testing.assert_close(a, r, **TOL[dtype])


def test_gathered_attention_gradcheck():
    q, k, v = _inputs(1, 2, 7, 3, 2, torch.float64)
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, 7, (1, 2, 7, 3), generator=g)
    idx[..., 1] = (idx[..., 0] + 1) % 7  # repeated keys accumulate in the backward's index_add
    valid = torch.rand(1, 2, 7, 3, generator=g) > 0.2
    assert torch.autograd.gradcheck(lambda a, b_, c: sparse_gather_attention(a, b_, c, idx, valid), (q, k, v),
                                    eps=1e-6, atol=1e-7, rtol=1e-5)


def test_sea_gradcheck():
    q, k, v = _inputs(1, 1, 9, 3, 2, torch.float64)
    proj = favor_projection(6, 3, dtype=torch.float64)
    for causal in (True, False):
        assert torch.autograd.gradcheck(
            lambda a, b_, c: sea_attention(a, b_, c, proj, t_m=4, top_k=3, causal=causal, block=2), (q, k, v),
            eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)  # the hand-written backward is checked in full above


def test_recording_gives_the_sparse_matrix():
    q, k, v = (t.detach() for t in _inputs(1, 2, 16, 4, 4, torch.float64))
    proj = favor_projection(8, 4, dtype=torch.float64)
    kw = dict(t_m=4, top_k=4, causal=True, block=4)
    with record_attention() as rec:
        out = sea_attention(q, k, v, proj, **kw)
    (probs,) = rec.maps["call0"]
    out_r, probs_r = sea_attention_reference(q, k, v, proj, return_probs=True, **kw)
    torch.testing.assert_close(probs, probs_r, atol=1e-12, rtol=0)
    torch.testing.assert_close(out, sea_attention(q, k, v, proj, **kw), atol=1e-12, rtol=1e-12)
    assert ((probs > 0).sum(-1) <= 8).all()


def test_bad_input_is_named():
    q, k, v = (t.detach() for t in _inputs(1, 1, 8, 4, 4, torch.float32))
    proj = favor_projection(6, 4)
    with pytest.raises(ValueError, match=r"t_m: expected a positive int"):
        sea_attention(q, k, v, proj, t_m=0, top_k=2)
    with pytest.raises(ValueError, match=r"proj: expected shape \(F, D=4\)"):
        sea_estimate(q, k, favor_projection(6, 3), t_m=4)
    with pytest.raises(ValueError, match=r"top_k: expected a positive int"):
        sea_select(torch.rand(1, 1, 8, 4), top_k=0)
    with pytest.raises(ValueError, match=r"key_padding_mask: expected shape"):
        sea_attention(q, k, v, proj, t_m=4, top_k=2, key_padding_mask=torch.ones(1, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"idx, valid: expected long / bool tensors"):
        sparse_gather_attention(q, k, v, torch.zeros(1, 1, 8, 2), torch.ones(1, 1, 8, 2, dtype=torch.bool))
    assert math.isfinite(float(favor_features(q * 100, proj).sum()))
