"""Delta rule (P12): chunkwise WY form vs the token recurrence, decoding step, fla's torch reference."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnlab.utils.peers import load_fla_delta_rule_naive
from attnlab.ops.delta_rule import unit_lower_inverse, delta_rule_chunkwise, delta_rule_recurrent, delta_rule_step

TOL = {torch.float32: dict(atol=2e-5, rtol=1e-5), torch.float64: dict(atol=1e-10, rtol=1e-10)}


def _inputs(b, h, n, dk, dv, dtype, seed=0, state=False):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, n, dk, generator=g, dtype=dtype)
    k = F.normalize(torch.randn(b, h, n, dk, generator=g, dtype=dtype), dim=-1)
    v = torch.randn(b, h, n, dv, generator=g, dtype=dtype)
    beta = torch.rand(b, h, n, generator=g, dtype=dtype)
    out = [q, k, v, beta]
    if state:
        out.append(torch.randn(b, h, dk, dv, generator=g, dtype=dtype))
    return [t.requires_grad_() for t in out]


def _fwd_bwd(fn, inputs, **kw):
    for t in inputs:
        t.grad = None
    args = inputs[:4]
    if len(inputs) == 5:
        kw["initial_state"] = inputs[4]
    o, s = fn(*args, **kw)
    g = torch.Generator().manual_seed(1)
    loss = (o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() + (s * torch.randn(s.shape, generator=g, dtype=s.dtype)).sum()
    loss.backward()
    return o.detach(), s.detach(), [t.grad.clone() for t in inputs]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "shape",  # b, h, n, dk, dv, chunk
    [(1, 1, 1, 4, 4, 8), (2, 3, 17, 8, 5, 4), (1, 2, 64, 16, 16, 16), (2, 2, 45, 8, 8, 7), (1, 1, 33, 16, 8, 64)],
)
@pytest.mark.parametrize("with_state", [False, True])
def test_chunkwise_equals_recurrence_forward_and_gradients(dtype, shape, with_state):
    b, h, n, dk, dv, c = shape
    inputs = _inputs(b, h, n, dk, dv, dtype, state=with_state)
    o, s, g = _fwd_bwd(delta_rule_chunkwise, inputs, chunk_size=c)
    o_r, s_r, g_r = _fwd_bwd(delta_rule_recurrent, inputs)
    torch.testing.assert_close(o, o_r, **TOL[dtype])
    torch.testing.assert_close(s, s_r, **TOL[dtype])
    for a, r in zip(g, g_r):
        torch.testing.assert_close(a, r, **TOL[dtype])


def test_recurrence_matches_the_definition():
    """S_t = (I - beta k k^T) S_{t-1} + beta k v^T written with explicit matrices."""
    q, k, v, beta = (t.detach() for t in _inputs(1, 1, 6, 3, 2, torch.float64))
    s = torch.zeros(3, 2, dtype=torch.float64)
    outs = []
    for t in range(6):
        kt = k[0, 0, t][:, None]
        s = (torch.eye(3, dtype=torch.float64) - beta[0, 0, t] * kt @ kt.T) @ s + beta[0, 0, t] * kt @ v[0, 0, t][None]
        outs.append(s.T @ q[0, 0, t] / 3**0.5)
    o, s_final = delta_rule_recurrent(q, k, v, beta)
    torch.testing.assert_close(o[0, 0], torch.stack(outs), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(s_final[0, 0], s, atol=1e-12, rtol=1e-12)


def test_gradcheck_float64():
    inputs = _inputs(1, 2, 7, 3, 2, torch.float64, state=True)
    fn = lambda q, k, v, b, s0: delta_rule_chunkwise(q, k, v, b, chunk_size=3, initial_state=s0)  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs)


def test_gradcheck_float64_block_doubling_chunk():
    """C = 32 > leaf 16: the block-doubling part of the triangular inverse and its use in the backward."""
    inputs = _inputs(1, 1, 37, 3, 2, torch.float64, state=True)
    fn = lambda q, k, v, b, s0: delta_rule_chunkwise(q, k, v, b, chunk_size=32, initial_state=s0)  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("c", [1, 2, 5, 16, 17, 48, 64, 100])
def test_unit_lower_inverse_equals_triangular_solve(c):
    g = torch.Generator().manual_seed(c)
    k = F.normalize(torch.randn(3, 2, c, 8, generator=g, dtype=torch.float64), dim=-1)
    beta = torch.rand(3, 2, c, 1, generator=g, dtype=torch.float64)
    strict = ((beta * k) @ k.transpose(-1, -2)).tril(-1)
    eye = torch.eye(c, dtype=torch.float64)
    want = torch.linalg.solve_triangular(eye + strict, eye.expand_as(strict), upper=False, unitriangular=True)
    torch.testing.assert_close(unit_lower_inverse(strict), want, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("use", ["output", "state"])
def test_gradients_when_only_one_result_is_used(use):
    """The backward gets None for the unused result's gradient: both paths against the recurrence."""
    inputs = _inputs(2, 2, 29, 8, 8, torch.float64, state=True)
    grads = []
    for fn in (lambda *a, **kw: delta_rule_chunkwise(*a, chunk_size=8, **kw), delta_rule_recurrent):
        o, s = fn(*inputs[:4], initial_state=inputs[4])
        out = o if use == "output" else s
        grads.append(torch.autograd.grad((out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum(), inputs, allow_unused=True, materialize_grads=True))
    for a, r in zip(*grads):
        torch.testing.assert_close(a, r, atol=1e-10, rtol=1e-10)


def test_step_by_step_decoding_equals_chunkwise_and_state_size_is_constant():
    q, k, v, beta = (t.detach() for t in _inputs(2, 2, 40, 8, 4, torch.float64))
    o, s_end = delta_rule_chunkwise(q, k, v, beta, chunk_size=16)
    s = torch.zeros(2, 2, 8, 4, dtype=torch.float64)
    outs = []
    for t in range(40):
        o_t, s = delta_rule_step(q[:, :, t], k[:, :, t], v[:, :, t], beta[:, :, t], s)
        assert s.shape == (2, 2, 8, 4)
        outs.append(o_t)
    torch.testing.assert_close(torch.stack(outs, 2), o, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(s, s_end, atol=1e-10, rtol=1e-10)


def test_split_sequence_with_carried_state_equals_whole():
    q, k, v, beta = (t.detach() for t in _inputs(1, 2, 50, 8, 8, torch.float64))
    o, s = delta_rule_chunkwise(q, k, v, beta, chunk_size=16)
    o1, s1 = delta_rule_chunkwise(q[:, :, :21], k[:, :, :21], v[:, :, :21], beta[:, :, :21], chunk_size=16)
    o2, s2 = delta_rule_chunkwise(q[:, :, 21:], k[:, :, 21:], v[:, :, 21:], beta[:, :, 21:], chunk_size=16, initial_state=s1)
    torch.testing.assert_close(torch.cat([o1, o2], 2), o, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(s2, s, atol=1e-10, rtol=1e-10)


def test_causal_future_does_not_leak():
    q, k, v, beta = (t.detach() for t in _inputs(1, 2, 30, 8, 8, torch.float64))
    o, _ = delta_rule_chunkwise(q, k, v, beta, chunk_size=8)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 13:] = F.normalize(torch.randn_like(k2[:, :, 13:]), dim=-1)
    v2[:, :, 13:] += 3 * torch.randn_like(v2[:, :, 13:])
    o2, _ = delta_rule_chunkwise(q, k2, v2, beta, chunk_size=8)
    torch.testing.assert_close(o2[:, :, :13], o[:, :, :13], atol=1e-12, rtol=0)
    assert not torch.allclose(o2[:, :, 13:], o[:, :, 13:])


def test_bad_input_errors():
    q = torch.randn(1, 2, 5, 4)
    with pytest.raises(ValueError, match="beta: expected shape"):
        delta_rule_chunkwise(q, q, q, torch.rand(1, 2, 4))
    with pytest.raises(ValueError, match="initial_state: expected shape"):
        delta_rule_chunkwise(q, q, q, torch.rand(1, 2, 5), initial_state=torch.zeros(1, 2, 4, 3))
    with pytest.raises(TypeError, match="beta: expected dtype"):
        delta_rule_chunkwise(q, q, q, torch.rand(1, 2, 5, dtype=torch.float64))


@pytest.mark.peer
def test_matches_fla_naive_reference():
    fla = load_fla_delta_rule_naive()
    if fla is None:
        pytest.skip("flash-linear-attention not installed (pip install --no-deps flash-linear-attention fla-core)")
    q, k, v, beta = (t.detach() for t in _inputs(2, 3, 96, 16, 16, torch.float32))
    o, s = delta_rule_chunkwise(q, k, v, beta, chunk_size=64)
    o_rec, s_rec = fla.delta_rule_recurrence(q, k, v, beta)
    o_chk, s_chk = fla.delta_rule_chunkwise(q, k, v, beta, chunk_size=32)
    for ref_o, ref_s in ((o_rec, s_rec), (o_chk, s_chk)):
        torch.testing.assert_close(o, ref_o, atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(s, ref_s, atol=2e-5, rtol=1e-5)


@pytest.mark.slow
def test_bench_size_agreement_n8192():
    """The benchmark's largest size (N=8192, C=64 and C=32): within 1e-4 relative (~10 s, one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for c in (64, 32):
            _bench_size_agreement(8192, c)
    finally:
        torch.set_num_threads(threads)


def test_bench_size_agreement_n2048():
    """The benchmark configuration (B=1, H=4, D=64, C=64) at N=2048: outputs and gradients within 1e-4 relative.

    One thread: with two OpenMP threads on the loaded shared machine the 2048-step recurrence took 96 s, 3 s with one.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _bench_size_agreement(2048, 64)
    finally:
        torch.set_num_threads(threads)


def _bench_size_agreement(n, c):
    q, k, v, beta = _inputs(1, 4, n, 64, 64, torch.float32, seed=3)
    g = torch.randn(1, 4, n, 64, generator=torch.Generator().manual_seed(4))
    res = []
    for fn in (lambda: delta_rule_chunkwise(q, k, v, beta, chunk_size=c)[0], lambda: delta_rule_recurrent(q, k, v, beta)[0]):
        o = fn()
        res.append([o.detach(), *torch.autograd.grad(o, (q, k, v, beta), g)])
    for a, b in zip(*res):
        assert ((a - b).norm() / b.norm()).item() < 1e-4


#: bf16 against fp64 on the same rounded inputs: relative Frobenius error of the output / final state, gradients
#: (measured 0.3-0.5 % and 0.4-0.65 % at the shapes below)
BF16_TOL, BF16_GRAD_TOL = 0.01, 0.015


#: (b, h, n, dk, dv, chunk): odd lengths, C = 2 to 128; 601 tokens at C = 2 are 301 chunks a head, more than one block
#: of the bf16 path (256 chunks), the last one partial; 5 heads of 64 chunks are blocks of 4 and 1 whole heads
BF16_SHAPES = [(2, 3, 45, 16, 8, 7), (1, 2, 130, 32, 32, 16), (1, 2, 300, 64, 64, 128), (1, 2, 601, 8, 4, 2),
               (1, 5, 128, 8, 8, 2)]


@pytest.mark.parametrize("shape", BF16_SHAPES)
@pytest.mark.parametrize("with_state", [False, True])
def test_bf16_chunkwise_matches_fp64_recurrence_forward_and_gradients(shape, with_state):
    """The bf16 path (fp32 states, M_i = I - K^T W in fp32, one fp32 product per chunk each way): output, final
    state (fp32) and the gradients of q, k, v, beta and the initial state, with an upstream gradient on the final
    state too, within the stated tolerances of fp64 on the same bf16-rounded inputs."""
    b, h, n, dk, dv, c = shape
    ins32 = _inputs(b, h, n, dk, dv, torch.float32, state=with_state)
    ins16 = [t.detach().bfloat16().requires_grad_() for t in ins32]
    if with_state:
        ins16[4] = ins32[4].detach().clone().requires_grad_()         # the state is fp32 either way
    ins64 = [t.detach().double().requires_grad_() for t in ins16]
    g = torch.Generator().manual_seed(1)
    up_o, up_s = torch.randn(b, h, n, dv, generator=g), torch.randn(b, h, dk, dv, generator=g)

    def run(fn, ins, **kw):
        o, s = fn(*ins[:4], initial_state=ins[4] if with_state else None, **kw)
        ((o.double() * up_o.double()).sum() + (s.double() * up_s.double()).sum()).backward()
        return o.detach(), s.detach(), [t.grad for t in ins]

    o16, s16, g16 = run(delta_rule_chunkwise, ins16, chunk_size=c)
    o64, s64, g64 = run(delta_rule_recurrent, ins64)
    rel = lambda a, r: float((a.double() - r).norm() / r.norm())  # noqa: E731
    assert o16.dtype == torch.bfloat16 and s16.dtype == torch.float32
    assert rel(o16, o64) <= BF16_TOL and rel(s16, s64) <= BF16_TOL
    for name, g, r in zip(["q", "k", "v", "beta", "initial_state"], g16, g64):
        assert rel(g, r) <= BF16_GRAD_TOL, f"d{name}: {rel(g, r):.4f}"


@pytest.mark.parametrize("use", ["output", "state"])
def test_bf16_gradients_when_only_one_result_is_used(use):
    """The bf16 backward with None for the unused result's gradient, against fp64 on the same rounded inputs;
    an explicit scale (not Dk^-1/2) to check where the bf16 path applies it."""
    ins16 = [t.detach().bfloat16().requires_grad_() for t in _inputs(1, 3, 77, 16, 16, torch.float32)]
    ins64 = [t.detach().double().requires_grad_() for t in ins16]
    grads = []
    for fn, ins in ((lambda *a: delta_rule_chunkwise(*a, chunk_size=16, scale=0.3), ins16),
                    (lambda *a: delta_rule_recurrent(*a, scale=0.3), ins64)):
        o, s = fn(*ins)
        out = (o if use == "output" else s).double()
        grads.append(torch.autograd.grad((out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum(),
                                         ins, allow_unused=True, materialize_grads=True))
    for name, a, r in zip("qkvb", *grads):
        err = float((a.double() - r).norm() / r.norm()) if r.norm() > 0 else float(a.abs().max())
        assert err <= BF16_GRAD_TOL, f"d{name}: {err:.4f}"
