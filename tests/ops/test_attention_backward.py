"""The blocked bf16 attention backward (issue 16) against fp64 autograd through the explicit softmax, against
torch's bf16 kernel, and the `attention` op's routing to it."""
from __future__ import annotations

import pytest
import torch

from attnlab.ops import attention_backward
from attnlab.ops.attention import BLOCKED_BACKWARD_MIN_LOGITS, FP32_BACKWARD_MAX_LOGITS, attention
from attnlab.ops.attention_backward import blocked_bf16_attention_backward

FLASH = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
FLASH_BACKWARD = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
#: relative Frobenius error of each bf16 gradient against fp64 on the same (bf16-rounded) inputs
BF16_GRAD_TOL = 0.02


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a.detach().double() - ref).norm() / ref.norm())


def _inputs(b, h, n, m, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, n, d, generator=g) * 1.5      # peakier rows than unit logits
    k, v = torch.randn(b, h, m, d, generator=g), torch.randn(b, h, m, d, generator=g)
    do = torch.randn(b, h, n, d, generator=g)
    return [t.bfloat16() for t in (q, k, v, do)]


def _fp64_grads(q, k, v, do, scale, causal):
    qd, kd, vd = (t.double().requires_grad_() for t in (q, k, v))
    logits = qd @ kd.transpose(-1, -2) * scale
    if causal:
        n, m = logits.shape[-2:]
        logits = logits.masked_fill(torch.ones(n, m, dtype=torch.bool).triu(1), float("-inf"))
    (torch.softmax(logits, -1) @ vd).backward(do.double())
    return qd.grad, kd.grad, vd.grad


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize(
    "b, h, n, m, d, block, causal",
    [(2, 3, 37, 37, 16, 16, False), (2, 3, 37, 37, 16, 16, True), (1, 2, 50, 29, 8, 8, True),
     (1, 2, 29, 50, 8, 8, True), (1, 2, 100, 77, 32, 32, False),
     (1, 1, 200, 200, 16, 16, False), (1, 1, 200, 200, 16, 16, True)],   # 13 blocks: more than a GROUP of 8
)
def test_matches_fp64_and_torch_bf16_kernel(monkeypatch, fused, b, h, n, m, d, block, causal):
    """Odd lengths, N != M, causal (top-left, as SDPA), several key blocks: each gradient within 2 % of fp64 and
    within 2x (+0.2 %) the error of torch's own bf16 backward with oneDNN's fused product (dS rounded once, as
    torch rounds it), 3x without it (dO v^T - delta, P and their product each rounded)."""
    if fused and not attention_backward.has_fused_product_times():
        pytest.skip("this torch has no oneDNN matmul with a multiplying post-op")
    monkeypatch.setattr(attention_backward, "has_fused_product_times", lambda: fused)
    q, k, v, do = _inputs(b, h, n, m, d)
    scale = d ** -0.5
    out, lse = FLASH(q, k, v, 0.0, causal)[:2]
    grads = blocked_bf16_attention_backward(do, q, k, v, out, lse, scale=scale, causal=causal, block=block)
    torch_grads = FLASH_BACKWARD(do, q, k, v, out, lse, 0.0, causal)[:3]
    for name, g, tg, ref in zip("qkv", grads, torch_grads, _fp64_grads(q, k, v, do, scale, causal)):
        assert g.dtype == torch.bfloat16 and g.shape == ref.shape
        assert _rel(g, ref) <= BF16_GRAD_TOL, f"d{name}: {_rel(g, ref):.4f}"
        factor = 2 if fused else 3
        assert _rel(g, ref) <= factor * _rel(tg, ref) + 2e-3, f"d{name}: {_rel(g, ref):.4f} vs torch {_rel(tg, ref):.4f}"


def test_scale_other_than_the_default():
    q, k, v, do = _inputs(1, 2, 40, 40, 16)
    out, lse = FLASH(q, k, v, 0.0, False, scale=0.37)[:2]
    grads = blocked_bf16_attention_backward(do, q, k, v, out, lse, scale=0.37, block=16)
    for g, ref in zip(grads, _fp64_grads(q, k, v, do, 0.37, False)):
        assert _rel(g, ref) <= BF16_GRAD_TOL


