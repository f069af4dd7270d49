"""Selective scan (Mamba S6, P23): the chunked path and the hand-written token loop vs the autograd reference loop,
decoding step, LTI special case.

Tolerances: fp64 1e-10 (abs and rel), fp32 atol 2e-5 / rtol 1e-4 (outputs, final state and the
gradients of every input, incl. the initial state).
"""
from __future__ import annotations

import pytest
import torch

from attnlab.ops import selective_scan as selective_scan_mod
from attnlab.ops.fft_conv import fft_long_conv
from attnlab.ops.selective_scan import selective_scan, selective_scan_reference, selective_scan_step

TOL = {torch.float64: dict(atol=1e-10, rtol=1e-10), torch.float32: dict(atol=2e-5, rtol=1e-4)}


def _inputs(b, d, l, n, mode, dtype, groups=2, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*s):
        return torch.randn(*s, generator=g, dtype=dtype)

    bc = {"fixed": lambda: r(d, n), "var": lambda: r(b, n, l), "group": lambda: r(b, groups, n, l)}[mode]
    A = -(torch.rand(d, n, generator=g, dtype=dtype) * 3 + 0.1)
    return dict(u=r(b, d, l), delta=r(b, d, l), A=A, B=bc(), C=bc(), D=r(d), z=r(b, d, l), delta_bias=r(d),
                initial_state=r(b, d, n))


def _run(fn, ins, **kw):
    return fn(**ins, delta_softplus=True, return_last_state=True, **kw)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mode", ["fixed", "var", "group"])
@pytest.mark.parametrize("l,chunk", [(1, None), (7, 4), (37, None), (37, 8), (37, 1), (64, 16)])
def test_fast_equals_reference_forward_and_backward(dtype, mode, l, chunk):
    ins = {k: v.requires_grad_() for k, v in _inputs(2, 4, l, 3, mode, dtype).items()}
    o1, s1 = _run(selective_scan, ins, chunk_size=chunk)
    o2, s2 = _run(selective_scan_reference, ins)
    torch.testing.assert_close(o1, o2, **TOL[dtype])
    torch.testing.assert_close(s1, s2, **TOL[dtype])
    go, gs = torch.randn_like(o1), torch.randn_like(s1)
    g1 = torch.autograd.grad((o1 * go).sum() + (s1 * gs).sum(), list(ins.values()))
    g2 = torch.autograd.grad((o2 * go).sum() + (s2 * gs).sum(), list(ins.values()))
    for name, a, b in zip(ins, g1, g2):
        torch.testing.assert_close(a, b, **TOL[dtype], msg=lambda m: f"grad of {name}: {m}")


@pytest.mark.parametrize("method", ["chunked", "loop", "auto"])
def test_methods_agree_on_a_wide_block(method, monkeypatch):
    """B D N above the loop threshold: auto picks the token loop; every method gives the reference result."""
    ins = {k: v.requires_grad_() for k, v in _inputs(4, 512, 9, 16, "var", torch.float64).items()}
    assert 4 * 512 * 16 >= selective_scan_mod.LOOP_MIN_BLOCK
    calls = []
    real = selective_scan_mod._SelectiveScanLoopFn.apply
    monkeypatch.setattr(selective_scan_mod._SelectiveScanLoopFn, "apply", lambda *a: calls.append(1) or real(*a))
    o1, s1 = _run(selective_scan, ins, method=method)
    assert bool(calls) == (method != "chunked")
    monkeypatch.undo()
    o2, s2 = _run(selective_scan_reference, ins)
    torch.testing.assert_close(o1, o2, **TOL[torch.float64])
    g1 = torch.autograd.grad(o1.sum() + s1.sum(), list(ins.values()))
    g2 = torch.autograd.grad(o2.sum() + s2.sum(), list(ins.values()))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, **TOL[torch.float64])
    with pytest.raises(ValueError, match="method"):
        selective_scan(*list(ins.values())[:5], method="scan")


