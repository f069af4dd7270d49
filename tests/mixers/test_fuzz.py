"""Hypothesis drives every registered mixer with random shapes, masks, grids, modes and dtypes.

Each drawn call must give the reference's answer or a documented error:

- a documented error is a ValueError / TypeError in the contract's form ``"<arg>: expected <what>,
  received <what>"`` (e.g. a grid a mixer cannot take), raised alike in every dtype;
- otherwise the reference is the same mixer with the same weights in fp64: the call in fp32 must
  match it on the real tokens to 1e-4 (output and input gradient); in bf16 (module and input)
  and under CPU autocast the output must be within twice the registry's ``bf16_tol`` (fuzzed
  lengths are smaller than the test size, where one rounding weighs more) except for the
  top-k mixers in ``DISCONTINUOUS``, and output and gradient must be finite (bf16 gradients are
  not compared pointwise here: max-pooling, ReLU and top-k make them jump where rounding flips a
  near-tie; the contract tests compare them at the test size); every output must be finite, and
  the real tokens must not see what the padded positions hold (NaN there);
- trailing padding is truncation: a sequence padded at the end gives its real tokens the
  outputs of the unpadded sequence, for every mixer without geometry except those listed in
  ``WINDOWS_SEE_PADDING`` (with the reason).

Masks include leading padding, padding in the middle and fully padded sequences. Examples are
derandomised (the same draws on every run) so a failure is reproducible.
"""
from __future__ import annotations

import copy
import math
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import attnlab.mixers as mixers

NAMES = [i.name for i in mixers.available()]
DOCUMENTED = re.compile(r"^\S[^\n]*: expected .+, received .+", re.S)
TOL_FP32 = 1e-4
#: mixers whose real tokens may legitimately see *where* padding is (never what it holds): NA's windows
#: are clamped inside the sequence (NATTEN's semantics), so near the end a padded key takes a window
#: slot that the truncated sequence would give to an earlier real key.
WINDOWS_SEE_PADDING = {"neighborhood": "NA windows are clamped, padded keys take slots near the end"}
#: mixers whose output jumps where a top-k choice flips: bf16 rounding moves a near-tie, so in bf16 they are
#: held to finite outputs here (SEA's bf16 guarantee is pinned in tests/mixers/test_sea.py)
DISCONTINUOUS = {"sea": "top-k bins per query", "bilevel_routing": "top-k regions per region"}


def _grid(data, info) -> tuple[int, tuple[int, ...] | None]:
    caps = info.capabilities
    if caps.grid == "none" or (caps.grid == "optional" and data.draw(st.booleans(), label="no grid")):
        return data.draw(st.integers(1, 20), label="N"), None
    dims = data.draw(st.sampled_from(caps.grid_dims), label="grid dims")
    grid = tuple(data.draw(st.lists(st.integers(1, 6), min_size=dims, max_size=dims), label="grid"))
    return math.prod(grid), grid


def _mask(data, info, b: int, n: int) -> torch.Tensor | None:
    if not info.capabilities.key_padding_mask:
        return None
    kind = data.draw(st.sampled_from(["none", "trailing", "leading", "random", "empty row"]), label="mask")
    if kind == "none":
        return None
    mask = torch.ones(b, n, dtype=torch.bool)
    for i in range(b):
        cut = data.draw(st.integers(0, n - 1), label="pads")
        if kind == "trailing":
            mask[i, n - cut:] = False if cut else True
        elif kind == "leading":
            mask[i, :cut] = False
        elif kind == "random":
            mask[i] = torch.tensor(data.draw(st.lists(st.booleans(), min_size=n, max_size=n), label="row"))
    if kind == "empty row":
        mask[data.draw(st.integers(0, b - 1), label="empty")] = False
    return mask


def _call(m, x, grid, causal, mask, upstream, autocast=False):
    x = x.detach().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = m(x, grid=grid, causal=causal, key_padding_mask=mask)
    (gx,) = torch.autograd.grad(y, x, upstream.to(y.dtype))
    return y, gx


