"""Combiner (P03) ops: blocked fast paths vs the explicit factorised N x N references, full support, structure."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.ops.attention import attention_reference
from attnlab.ops.combiner import (
    combiner_axial,
    combiner_axial_reference,
    combiner_budget,
    combiner_fixed,
    combiner_fixed_reference,
)
from attnlab.ops.recording import record_attention

PAIRS = {"fixed": (combiner_fixed, combiner_fixed_reference), "axial": (combiner_axial, combiner_axial_reference)}
TOL = {torch.float32: dict(atol=2e-5, rtol=1e-4), torch.float64: dict(atol=1e-11, rtol=1e-10)}


def _inputs(b, h, n, d, dv, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, x, generator=g, dtype=dtype, requires_grad=True) for x in (d, d, dv)]


def _fwd_bwd(fn, inputs, **kw):
    for t in inputs:
        t.grad = None
    o = fn(*inputs, **kw)
    g = torch.Generator().manual_seed(1)
    (o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum().backward()
    return o.detach(), [t.grad.clone() for t in inputs]


SHAPES = [(1, 1, 1, 4, 4, 2), (2, 3, 17, 8, 5, 4), (1, 2, 36, 8, 8, 6), (1, 2, 7, 4, 4, 16)]  # b, h, n, d, dv, s
F32, F64 = torch.float32, torch.float64
# every shape, dtype, mode and padding at least once; the full grid runs with -m slow
FAST = [(SHAPES[0], F64, True, False), (SHAPES[1], F32, True, True), (SHAPES[1], F64, False, True),
        (SHAPES[2], F64, True, False), (SHAPES[2], F32, False, False), (SHAPES[3], F64, False, True)]
GRID = [(sh, dt, c, p) for sh in SHAPES for dt in (F32, F64) for c in (True, False) for p in (False, True)]


@pytest.mark.parametrize("pattern", ["fixed", "axial"])
@pytest.mark.parametrize("shape,dtype,causal,padded", FAST)
def test_fast_path_equals_reference_forward_and_grads(pattern, shape, dtype, causal, padded):
    _compare(pattern, shape, dtype, causal, padded)


@pytest.mark.slow
@pytest.mark.parametrize("pattern", ["fixed", "axial"])
@pytest.mark.parametrize("shape,dtype,causal,padded", [c for c in GRID if c not in FAST])
def test_fast_path_equals_reference_full_grid(pattern, shape, dtype, causal, padded):
    _compare(pattern, shape, dtype, causal, padded)


def _compare(pattern, shape, dtype, causal, padded):
    b, h, n, d, dv, s = shape
    fast, ref = PAIRS[pattern]
    inputs = _inputs(b, h, n, d, dv, dtype)
    mask = None
    if padded:
        mask = torch.rand(b, n, generator=torch.Generator().manual_seed(3)) > 0.3
        mask[:, 0] = True
    kw = dict(block_size=s, causal=causal, key_padding_mask=mask)
    o, g = _fwd_bwd(fast, inputs, **kw)
    o_r, g_r = _fwd_bwd(ref, inputs, **kw)
    torch.testing.assert_close(o, o_r, **TOL[dtype])
    for a, r in zip(g, g_r):
        torch.testing.assert_close(a, r, **TOL[dtype])


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 40), s=st.integers(1, 12), causal=st.booleans(), pattern=st.sampled_from(["fixed", "axial"]))
def test_fast_path_equals_reference_any_length(n, s, causal, pattern):
    fast, ref = PAIRS[pattern]
    q, k, v = (t.detach() for t in _inputs(1, 2, n, 4, 3, torch.float64, seed=n * 13 + s))
    torch.testing.assert_close(fast(q, k, v, block_size=s, causal=causal), ref(q, k, v, block_size=s, causal=causal),
                               atol=1e-11, rtol=1e-10)


@pytest.mark.parametrize("pattern", ["fixed", "axial"])
@pytest.mark.parametrize("causal", [True, False])
def test_gradcheck_float64(pattern, causal):
    fast, _ = PAIRS[pattern]
    inputs = _inputs(1, 1, 7, 2, 2, torch.float64)
    # autograd of standard ops (also compared with the reference's gradients above): the fast mode suffices
    assert torch.autograd.gradcheck(lambda q, k, v: fast(q, k, v, block_size=3, causal=causal), inputs,
                                    eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


@pytest.mark.parametrize("pattern", ["fixed", "axial"])
@pytest.mark.parametrize("n,s", [(16, 4), (17, 4), (30, 5), (9, 2)])
@pytest.mark.parametrize("causal", [True, False])
def test_full_attention_support_in_the_explicit_matrix(pattern, n, s, causal):
    """Every (i, j) with j <= i (causal) or every pair (bidirectional) gets non-zero probability."""
    _, ref = PAIRS[pattern]
    q, k, v = (t.detach() for t in _inputs(2, 2, n, 4, 4, torch.float64))
    _, probs = ref(q, k, v, block_size=s, causal=causal, return_probs=True)
    allowed = torch.ones(n, n, dtype=torch.bool).tril() if causal else torch.ones(n, n, dtype=torch.bool)
    assert (probs[..., allowed] > 1e-12).all(), "a pair the factorisation should cover has zero probability"
    assert (probs[..., ~allowed] == 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 2, n, dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("pattern", ["fixed", "axial"])
@pytest.mark.parametrize("causal", [True, False])
def test_full_attention_support_by_gradient_reachability(pattern, causal):
    """In the fast path, every output i depends on every value v_j it may see (j <= i when causal)."""
    fast, _ = PAIRS[pattern]
    n = 19
    q, k, v = (t.detach() for t in _inputs(1, 1, n, 4, 3, torch.float64))
    jac = torch.autograd.functional.jacobian(lambda vv: fast(q, k, vv, block_size=4, causal=causal), v)
    # jac (1, 1, n, 3, 1, 1, n, 3): d out[i, e] / d v[j, e] is the attention weight P[i, j]
    reach = jac[0, 0, :, 0, 0, 0, :, 0]
    allowed = torch.ones(n, n, dtype=torch.bool).tril() if causal else torch.ones(n, n, dtype=torch.bool)
    assert (reach[allowed] > 1e-12).all()
    assert (reach[~allowed] == 0).all()


@pytest.mark.parametrize("pattern", ["fixed", "axial"])
def test_the_direct_part_alone_is_not_full(pattern):
    """Control for the support tests: without the abstractions the pattern is a sparse local one."""
    _, ref = PAIRS[pattern]
    n, s = 16, 4
    q, k, v = (t.detach() for t in _inputs(1, 1, n, 4, 4, torch.float64))
    _, probs = ref(q, k, v, block_size=s, causal=True, return_probs=True)
    same_block = (torch.arange(n)[:, None] // s) == (torch.arange(n)[None, :] // s)
    outside = torch.ones(n, n, dtype=torch.bool).tril() & ~same_block
    # the mass outside the query's own block comes only through the abstractions and is substantial
    assert probs[0, 0][outside].sum() > 0.5


@pytest.mark.parametrize("pattern", ["fixed", "axial"])
@pytest.mark.parametrize("causal", [True, False])
def test_one_block_is_full_softmax_attention(pattern, causal):
    """With s >= N there are no regions: Combiner is exact softmax attention (research note check, 1e-6)."""
    fast, _ = PAIRS[pattern]
    q, k, v = (t.detach() for t in _inputs(2, 2, 13, 8, 5, torch.float64))
    torch.testing.assert_close(fast(q, k, v, block_size=13, causal=causal), attention_reference(q, k, v, causal=causal),
                               atol=1e-12, rtol=1e-12)


def test_fixed_region_probabilities_factorise():
    """Fixed: inside an earlier segment r, P[i, j] = p(r | i) q(j | r) with q(j | r) the same for every query i."""
    n, s = 20, 5
    q, k, v = (t.detach() for t in _inputs(1, 1, n, 4, 4, torch.float64))
    _, probs = combiner_fixed_reference(q, k, v, block_size=s, causal=True, return_probs=True)
    p = probs[0, 0]
    seg0 = p[s:, :s]  # queries of segments 1.. see segment 0 through its abstraction
    cond = seg0 / seg0.sum(-1, keepdim=True)
    torch.testing.assert_close(cond, cond[:1].expand_as(cond), atol=1e-12, rtol=1e-10)
    # and q(j | r) is softmax(q_hat . k_j / sqrt(d)) with the max-pooled query of segment 0
    q_hat = q[0, 0, :s].amax(0)
    expected = torch.softmax(k[0, 0, :s] @ q_hat * 4 ** -0.5, dim=0)
    torch.testing.assert_close(cond[0], expected, atol=1e-12, rtol=1e-10)


def test_axial_region_probabilities_follow_the_column():
    """Axial: row r reached from column c is distributed as the row attention of token (r, c)."""
    n, s = 16, 4
    q, k, v = (t.detach() for t in _inputs(1, 1, n, 4, 4, torch.float64))
    _, probs = combiner_axial_reference(q, k, v, block_size=s, causal=True, return_probs=True)
    p = probs[0, 0]
    for i in (5, 9, 14):
        c = i % s
        cond = p[i, :s] / p[i, :s].sum()
        expected = torch.softmax(k[0, 0, :s] @ q[0, 0, c] * 4 ** -0.5, dim=0)
        torch.testing.assert_close(cond, expected, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("pattern", ["fixed", "axial"])
def test_causal_perturbing_the_future(pattern):
    fast, _ = PAIRS[pattern]
    q, k, v = (t.detach() for t in _inputs(2, 2, 22, 4, 4, torch.float64))
    o = fast(q, k, v, block_size=5, causal=True)
    cut = 11
    q2, k2, v2 = (t.clone() for t in (q, k, v))
    for t in (q2, k2, v2):
        t[:, :, cut:] += 3 * torch.randn_like(t[:, :, cut:])
    o2 = fast(q2, k2, v2, block_size=5, causal=True)
    torch.testing.assert_close(o2[:, :, :cut], o[:, :, :cut], atol=1e-13, rtol=0)
    assert not torch.allclose(o2[:, :, cut:], o[:, :, cut:])


@pytest.mark.parametrize("pattern", ["fixed", "axial"])
@pytest.mark.parametrize("causal", [True, False])
def test_padded_tokens_do_not_leak(pattern, causal):
    fast, ref = PAIRS[pattern]
    q, k, v = (t.detach() for t in _inputs(2, 2, 14, 4, 4, torch.float64))
    mask = torch.ones(2, 14, dtype=torch.bool)
    mask[0, 9:] = False
    mask[1, 3] = False
    o = fast(q, k, v, block_size=4, causal=causal, key_padding_mask=mask)
    q2, k2, v2 = (t.clone() for t in (q, k, v))
    for t in (q2, k2, v2):
        t[~mask[:, None, :, None].expand_as(t)] = 7.0
    o2 = fast(q2, k2, v2, block_size=4, causal=causal, key_padding_mask=mask)
    real = mask[:, None, :, None].expand_as(o)
    torch.testing.assert_close(o2[real], o[real], atol=1e-13, rtol=0)
    _, probs = ref(q, k, v, block_size=4, causal=causal, key_padding_mask=mask, return_probs=True)
    assert (probs[..., ~mask[0]][0] == 0).all() and (probs[1, :, :, 3] == 0).all()


@pytest.mark.parametrize("pattern", ["fixed", "axial"])
def test_recording_gives_the_explicit_matrix(pattern):
    fast, ref = PAIRS[pattern]
    q, k, v = (t.detach() for t in _inputs(1, 2, 12, 4, 4, torch.float64))
    with record_attention() as rec:
        o = fast(q, k, v, block_size=4, causal=True)
    (probs,) = rec.maps["call0"]
    o_r, p_r = ref(q, k, v, block_size=4, causal=True, return_probs=True)
    torch.testing.assert_close(probs, p_r, atol=0, rtol=0)
    torch.testing.assert_close(o, fast(q, k, v, block_size=4, causal=True), atol=1e-12, rtol=1e-12)


def test_budget():
    assert combiner_budget(256, 16) == 32
    assert combiner_budget(100, 7) == 7 + 15


def test_bad_input_is_named():
    q, k, v = (t.detach() for t in _inputs(1, 1, 8, 4, 4, torch.float32))
    with pytest.raises(ValueError, match=r"block_size: expected a positive int"):
        combiner_fixed(q, k, v, block_size=0)
    with pytest.raises(ValueError, match=r"k: expected the shape of q"):
        combiner_axial(q, k[:, :, :5], v, block_size=2)
    with pytest.raises(TypeError, match=r"q, k, v: expected one dtype"):
        combiner_fixed(q, k.double(), v, block_size=2)
    with pytest.raises(ValueError, match=r"key_padding_mask: expected shape"):
        combiner_fixed(q, k, v, block_size=2, key_padding_mask=torch.ones(1, 7, dtype=torch.bool))