def test_auto_takes_the_chunked_path_when_the_states_would_not_fit(monkeypatch):
    ins = _inputs(4, 512, 9, 16, "var", torch.float64)
    calls = []
    real = selective_scan_mod._SelectiveScanLoopFn.apply
    monkeypatch.setattr(selective_scan_mod._SelectiveScanLoopFn, "apply", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(selective_scan_mod, "LOOP_MAX_STATES", 4 * 512 * 16 * 9 - 1)  # one element short
    _run(selective_scan, ins)
    assert not calls
    monkeypatch.setattr(selective_scan_mod, "LOOP_MAX_STATES", 4 * 512 * 16 * 9)
    _run(selective_scan, ins)
    assert calls == [1]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mode", ["fixed", "var", "group", "var B, group C"])
@pytest.mark.parametrize("l", [1, 2, 7, 37])
@pytest.mark.parametrize("with_state", [True, False])
def test_token_loop_equals_reference(dtype, mode, l, with_state):
    """The hand-written loop's outputs, final state and every gradient, for losses on both outputs, on the output
    alone and on the final state alone (its backward then gets None for the other)."""
    ins = _inputs(2, 4, l, 3, "group" if mode == "var B, group C" else mode, dtype)
    if mode == "var B, group C":
        ins["B"] = torch.randn(2, 3, l, dtype=dtype)
    if not with_state:
        del ins["initial_state"]
    ins = {k: v.requires_grad_() for k, v in ins.items()}
    o1, s1 = _run(selective_scan, ins, method="loop")
    o2, s2 = _run(selective_scan_reference, ins)
    torch.testing.assert_close(o1, o2, **TOL[dtype])
    torch.testing.assert_close(s1, s2, **TOL[dtype])
    go, gs = torch.randn_like(o1), torch.randn_like(s1)
    for part1, part2 in (((o1 * go).sum() + (s1 * gs).sum(), (o2 * go).sum() + (s2 * gs).sum()),
                         ((o1 * go).sum(), (o2 * go).sum()), ((s1 * gs).sum(), (s2 * gs).sum())):
        g1 = torch.autograd.grad(part1, list(ins.values()), retain_graph=True, allow_unused=True)
        g2 = torch.autograd.grad(part2, list(ins.values()), retain_graph=True, allow_unused=True)
        for name, a, b in zip(ins, g1, g2):
            a = torch.zeros_like(ins[name]) if a is None else a
            b = torch.zeros_like(ins[name]) if b is None else b
            torch.testing.assert_close(a, b, **TOL[dtype], msg=lambda m: f"grad of {name}: {m}")


def test_token_loop_gradcheck_fp64():
    ins = {k: v.requires_grad_() for k, v in _inputs(1, 4, 5, 2, "group", torch.float64).items()}
    names = list(ins)

    def f(*args):
        return _run(selective_scan, dict(zip(names, args)), method="loop")

    assert torch.autograd.gradcheck(f, tuple(ins.values()), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_without_optional_inputs_and_long_decay():
    """No D/z/bias/initial state; large delta*A (decays underflow to 0) stays finite and exact."""
    ins = _inputs(1, 3, 50, 4, "var", torch.float64)
    u, B, C = ins["u"], ins["B"], ins["C"]
    delta = (torch.rand(1, 3, 50, dtype=torch.float64) * 400).requires_grad_()
    A = ins["A"].requires_grad_()
    o1 = selective_scan(u, delta, A, B, C, chunk_size=8)
    o2 = selective_scan_reference(u, delta, A, B, C)
    torch.testing.assert_close(o1, o2, **TOL[torch.float64])
    g1 = torch.autograd.grad(o1.sum(), [delta, A])
    g2 = torch.autograd.grad(o2.sum(), [delta, A])
    for a, b in zip(g1, g2):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, **TOL[torch.float64])


def test_gradcheck_fp64():
    ins = {k: v.requires_grad_() for k, v in _inputs(1, 2, 6, 2, "var", torch.float64).items()}
    names = list(ins)

    def f(*args):
        return _run(selective_scan, dict(zip(names, args)), chunk_size=4)

    assert torch.autograd.gradcheck(f, tuple(ins.values()), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_step_decoding_equals_parallel_and_state_is_constant():
    ins = _inputs(2, 4, 11, 3, "group", torch.float64)
    o = _run(selective_scan, ins)[0]
    s = ins["initial_state"]
    outs = []
    for t in range(11):
        y, s2 = selective_scan_step(ins["u"][..., t], ins["delta"][..., t], ins["A"], ins["B"][..., t],
                                    ins["C"][..., t], s, D=ins["D"], z_t=ins["z"][..., t],
                                    delta_bias=ins["delta_bias"], delta_softplus=True)
        assert s2.shape == s.shape
        s = s2
        outs.append(y)
    torch.testing.assert_close(torch.stack(outs, -1), o, **TOL[torch.float64])


def test_split_sequence_with_carried_state_equals_whole():
    ins = _inputs(2, 4, 30, 3, "var", torch.float64)
    whole, last = _run(selective_scan, ins)
    cut = 13
    first = {k: (v[..., :cut] if k in ("u", "delta", "z", "B", "C") else v) for k, v in ins.items()}
    o1, s1 = _run(selective_scan, first)
    second = {k: (v[..., cut:] if k in ("u", "delta", "z", "B", "C") else v) for k, v in ins.items()}
    second["initial_state"] = s1
    o2, s2 = _run(selective_scan, second)
    torch.testing.assert_close(torch.cat([o1, o2], -1), whole, **TOL[torch.float64])
    torch.testing.assert_close(s2, last, **TOL[torch.float64])


def test_causal_perturbing_the_future():
    ins = _inputs(1, 3, 20, 2, "var", torch.float64)
    o = _run(selective_scan, ins)[0]
    ins2 = dict(ins)
    for k in ("u", "delta", "B", "C", "z"):
        t = ins[k].clone()
        t[..., 12:] += torch.randn_like(t[..., 12:])
        ins2[k] = t
    o2 = _run(selective_scan, ins2)[0]
    torch.testing.assert_close(o2[..., :12], o[..., :12], atol=0, rtol=0)
    assert (o2[..., 12:] - o[..., 12:]).abs().max() > 1e-3


def test_time_invariant_scan_is_a_convolution_with_the_ssm_kernel():
    """Constant delta and fixed B, C: y = K * u with K_l = sum_n C_n delta B_n exp(delta A_n l) (the S4D view)."""
    d, n, l = 3, 4, 25
    ins = _inputs(2, d, l, n, "fixed", torch.float64)
    dt = torch.rand(d, dtype=torch.float64) * 0.5 + 0.05
    delta = dt.view(1, d, 1).expand(2, d, l)
    y = selective_scan(ins["u"], delta, ins["A"], ins["B"], ins["C"])
    pos = torch.arange(l, dtype=torch.float64)
    k = torch.einsum("dn,dnl->dl", ins["C"] * ins["B"] * dt[:, None], torch.exp((dt[:, None] * ins["A"])[..., None] * pos))
    torch.testing.assert_close(y, fft_long_conv(ins["u"], k), **TOL[torch.float64])


def test_bad_input_is_named():
    ins = _inputs(2, 4, 5, 3, "var", torch.float32)
    with pytest.raises(ValueError, match="delta"):
        selective_scan(ins["u"], ins["delta"][..., :4], ins["A"], ins["B"], ins["C"])
    with pytest.raises(ValueError, match="B: expected"):
        selective_scan(ins["u"], ins["delta"], ins["A"], ins["B"][:, :2], ins["C"])
    with pytest.raises(ValueError, match="B: expected"):
        selective_scan(ins["u"], ins["delta"], ins["A"], torch.randn(2, 3, 3, 5), ins["C"])  # 3 groups, D=4
    with pytest.raises(TypeError, match="A: expected dtype"):
        selective_scan(ins["u"], ins["delta"], ins["A"].double(), ins["B"], ins["C"])
    with pytest.raises(ValueError, match="initial_state"):
        selective_scan(ins["u"], ins["delta"], ins["A"], ins["B"], ins["C"], initial_state=torch.zeros(2, 4, 2))