def _rel(a, b, real) -> float:
    a, b = a.double()[real], b.double()[real]
    scale = b.norm()
    return 0.0 if scale == 0 and a.norm() == 0 else ((a - b).norm() / scale).item()


def _fuzz(examples: int):
    return settings(max_examples=examples, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("name", NAMES)
@_fuzz(8)
@given(data=st.data())
def test_every_mixer_gives_the_reference_answer_or_a_documented_error(name, data):
    _fuzz_one(name, data)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
@_fuzz(80)
@given(data=st.data())
def test_every_mixer_gives_the_reference_answer_or_a_documented_error_long(name, data):
    _fuzz_one(name, data)


def _fuzz_one(name, data):
    info = mixers.get_info(name)
    caps = info.capabilities
    causal = data.draw(st.sampled_from(([False] if caps.bidirectional else []) + ([True] if caps.causal else [])),
                       label="causal")
    b = data.draw(st.integers(1, 3), label="B")
    n, grid = _grid(data, info)
    mask = _mask(data, info, b, n)
    torch.manual_seed(data.draw(st.integers(0, 2**16), label="seed"))
    ref = mixers.create(name, info.test_dim, **info.test_kwargs).double().eval()
    x = torch.randn(b, n, info.test_dim, dtype=torch.float64)
    real = torch.ones(b, n, dtype=torch.bool) if mask is None else mask
    up = torch.randn_like(x) * real[..., None]  # the loss reads real tokens only
    try:
        y64, g64 = _call(ref, x, grid, causal, mask, up)
    except (ValueError, TypeError) as e:
        assert DOCUMENTED.match(str(e)), f"{name}: undocumented error {type(e).__name__}: {e}"
        with pytest.raises(type(e)):  # the same refusal in a low precision
            copy.deepcopy(ref).to(torch.bfloat16)(x.bfloat16(), grid=grid, causal=causal, key_padding_mask=mask)
        return
    assert torch.isfinite(y64).all() and torch.isfinite(g64).all(), f"{name}: non-finite fp64 result"
    if mask is not None and not mask.all():
        x_nan = x.masked_fill(~mask[..., None], math.nan)
        y_nan, g_nan = _call(ref, x_nan, grid, causal, mask, up)
        torch.testing.assert_close(y_nan[real], y64[real], atol=1e-10, rtol=1e-10)
        assert torch.isfinite(y_nan).all() and torch.isfinite(g_nan).all()
        _check_truncation(name, info, ref, x, grid, causal, mask, y64)
    tol_y = None if name in DISCONTINUOUS else 2 * info.bf16_tol[0]
    cases = [("fp32", torch.float32, False, TOL_FP32, TOL_FP32), ("bf16", torch.bfloat16, False, tol_y, None),
             ("autocast", torch.float32, True, tol_y, None)]
    for label, dtype, autocast, ty, tg in cases:
        m = copy.deepcopy(ref).to(dtype)
        y, g = _call(m, x.to(dtype), grid, causal, mask, up, autocast=autocast)
        assert y.dtype == dtype and torch.isfinite(y).all() and torch.isfinite(g).all(), f"{name} {label}"
        if ty is not None:
            assert _rel(y, y64, real) <= ty, f"{name} {label}: output off by {_rel(y, y64, real):.2e} > {ty}"
        if tg is not None:
            assert _rel(g, g64, real) <= tg, f"{name} {label}: input grad off by {_rel(g, g64, real):.2e} > {tg}"


def _check_truncation(name, info, m, x, grid, causal, mask, y):
    """A sequence padded only at its end gives its real tokens the unpadded sequence's outputs."""
    if grid is not None or name in WINDOWS_SEE_PADDING:
        return
    for i in range(x.shape[0]):
        length = int(mask[i].sum())
        if length == 0 or not mask[i, :length].all():
            continue  # not trailing padding
        alone = m(x[i:i + 1, :length], causal=causal)
        torch.testing.assert_close(y[i:i + 1, :length], alone, atol=1e-10, rtol=1e-10,
                                   msg=lambda s: f"{name}: trailing padding is not truncation: {s}")
