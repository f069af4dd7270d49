"""A blocked bf16 backward for softmax attention, from the forward's log-sum-exp (issue 16).

torch 2.13's fused CPU flash-attention backward gains only ~1.3x from bf16 over fp32 at N = 4096 on
this machine's AMX units. This backward recomputes the probabilities from the forward's log-sum-exp
(the FlashAttention-2 backward, Dao 2023) one block of ``block`` keys at a time over all query rows
and runs all five products as single bf16 matmuls per block (fp32 accumulation inside the matmul):

    X  = scale * Q K_j^T - lse          (one product: lse enters as two extra bf16 columns of Q)
    P  = exp(X)                          (in place, bf16)
    dV_j^T = dO^T P                      (the whole column of rows at once: no accumulation)
    Y  = dO V_j^T - delta,  delta = rowsum(dO * O) in fp32  (two extra columns again)
    dS = P * Y                           (fused into Y's product by oneDNN when available)
    dK_j^T = scale * Q^T dS,   dQ += scale * dS K_j  (summed in fp32 over blocks)

Subtracting lse and delta inside the product's fp32 accumulator (as -lse / scale split into a bf16
high and low part against two columns of ones) keeps the cancellation exact: only X (<= 0 where P
matters) and Y are rounded to bf16 once, as torch's kernel rounds P and dS. Precision: X carries
bf16's relative rounding, so an entry's probability is off by about |X| * 2^-9; measured against
fp64 at N = 4096 (random q, k, v) the gradients' relative error is about 1.5x that of torch's bf16
kernel (1.0 % vs 0.65 %), see tests/ops/test_attention_backward.py.

Memory: two (N, block) bf16 blocks and up to ``GROUP`` partial dQ blocks: O(N (block + GROUP D)).
"""
from __future__ import annotations

import functools

import torch

__all__ = ["blocked_bf16_attention_backward", "has_fused_product_times", "BLOCK", "GROUP"]

#: keys per block: 512 measured fastest at N = 1024 and 4096 (256: +2-5 %, 128: +20 %)
BLOCK = 512
#: partial dQ blocks kept in bf16 before they are summed (fp32 inside the sum, one bf16 rounding) into the fp32 dQ
GROUP = 8


def _hi_lo(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 ``x`` as two bf16 tensors whose sum is ``x`` to about 2^-16 relative."""
    hi = x.to(torch.bfloat16)
    return hi, (x - hi.float()).to(torch.bfloat16)


def _augment(x: torch.Tensor, col: torch.Tensor | None) -> torch.Tensor:
    """(..., N, D) -> (..., N, D + 2): ``x`` with the hi and lo bf16 parts of ``col`` (..., N) fp32 appended,
    or two columns of ones for ``col=None``."""
    if col is None:
        extra = x.new_ones(*x.shape[:-1], 2)
    else:
        extra = torch.stack(_hi_lo(col), dim=-1)
    return torch.cat([x, extra], dim=-1)


@functools.cache
def has_fused_product_times() -> bool:
    """Whether oneDNN's matmul with a multiplying post-op (``torch.ops.mkldnn._linear_pointwise.binary``, the op
    inductor fuses into) exists here and agrees with ``mm`` then ``mul``; else the two ops run separately."""
    a, w, other = (torch.linspace(-1, 1, n).to(torch.bfloat16).view(shape)
                   for n, shape in ((32, (4, 8)), (24, (3, 8)), (12, (4, 3))))
    try:
        fused = torch.ops.mkldnn._linear_pointwise.binary(a, other, w, None, "mul")
    except (RuntimeError, AttributeError):
        return False
    return bool(torch.allclose(fused.float(), (a.float() @ w.float().t()) * other.float(), atol=1e-2, rtol=1e-2))


def _product_times(a: torch.Tensor, w: torch.Tensor, other: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``(a @ w^T) * other`` for bf16 a (R, K), w (C, K), other (R, C): one oneDNN call that rounds once when
    available (it saves a pass over the (R, C) block: 0.61 vs 1.16 ms at R=4096, C=512), else mm into ``out``
    and an in-place multiply."""
    if has_fused_product_times():
        return torch.ops.mkldnn._linear_pointwise.binary(a, other, w, None, "mul")
    torch.mm(a, w.t(), out=out)
    return out.mul_(other)


