"""Registry-wide contract tests: every registered mixer gets these for free.

Each mixer is exercised at its registry ``test_kwargs`` / ``test_grid`` size:
gradcheck in float64, causality by perturbing future tokens, key-padding
invariance, batch independence, state-dict round trip, gradients reaching every
trainable parameter, and a clear error for every bad input of the contract.
"""
from __future__ import annotations

import math

import pytest
import torch

import attnlab.mixers as mixers

INFOS = mixers.available()
NAMES = [i.name for i in INFOS]


def _build(info, dtype=torch.float64):
    torch.manual_seed(0)
    m = mixers.create(info.name, info.test_dim, **info.test_kwargs).to(dtype)
    return m.eval()


def _shape(info):
    if info.test_grid is not None:
        return math.prod(info.test_grid), tuple(info.test_grid)
    return info.test_len, None


def _modes(info):
    caps = info.capabilities
    return ([False] if caps.bidirectional else []) + ([True] if caps.causal else [])


def _input(info, batch=2, dtype=torch.float64, requires_grad=False):
    n, grid = _shape(info)
    x = torch.randn(batch, n, info.test_dim, dtype=dtype, requires_grad=requires_grad)
    return x, grid


@pytest.mark.parametrize("name", NAMES)
def test_declares_a_mode_and_a_summary(name):
    info = mixers.get_info(name)
    assert info.capabilities.causal or info.capabilities.bidirectional
    assert info.summary, f"{name}: the class needs a docstring"


@pytest.mark.parametrize("name", NAMES)
def test_output_shape_dtype_and_finite(name):
    info = mixers.get_info(name)
    for dtype in (torch.float32, torch.float64):
        m = _build(info, dtype)
        x, grid = _input(info, dtype=dtype)
        for causal in _modes(info):
            y = m(x, grid=grid, causal=causal)
            assert y.shape == x.shape and y.dtype == x.dtype
            assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_float64(name):
    info = mixers.get_info(name)
    m = _build(info)
    x, grid = _input(info, batch=1, requires_grad=True)
    for causal in _modes(info):
        assert torch.autograd.gradcheck(lambda t: m(t, grid=grid, causal=causal), (x,), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", [i.name for i in INFOS if i.capabilities.causal])
def test_causal_perturbing_future_changes_nothing_before(name):
    info = mixers.get_info(name)
    m = _build(info)
    x, grid = _input(info)
    n = x.shape[1]
    cut = n // 2
    y = m(x, grid=grid, causal=True)
    x2 = x.clone()
    x2[:, cut:] += torch.randn_like(x2[:, cut:]) * 3.0
    y2 = m(x2, grid=grid, causal=True)
    torch.testing.assert_close(y2[:, :cut], y[:, :cut], atol=1e-10, rtol=1e-10)
    assert not torch.allclose(y2[:, cut:], y[:, cut:]), "future tokens changed but their own outputs did not"


@pytest.mark.parametrize("name", [i.name for i in INFOS if i.capabilities.key_padding_mask])
def test_padded_keys_do_not_affect_real_tokens(name):
    info = mixers.get_info(name)
    m = _build(info)
    x, grid = _input(info)
    n = x.shape[1]
    mask = torch.ones(2, n, dtype=torch.bool)
    mask[0, n - 3 :] = False
    mask[1, n - 1] = False
    for causal in _modes(info):
        y = m(x, grid=grid, causal=causal, key_padding_mask=mask)
        x2 = x.clone()
        x2[~mask] = torch.randn_like(x2[~mask]) * 5.0
        y2 = m(x2, grid=grid, causal=causal, key_padding_mask=mask)
        torch.testing.assert_close(y2[mask], y[mask], atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_batch_elements_are_independent(name):
    info = mixers.get_info(name)
    m = _build(info)
    x, grid = _input(info, batch=3)
    for causal in _modes(info):
        y = m(x, grid=grid, causal=causal)
        x2 = x.clone()
        x2[1:] = torch.randn_like(x2[1:])
        y2 = m(x2, grid=grid, causal=causal)
        torch.testing.assert_close(y2[0], y[0], atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    info = mixers.get_info(name)
    m = _build(info)
    torch.manual_seed(123)
    m2 = mixers.create(info.name, info.test_dim, **info.test_kwargs).to(torch.float64).eval()
    m2.load_state_dict(m.state_dict())
    x, grid = _input(info)
    causal = _modes(info)[0]
    torch.testing.assert_close(m2(x, grid=grid, causal=causal), m(x, grid=grid, causal=causal), atol=0, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_reaches_every_trainable_parameter(name):
    info = mixers.get_info(name)
    m = _build(info).train()
    x, grid = _input(info, requires_grad=True)
    y = m(x, grid=grid, causal=_modes(info)[-1])
    (y * torch.randn_like(y)).sum().backward()
    for pname, p in m.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name}: parameter {pname} got no gradient"


# ---- bad input -------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_gets_a_clear_error(name):
    info = mixers.get_info(name)
    m = _build(info, torch.float32)
    n, grid = _shape(info)
    c = info.test_dim
    x = torch.randn(2, n, c)
    with pytest.raises(ValueError, match=r"x: expected a tensor of rank 3"):
        m(x[0], grid=grid)
    with pytest.raises(ValueError, match=r"x: expected channel dim C="):
        m(torch.randn(2, n, c + 1), grid=grid)
    with pytest.raises(TypeError, match=r"x: expected a floating-point tensor"):
        m(torch.ones(2, n, c, dtype=torch.long), grid=grid)
    with pytest.raises(TypeError, match=r"x: expected a torch.Tensor"):
        m(x.tolist(), grid=grid)
    with pytest.raises(TypeError, match=r"causal: expected a bool"):
        m(x, grid=grid, causal="yes")
    caps = info.capabilities
    if not caps.causal:
        with pytest.raises(ValueError, match=r"causal: expected False"):
            m(x, grid=grid, causal=True)
    if not caps.bidirectional:
        with pytest.raises(ValueError, match=r"causal: expected True"):
            m(x, grid=grid, causal=False)
    causal = _modes(info)[0]
    with pytest.raises(ValueError, match=r"grid: expected a grid whose product equals"):
        m(x, grid=(n + 1,) if 1 in caps.grid_dims else (n + 1, 1, 1)[: caps.grid_dims[0]], causal=causal)
    if caps.grid == "required":
        with pytest.raises(ValueError, match=r"grid: expected a spatial shape"):
            m(x, causal=causal)
    mask = torch.ones(2, n, dtype=torch.bool)
    if caps.key_padding_mask:
        with pytest.raises(TypeError, match=r"key_padding_mask: expected a bool tensor"):
            m(x, grid=grid, causal=causal, key_padding_mask=mask.float())
        with pytest.raises(ValueError, match=r"key_padding_mask: expected shape \(B, N\)"):
            m(x, grid=grid, causal=causal, key_padding_mask=mask[:, :-1])
    else:
        with pytest.raises(ValueError, match=r"key_padding_mask: expected None"):
            m(x, grid=grid, causal=causal, key_padding_mask=mask)
