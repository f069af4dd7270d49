"""attnlab.ops.neighborhood: tiled NA / DiNA (P26) against the dense masked reference and NATTEN.

Tolerances: fp64 1e-11 absolute (forward) / 1e-10 (gradients); fp32 2e-5 / 1e-4 (fused
SDPA tiles vs one explicit softmax: different summation orders, errors grow with the
window). The NATTEN peer comparison (forward only: its CPU path is eager FlexAttention)
uses 1e-5 in fp32.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.ops.neighborhood import (
    AxisWindow,
    neighborhood_attention,
    neighborhood_attention_reference,
    neighborhood_mask,
    neighborhood_rpb_index,
    plan_axis,
)
from attnlab.ops.recording import record_attention

TOL = {torch.float64: (1e-11, 1e-10), torch.float32: (2e-5, 1e-4)}


pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(b, h, n, d, dtype, *, seed=0, dv=None):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, n, d, generator=g, dtype=dtype)
    k = torch.randn(b, h, n, d, generator=g, dtype=dtype)
    v = torch.randn(b, h, n, dv or d, generator=g, dtype=dtype)
    return q, k, v


def _run(fn, q, k, v, rpb, cot=None, **kw):
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)] + ([rpb.clone().requires_grad_(True)] if rpb is not None else [])
    out = fn(*leaves[:3], rpb=leaves[3] if rpb is not None else None, **kw)
    cot = torch.randn_like(out) if cot is None else cot
    return out, torch.autograd.grad(out, leaves, cot), cot


def _compare(q, k, v, kernel, *, dtype, rpb=None, kpm=None, tile=None, **kw):
    """Both fast backends vs the reference: outputs and gradients of q, k, v (and rpb), one random cotangent."""
    kw.update(key_padding_mask=kpm)
    ref, ref_grads, cot = _run(lambda *t, **a: neighborhood_attention_reference(*t, kernel, **a), q, k, v, rpb, **kw)
    fwd, bwd = TOL[dtype]
    for backend in ("tiled", "dense"):
        run_kw = dict(kw, backend=backend, tile=tile if backend == "tiled" else None)
        out, grads, _ = _run(lambda *t, **a: neighborhood_attention(*t, kernel, **a), q, k, v, rpb, cot, **run_kw)
        torch.testing.assert_close(out, ref, atol=fwd, rtol=fwd, msg=lambda m, b=backend: f"{b} forward: {m}")
        for name, a, r in zip(["q", "k", "v", "rpb"], grads, ref_grads):
            torch.testing.assert_close(a, r, atol=bwd, rtol=bwd, msg=lambda m, name=name, b=backend: f"{b} grad {name}: {m}")


# ---- the definition, checked by hand -----------------------------------------------


def test_window_is_clamped_at_the_borders_not_zero_padded():
    m = neighborhood_mask((7,), 3)
    assert m[0].nonzero().flatten().tolist() == [0, 1, 2]
    assert m[3].nonzero().flatten().tolist() == [2, 3, 4]
    assert m[6].nonzero().flatten().tolist() == [4, 5, 6]
    assert (m.sum(1) == 3).all()


def test_dilation_runs_na_inside_the_subsequences():
    # L=7, d=2: subsequences {0,2,4,6} (length 4) and {1,3,5} (length 3)
    m = neighborhood_mask((7,), 3, dilation=2)
    assert m[0].nonzero().flatten().tolist() == [0, 2, 4]
    assert m[6].nonzero().flatten().tolist() == [2, 4, 6]
    assert m[1].nonzero().flatten().tolist() == [1, 3, 5]
    assert m[5].nonzero().flatten().tolist() == [1, 3, 5]
    assert (m.sum(1) == 3).all()


def test_causal_window_is_the_last_k_positions():
    m = neighborhood_mask((6,), 3, causal=True)
    assert m[0].nonzero().flatten().tolist() == [0]
    assert m[1].nonzero().flatten().tolist() == [0, 1]
    assert m[5].nonzero().flatten().tolist() == [3, 4, 5]


def test_2d_neighbourhood_is_the_product_of_axis_windows():
    m = neighborhood_mask((4, 5), 3).reshape(4, 5, 4, 5)
    # corner (0, 0): rows 0..2 x cols 0..2
    assert m[0, 0].nonzero().tolist() == [[r, c] for r in range(3) for c in range(3)]
    assert (m.reshape(20, 20).sum(1) == 9).all()


def test_rpb_index_is_key_minus_query_plus_k_minus_1():
    idx = neighborhood_rpb_index((7,), 3)
    m = neighborhood_mask((7,), 3)
    # query 0 sees keys 0,1,2 -> indices 2,3,4 of the (2k-1)=5 table; query 6 sees 4,5,6 -> 0,1,2
    assert idx[0][m[0]].tolist() == [2, 3, 4]
    assert idx[6][m[6]].tolist() == [0, 1, 2]
    assert idx[3][m[3]].tolist() == [1, 2, 3]
    # dilated: in subsequence units
    idx = neighborhood_rpb_index((9,), 3, dilation=3)
    m = neighborhood_mask((9,), 3, dilation=3)
    assert idx[0][m[0]].tolist() == [2, 3, 4]


def test_plans_cover_every_query_once_and_windows_fit():
    for L, w, t in [(37, AxisWindow("na", kernel=5), 4), (37, AxisWindow("na", kernel=7, dilation=4), 3),
                    (50, AxisWindow("sw", left=9, right=0), 8), (16, AxisWindow("na", kernel=15), 64)]:
        plan = plan_axis(L, w, t)
        covered = torch.zeros(w.dilation, plan.sub_len, dtype=torch.long)
        for s in plan.segments:
            lo, hi = s.q0 + s.keep, s.q0 + s.tiles * s.tile
            covered[s.g0 : s.g1, lo:hi] += 1
            assert hi == s.length or s.keep == 0
        for r in range(w.dilation):
            lr = len(range(r, L, w.dilation))
            assert covered[r, :lr].eq(1).all() and covered[r, lr:].eq(0).all()


# ---- fast path vs reference ------------------------------------------------------------


CASES_1D = [
    # (n, kernel, dilation, causal, tile)
    (1, 1, 1, False, None),
    (9, 3, 1, False, None),
    (9, 3, 1, False, 2),  # tile below k // 2 + 1 is raised to it
    (37, 5, 1, False, 4),
    (37, 7, 4, False, 3),
    (37, 7, 4, True, 3),
    (40, 9, 2, False, 8),
    (33, 33, 1, False, None),
    (70, 21, 3, True, None),
    (129, 17, 2, False, 16),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES_1D)
def test_1d_matches_reference(dtype, case):
    n, kern, dil, causal, tile = case
    q, k, v = _inputs(2, 2, n, 8, dtype)
    _compare(q, k, v, kern, dtype=dtype, dilation=dil, causal=causal, tile=tile)


CASES_ND = [
    # (grid, kernel, dilation, causal, tile)
    ((5, 6), 3, 1, False, None),
    ((13, 11), 3, (2, 3), False, (3, 4)),
    ((13, 11), (3, 5), (4, 2), (True, False), (2, 3)),
    ((12, 14), 5, 2, True, None),
    ((9, 9), 9, 1, False, None),
    ((6, 7, 5), 3, (2, 1, 1), False, None),
    ((5, 6, 7), (3, 3, 5), 1, (True, False, False), (2, 3, 3)),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES_ND)
def test_grid_matches_reference(dtype, case):
    grid, kern, dil, causal, tile = case
    q, k, v = _inputs(2, 2, math.prod(grid), 8, dtype)
    _compare(q, k, v, kern, dtype=dtype, grid=grid, dilation=dil, causal=causal, tile=tile)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("grid,kern,dil,causal", [((23,), 5, 2, False), ((9, 10), 3, (1, 3), False), ((8, 9), (3, 5), 1, True)])
def test_relative_position_bias_matches_reference(dtype, grid, kern, dil, causal):
    q, k, v = _inputs(2, 3, math.prod(grid), 8, dtype)
    ks = (kern,) * len(grid) if isinstance(kern, int) else kern
    rpb = torch.randn(3, *[2 * x - 1 for x in ks], dtype=dtype)
    _compare(q, k, v, kern, dtype=dtype, grid=grid, dilation=dil, causal=causal, rpb=rpb, tile=3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("grid,kern,dil,with_rpb", [((31,), 5, 2, False), ((7, 9), 3, (2, 1), False), ((7, 9), 3, 1, True)])
def test_key_padding_mask_matches_reference(dtype, grid, kern, dil, with_rpb):
    n = math.prod(grid)
    q, k, v = _inputs(2, 2, n, 8, dtype)
    kpm = torch.rand(2, n, generator=torch.Generator().manual_seed(3)) > 0.4
    kpm[1, :] = True
    kpm[0, : n // 2] = False  # whole windows padded: those queries get zeros
    rpb = torch.randn(2, *[2 * kern - 1] * len(grid), dtype=dtype) if with_rpb else None
    _compare(q, k, v, kern, dtype=dtype, grid=grid, dilation=dil, kpm=kpm, rpb=rpb, tile=3)


def test_value_head_dim_may_differ_and_scale_is_used():
    q, k, v = _inputs(1, 2, 20, 8, torch.float64, dv=5)
    out = neighborhood_attention(q, k, v, 5, scale=0.3)
    ref = neighborhood_attention_reference(q, k, v, 5, scale=0.3)
    assert out.shape == (1, 2, 20, 5)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 60), kern=st.sampled_from([1, 3, 5, 7, 11]), dil=st.integers(1, 5), causal=st.booleans(),
    tile=st.one_of(st.none(), st.integers(1, 20)), seed=st.integers(0, 10_000),
)
def test_random_1d_configurations(n, kern, dil, causal, tile, seed):
    if kern * dil > n:
        kern, dil = 1, 1
    q, k, v = _inputs(1, 2, n, 4, torch.float64, seed=seed)
    _compare(q, k, v, kern, dtype=torch.float64, dilation=dil, causal=causal, tile=tile)


@settings(max_examples=20, deadline=None)
@given(
    h=st.integers(2, 12), w=st.integers(2, 12), kern=st.sampled_from([1, 3, 5]), dh=st.integers(1, 3), dw=st.integers(1, 3),
    causal=st.booleans(), tile=st.one_of(st.none(), st.integers(1, 6)), seed=st.integers(0, 10_000),
)
def test_random_2d_configurations(h, w, kern, dh, dw, causal, tile, seed):
    kh, kw = min(kern, h - 1 + h % 2), min(kern, w - 1 + w % 2)  # odd and <= the axis
    dh, dw = max(1, min(dh, h // kh)), max(1, min(dw, w // kw))
    q, k, v = _inputs(1, 1, h * w, 4, torch.float64, seed=seed)
    _compare(q, k, v, (kh, kw), dtype=torch.float64, grid=(h, w), dilation=(dh, dw), causal=causal, tile=tile)


# ---- gradcheck, causality, recording, errors -------------------------------------------


@pytest.mark.parametrize("grid,kern,dil,causal", [((11,), 3, 2, False), ((11,), 5, 1, True), ((4, 6), 3, (1, 2), False)])
def test_gradcheck_float64(grid, kern, dil, causal):
    q, k, v = (t.requires_grad_(True) for t in _inputs(1, 2, math.prod(grid), 3, torch.float64))
    ks = (kern,) * len(grid)
    rpb = torch.randn(2, *[2 * x - 1 for x in ks], dtype=torch.float64, requires_grad=True)
    g = grid if len(grid) > 1 else None
    for backend, tile in (("tiled", 2), ("dense", None)):
        fn = lambda *t, b=backend, tl=tile: neighborhood_attention(  # noqa: E731
            *t[:3], kern, grid=g, dilation=dil, causal=causal, rpb=t[3], tile=tl, backend=b)
        assert torch.autograd.gradcheck(fn, (q, k, v, rpb), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("dil", [1, 3])
def test_causal_1d_ignores_the_future(dil):
    q, k, v = _inputs(2, 2, 41, 8, torch.float64)
    out = neighborhood_attention(q, k, v, 7, dilation=dil, causal=True, tile=4)
    cut = 23
    k2, v2 = k.clone(), v.clone()
    k2[:, :, cut:] += 3 * torch.randn_like(k2[:, :, cut:])
    v2[:, :, cut:] += 3 * torch.randn_like(v2[:, :, cut:])
    out2 = neighborhood_attention(q, k2, v2, 7, dilation=dil, causal=True, tile=4)
    torch.testing.assert_close(out2[:, :, :cut], out[:, :, :cut], atol=0, rtol=0)
    assert not torch.allclose(out2[:, :, cut:], out[:, :, cut:])


def test_recording_gives_the_probabilities():
    q, k, v = _inputs(1, 2, 12, 4, torch.float64)
    with record_attention() as rec:
        out = neighborhood_attention(q, k, v, 3, grid=(3, 4))
    probs = rec.maps["call0"][0]
    assert probs.shape == (1, 2, 12, 12)
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 2, 12, dtype=torch.float64))
    assert ((probs > 0) <= neighborhood_mask((3, 4), 3)).all()
    torch.testing.assert_close(out, neighborhood_attention(q, k, v, 3, grid=(3, 4)), atol=1e-12, rtol=1e-12)


def test_bad_arguments_are_named():
    q, k, v = _inputs(1, 2, 12, 4, torch.float32)
    with pytest.raises(ValueError, match=r"kernel_size: expected odd positive sizes"):
        neighborhood_attention(q, k, v, 4)
    with pytest.raises(ValueError, match=r"kernel_size: expected kernel_size \* dilation <= the grid size"):
        neighborhood_attention(q, k, v, 5, dilation=3)
    with pytest.raises(ValueError, match=r"grid: expected a grid whose product equals"):
        neighborhood_attention(q, k, v, 3, grid=(3, 5))
    with pytest.raises(TypeError, match=r"kernel_size: expected a int or a tuple of 2 ints"):
        neighborhood_attention(q, k, v, (3, 3, 3), grid=(3, 4))
    with pytest.raises(ValueError, match=r"rpb: expected shape \(H, 2k-1 per axis\) = \(2, 5, 5\)"):
        neighborhood_attention(q, k, v, 3, grid=(3, 4), rpb=torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"q: expected a tensor of rank 4"):
        neighborhood_attention(q[0], k, v, 3)
    with pytest.raises(TypeError, match=r"key_padding_mask: expected a bool tensor"):
        neighborhood_attention(q, k, v, 3, key_padding_mask=torch.ones(1, 12))
    with pytest.raises(ValueError, match=r"backend: expected one of \['auto', 'tiled', 'dense'\]"):
        neighborhood_attention(q, k, v, 3, backend="flex")
    with pytest.raises(ValueError, match=r"tile: expected None with backend='dense'"):
        neighborhood_attention(q, k, v, 3, backend="dense", tile=4)


def test_auto_backend_picks_dense_for_small_inputs_and_tiles_for_large():
    from attnlab.ops.neighborhood import DENSE_MAX_N, use_dense

    assert use_dense("auto", DENSE_MAX_N, None) and not use_dense("auto", DENSE_MAX_N + 1, None)
    assert not use_dense("auto", 10, 4) and use_dense("dense", 10**6, None) and not use_dense("tiled", 10, None)


# ---- NATTEN (forward only on CPU) -------------------------------------------------------


def _natten():
    pytest.importorskip("natten")
    import natten

    return natten


# NATTEN's CPU path is eager FlexAttention, which warns about itself; those warnings are NATTEN's, not ours
_IGNORE_NATTEN_LSE = pytest.mark.filterwarnings("ignore:return_lse is deprecated:FutureWarning")
_IGNORE_NATTEN_EAGER_FLEX = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile:UserWarning")


@pytest.mark.peer
@_IGNORE_NATTEN_LSE
@_IGNORE_NATTEN_EAGER_FLEX
@pytest.mark.parametrize(
    "grid,kern,dil,causal",
    [((37,), 5, 1, False), ((37,), 7, 4, False), ((40,), 9, 2, True), ((13, 11), 3, (2, 3), False),
     ((16, 16), 7, 2, False), ((12, 14), (3, 5), (4, 2), (True, False)), ((6, 7, 5), 3, (2, 1, 1), False)],
)
def test_forward_agrees_with_natten(grid, kern, dil, causal):
    natten = _natten()
    b, h, d = 2, 2, 32  # NATTEN's CPU (flex) backend wants head_dim >= 32
    q, k, v = _inputs(b, h, math.prod(grid), d, torch.float32)

    def heads_last(x):
        return x.reshape(b, h, *grid, d).movedim(1, -2).contiguous()

    fn = {1: natten.na1d, 2: natten.na2d, 3: natten.na3d}[len(grid)]
    with torch.no_grad():
        theirs = fn(heads_last(q), heads_last(k), heads_last(v), kernel_size=kern, dilation=dil, is_causal=causal)
    theirs = theirs.movedim(-2, 1).reshape(b, h, -1, d)
    ours = neighborhood_attention(q, k, v, kern, grid=grid if len(grid) > 1 else None, dilation=dil, causal=causal)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.peer
@_IGNORE_NATTEN_LSE
@_IGNORE_NATTEN_EAGER_FLEX
@pytest.mark.slow  # NATTEN's eager Flex forms the 4096 x 4096 scores: ~10-40 s here
def test_forward_agrees_with_natten_at_the_benchmark_size():
    """The 2D target case: 64 x 64 grid, kernel 7, H=4, D=32 (and DiNA with dilation 4)."""
    natten = _natten()
    q, k, v = _inputs(1, 4, 64 * 64, 32, torch.float32, seed=7)

    def heads_last(x):
        return x.reshape(1, 4, 64, 64, 32).movedim(1, -2).contiguous()

    for dil in (1, 4):
        with torch.no_grad():
            theirs = natten.na2d(heads_last(q), heads_last(k), heads_last(v), kernel_size=7, dilation=dil)
        theirs = theirs.movedim(-2, 1).reshape(1, 4, -1, 32)
        ours = neighborhood_attention(q, k, v, 7, grid=(64, 64), dilation=dil)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