def test_hand_computed_two_keys():
    """One query, two keys, logits 0 and log 3: p = (1/4, 3/4); dO = 1 on a 1-d value v = (0, 4) gives
    dV = p, dp = v, delta = p.v = 3, dS = p (v - delta) = (-3/4, 3/4), dQ = scale dS K, dK = scale dS^T q."""
    scale = 1.0
    q = torch.tensor([[[[1.0]]]]).bfloat16()
    k = torch.tensor([[[[0.0], [1.0986]]]]).bfloat16()        # log 3 = 1.0986 (bf16 rounds it to 1.1016)
    v = torch.tensor([[[[0.0], [4.0]]]]).bfloat16()
    do = torch.ones(1, 1, 1, 1).bfloat16()
    out, lse = FLASH(q, k, v, 0.0, False, scale=scale)[:2]
    dq, dk, dv = blocked_bf16_attention_backward(do, q, k, v, out, lse, scale=scale)
    l1 = float(k[0, 0, 1, 0])
    p = torch.tensor([1.0, torch.e ** l1]) / (1 + torch.e ** l1)
    ds = p * (torch.tensor([0.0, 4.0]) - 4.0 * p[1])
    torch.testing.assert_close(dv.float().flatten(), p, atol=4e-3, rtol=0)
    torch.testing.assert_close(dk.float().flatten(), ds, atol=8e-3, rtol=0)
    torch.testing.assert_close(dq.float().flatten(), (ds * torch.tensor([0.0, l1])).sum(0, keepdim=True),
                               atol=8e-3, rtol=0)


def _grad_fn_name(out: torch.Tensor) -> str:
    return type(out.grad_fn).__name__


@pytest.mark.parametrize("autocast", [False, True])
def test_attention_op_takes_it_from_the_threshold_and_matches_fp64(one_thread, autocast):
    """N = M = 1030 (>= 2^20 logits): bf16 `attention`, unmasked, non-causal, one thread: the blocked backward;
    under autocast with fp32 inputs too. Output and gradients against fp64 on the same rounded inputs."""
    assert 1030 * 1030 >= BLOCKED_BACKWARD_MIN_LOGITS
    q, k, v, do = _inputs(1, 2, 1030, 1030, 32)
    if autocast:
        leaves = [t.float().requires_grad_() for t in (q, k, v)]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = attention(*leaves)
    else:
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        out = attention(*leaves)
    assert _grad_fn_name(out).startswith("_LowPrecisionAttention")
    out.backward(do.to(out.dtype))
    qd, kd, vd = (t.double() for t in (q, k, v))
    ref_out = torch.softmax(qd @ kd.transpose(-1, -2) * 32 ** -0.5, -1) @ vd
    assert _rel(out, ref_out) <= 0.01
    for leaf, ref in zip(leaves, _fp64_grads(q, k, v, do, 32 ** -0.5, False)):
        assert _rel(leaf.grad, ref) <= BF16_GRAD_TOL


@pytest.mark.parametrize("n, kw", [(1030, dict(causal=True)),
                                   (1030, dict(key_padding_mask=torch.ones(1, 1030, dtype=torch.bool))),
                                   (520, {})])
def test_attention_op_keeps_torch_bf16_kernel_when_causal_masked_or_below_the_threshold(one_thread, n, kw):
    """Causal or masked bf16 keep torch's bf16 backward (the blocked one was not faster causal; it takes no
    mask), and so does 520 x 520, between the fp32-backward and the blocked thresholds (blocked 1.08x the
    kernel's time at N = 512, B = 16)."""
    assert FP32_BACKWARD_MAX_LOGITS <= 520 * 520 < BLOCKED_BACKWARD_MIN_LOGITS
    q, k, v, _ = _inputs(1, 2, n, n, 32)
    out = attention(*(t.requires_grad_() for t in (q, k, v)), **kw)
    assert not _grad_fn_name(out).startswith("_LowPrecisionAttention")


def test_attention_op_keeps_torch_bf16_kernel_with_two_threads():
    """With more than one torch thread the blocked backward is not taken (measured 3.2x slower than torch's kernel,
    which splits the heads between threads)."""
    q, k, v, _ = _inputs(1, 2, 1030, 1030, 32)
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = attention(*(t.requires_grad_() for t in (q, k, v)))
    finally:
        torch.set_num_threads(n)
    assert not _grad_fn_name(out).startswith("_LowPrecisionAttention")