def blocked_bf16_attention_backward(
    do: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    *,
    scale: float,
    causal: bool = False,
    block: int = BLOCK,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (dq, dk, dv) of ``out = softmax(scale q k^T) v`` for bf16 tensors, unmasked or causal.

    do, q, out (B, H, N, D|Dv), k (B, H, M, D), v (B, H, M, Dv) in bf16; lse (B, H, N) fp32, the
    natural-log log-sum-exp of each row of ``scale q k^T`` (as SDPA's CPU flash forward returns it).
    ``causal``: query i sees keys j <= i (top-left aligned, as SDPA). Returns bf16 gradients.
    """
    b, h, n, d = q.shape
    m, dv_dim = k.shape[2], v.shape[-1]
    delta = (do.float() * out.float()).sum(-1)              # rowsum(dO * O) = rowsum(P * dP)
    qa = _augment(q, -lse / scale)                          # scale * qa ka^T = scale q k^T - lse
    ka = _augment(k, None)
    doa = _augment(do, -delta)                              # doa va^T = dO v^T - delta
    va = _augment(v, None).contiguous()
    dq = torch.zeros(b, h, n, d, dtype=torch.float32, device=q.device)
    dk_t = torch.empty(b, h, d, m, dtype=q.dtype, device=q.device)     # built transposed: one product per block
    dv_t = torch.empty(b, h, dv_dim, m, dtype=q.dtype, device=q.device)
    if causal:
        above = torch.ones(block, block, dtype=torch.bool, device=q.device).triu(1)
    x_buf = q.new_empty(n * block)
    y_buf = q.new_empty(n * block)
    parts = q.new_empty(GROUP, n, d)
    for bi in range(b):
        for hi in range(h):
            qa_h, doa_h, k_h = qa[bi, hi], doa[bi, hi], k[bi, hi]
            ka_t, va_h = ka[bi, hi].t().contiguous(), va[bi, hi]
            q_t, do_t = q[bi, hi].t().contiguous(), do[bi, hi].t().contiguous()
            dq_h, used = dq[bi, hi], 0
            for j in range(0, m, block):
                cj = min(block, m - j)
                r0 = j if causal else 0                      # causal: rows before j see none of these keys
                if r0 >= n:
                    dk_t[bi, hi, :, j:].zero_()
                    dv_t[bi, hi, :, j:].zero_()
                    break
                rows = n - r0
                x = x_buf[:rows * cj].view(rows, cj)
                y = y_buf[:rows * cj].view(rows, cj)
                torch.addmm(x, qa_h[r0:], ka_t[:, j:j + cj], beta=0, alpha=scale, out=x)
                x.exp_()
                if causal:
                    x[:cj].masked_fill_(above[:min(rows, cj), :cj], 0.0)
                torch.mm(do_t[:, r0:], x, out=dv_t[bi, hi, :, j:j + cj])
                y = _product_times(doa_h[r0:], va_h[j:j + cj], x, y)          # dS = P * (dO v^T - delta)
                torch.addmm(dk_t[bi, hi, :, j:j + cj], q_t[:, r0:], y, beta=0, alpha=scale,
                            out=dk_t[bi, hi, :, j:j + cj])
                if r0:
                    parts[used, :r0].zero_()
                torch.mm(y, k_h[j:j + cj], out=parts[used, r0:])
                used += 1
                if used == GROUP:
                    dq_h.add_(parts.sum(0))          # fp32 sum inside, one rounding
                    used = 0
            if used:
                dq_h.add_(parts[:used].sum(0))
    return ((dq * scale).to(q.dtype), dk_t.transpose(-1, -2).contiguous(), dv_t.transpose(-1, -2).contiguous())
