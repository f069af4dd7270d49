"""Query-blocked exact softmax attention (P06): never more than (B, H, block, M) scores at a time.

P06 (He & Kabic 2023, "A Unified View of Long-Sequence Models towards Modeling Million-Scale
Dependencies") computes exact multi-head attention with the heads sharded across devices and the
queries processed in blocks, so that no device materialises the B x H x N x N score tensor of
vanilla attention. This is the per-device kernel: for each block of ``block_size`` queries it forms
the block's scores against every key, normalises them exactly (a full-row softmax, so no online
rescaling is needed), and multiplies by V. The backward pass recomputes each block's probabilities
from the saved log-normaliser (no N x N tensor is stored for autograd either).

``blocked_attention`` is tested against :func:`blocked_attention_reference` (the dense
``softmax(Q K^T * scale, masked) V`` of :func:`attnlab.ops.attention.attention_reference`), forward
and backward. Peak extra memory is about one block's scores, ``B * H * block * M`` floats (the
scores are masked, exponentiated and normalised in place), in the backward about two.
"""
from __future__ import annotations

import torch

from attnlab.ops.attention import attention_reference, check_attention_options, check_qkv
from attnlab.utils.checks import check_positive_int

__all__ = ["blocked_attention", "blocked_attention_reference", "query_blocks"]


def query_blocks(n: int, block_size: int) -> list[tuple[int, int]]:
    """The ``[start, stop)`` ranges of the query blocks of a length-``n`` sequence (the last may be shorter)."""
    return [(i, min(i + block_size, n)) for i in range(0, n, block_size)]


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    # bf16/fp16 inputs: scores, normalisers and accumulators in fp32; fp32/fp64 as given.
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype


def _block_scores(qb, k, scale, start, stop, causal, kpm) -> torch.Tensor:
    """Masked scores (B, H, b, m) of queries [start, stop) against the keys they may see: m = stop under causal
    masking (later keys are never visible), else all M keys; masked entries are -inf."""
    m = stop if causal else k.shape[2]
    s = torch.matmul(qb * scale, k[:, :, :m].transpose(-1, -2))
    if causal:
        rows = torch.arange(start, stop, device=s.device)[:, None]
        s.masked_fill_(torch.arange(m, device=s.device)[None, :] > rows, float("-inf"))
    if kpm is not None:
        s.masked_fill_(~kpm[:, None, None, :m], float("-inf"))
    return s


class _BlockedAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, block_size, causal, kpm, scale):
        cd = _compute_dtype(q)
        qc, kc, vc = q.to(cd), k.to(cd), v.to(cd)
        out = torch.empty(q.shape[:3] + (v.shape[-1],), dtype=cd, device=q.device)
        lse = torch.empty(q.shape[:3] + (1,), dtype=cd, device=q.device)
        for start, stop in query_blocks(q.shape[2], block_size):
            s = _block_scores(qc[:, :, start:stop], kc, scale, start, stop, causal, kpm)
            # softmax in the scores' own buffer (torch.logsumexp would allocate a second block of scores)
            row_max = s.amax(dim=-1, keepdim=True)
            row_max.masked_fill_(torch.isneginf(row_max), 0.0)  # a row with no visible key: exp(-inf) = 0 below
            denom = s.sub_(row_max).exp_().sum(dim=-1, keepdim=True)
            # log-normaliser; +inf on rows with no visible key makes exp(s - lse) = 0 in the backward
            lse[:, :, start:stop] = torch.where(denom > 0, row_max + denom.log(), float("inf"))
            p = s.div_(torch.where(denom > 0, denom, 1.0))
            out[:, :, start:stop] = torch.matmul(p, vc[:, :, : p.shape[-1]])
            del s, p
        ctx.save_for_backward(q, k, v, out, lse, kpm if kpm is not None else torch.empty(0))
        ctx.block_size, ctx.causal, ctx.scale, ctx.has_kpm = block_size, causal, scale, kpm is not None
        return out.to(q.dtype)

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse, kpm = ctx.saved_tensors
        kpm = kpm if ctx.has_kpm else None
        cd, scale = out.dtype, ctx.scale
        qc, kc, vc, dout = q.to(cd), k.to(cd), v.to(cd), dout.to(cd)
        delta = (dout * out).sum(-1, keepdim=True)
        dq, dk, dv = torch.empty_like(qc), torch.zeros_like(kc), torch.zeros_like(vc)
        for start, stop in query_blocks(q.shape[2], ctx.block_size):
            qb, dob = qc[:, :, start:stop], dout[:, :, start:stop]
            p = _block_scores(qb, kc, scale, start, stop, ctx.causal, kpm).sub_(lse[:, :, start:stop]).exp_()
            m = p.shape[-1]
            dv[:, :, :m] += torch.matmul(p.transpose(-1, -2), dob)
            # dS = P * (dO V^T - delta) * scale, formed in the buffer of dO V^T
            ds = torch.matmul(dob, vc[:, :, :m].transpose(-1, -2)).sub_(delta[:, :, start:stop]).mul_(p).mul_(scale)
            del p
            dq[:, :, start:stop] = torch.matmul(ds, kc[:, :, :m])
            dk[:, :, :m] += torch.matmul(ds.transpose(-1, -2), qb)
            del ds
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None, None


def blocked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    block_size: int = 512,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Exact softmax attention computed one block of ``block_size`` queries at a time (P06).

    Args:
        q: (B, H, N, D); k: (B, H, M, D); v: (B, H, M, Dv).
        block_size: queries per block; the scores held at once are (B, H, block_size, M).
        causal: query i sees keys j <= i (top-left aligned, as ``attention_reference``).
        key_padding_mask: (B, M) bool, True = real key.
        scale: logit scale, default D^-1/2.
    Returns:
        (B, H, N, Dv), equal to :func:`blocked_attention_reference`; rows with no visible key are zeros.
        Differentiable (the backward recomputes each block's probabilities). bf16/fp16 inputs are
        computed in fp32 and cast back.
    """
    check_qkv(q, k, v)
    scale = check_attention_options(q, k.shape[2], key_padding_mask, scale)
    check_positive_int("block_size", block_size)
    return _BlockedAttention.apply(q, k, v, block_size, bool(causal), key_padding_mask, scale)


def blocked_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Vanilla multi-head attention, the dense ``softmax(Q K^T * scale, masked) V`` that materialises all
    (B, H, N, M) scores: what :func:`blocked_attention` must equal, and P06's memory baseline."""
    return attention_reference(q, k, v, causal=causal, key_padding_mask=key_padding_mask, scale=scale)
