"""Softmax attention on (B, H, N, D): the fast path and its reference.

``attention`` runs through ``torch.nn.functional.scaled_dot_product_attention``
(flash-style, O(N) memory on CPU); ``attention_reference`` is the explicit
``softmax(Q K^T * scale + mask) V`` it is tested against. Both accept a causal
flag, a key-padding mask and an optional extra mask, and agree on every edge
case (fully masked rows give zeros, not NaN).

bf16: the forward is SDPA's fused kernel (about 2.7x its fp32 speed here). torch's fused CPU
backward for bf16 measured 4-7x *slower* than its fp32 backward at N <= 128 and only 1.3-1.5x faster
at N >= 1024; below ``FP32_BACKWARD_MAX_LOGITS`` logits per head the backward therefore runs in
fp32 (:class:`_LowPrecisionAttention`); from ``BLOCKED_BACKWARD_MIN_LOGITS`` (N x M = 1024^2) on, unmasked,
non-causal and on one thread, in attnlab's blocked bf16 backward (:mod:`attnlab.ops.attention_backward`,
1.5x faster than torch's bf16 kernel at N = 4096), and otherwise in torch's bf16 kernel.

Reference: Vaswani et al. 2017; qk-layernorm and logit analysis as in P02.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from attnlab.utils.checks import check_key_padding_mask, check_tensor, describe, fail
from attnlab.utils.precision import LOW_PRECISION, lower_precision_op
from attnlab.ops.attention_backward import blocked_bf16_attention_backward
from attnlab.ops.recording import AttentionInputs, capture, is_recording, record

__all__ = ["attention", "attention_reference", "attention_logits", "build_attention_mask", "check_qkv",
           "check_self_qkv", "check_attention_options", "masked_softmax", "sdpa", "FP32_BACKWARD_MAX_LOGITS",
           "BLOCKED_BACKWARD_MIN_LOGITS"]


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Validate attention inputs q (B, H, N, D), k (B, H, M, D), v (B, H, M, Dv): ranks, matching sizes, one dtype."""
    check_tensor("q", q, ndim=4, floating=True)
    check_tensor("k", k, ndim=4, floating=True)
    check_tensor("v", v, ndim=4, floating=True)
    if k.shape[:2] != q.shape[:2] or v.shape[:2] != q.shape[:2]:
        fail("k, v", f"the same (B, H) as q = {tuple(q.shape[:2])}", f"k {tuple(k.shape)}, v {tuple(v.shape)}")
    if k.shape[-1] != q.shape[-1]:
        fail("k", f"head dim D = {q.shape[-1]} (as q)", describe(k))
    if v.shape[2] != k.shape[2]:
        fail("v", f"the same number of keys M = {k.shape[2]} as k", describe(v))
    if not (q.dtype == k.dtype == v.dtype):
        fail("q, k, v", "one dtype", f"{q.dtype}, {k.dtype}, {v.dtype}", TypeError)


def check_self_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None = None) -> None:
    """Validate self-attention inputs: q, k (B, H, N, D) of one shape, v (B, H, N, Dv) when given, one dtype.

    Shared by the ops whose keys are the queries' tokens (routing, subsampling, Combiner, SEA,
    linear attention, the delta rule).
    """
    named = [("q", q), ("k", k)] + ([("v", v)] if v is not None else [])
    for name, t in named:
        check_tensor(name, t, ndim=4, floating=True)
    if k.shape != q.shape:
        fail("k", f"the shape of q {tuple(q.shape)} (self-attention)", describe(k))
    if v is not None and v.shape[:3] != q.shape[:3]:
        fail("v", f"shape (B, H, N, Dv) with (B, H, N) = {tuple(q.shape[:3])}", describe(v))
    if any(t.dtype != q.dtype for _, t in named):
        fail(", ".join(n for n, _ in named), "one dtype", ", ".join(str(t.dtype) for _, t in named), TypeError)


def check_attention_options(q: torch.Tensor, n_keys: int, key_padding_mask: torch.Tensor | None,
                            scale: object) -> float:
    """Validate the options every attention op takes: ``key_padding_mask`` (B, n_keys) bool or None and
    ``scale`` a finite float or None. Returns the logit scale to use (``D ** -0.5`` for None)."""
    if key_padding_mask is not None:
        check_key_padding_mask("key_padding_mask", key_padding_mask, q.shape[0], n_keys)
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                              or not math.isfinite(scale)):
        fail("scale", "a finite float or None", describe(scale), TypeError)
    return q.shape[-1] ** -0.5 if scale is None else float(scale)


def build_attention_mask(
    n: int,
    m: int,
    *,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
    attn_mask: torch.Tensor | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor | None:
    """Combine the masks into one boolean mask broadcastable to (B, H, N, M).

    True means "may attend". ``causal`` lets query i see keys j <= i (top-left
    aligned, as in ``scaled_dot_product_attention``). ``key_padding_mask`` is
    (B, M), True = real key. ``attn_mask`` is a bool mask broadcastable to
    (B, H, N, M). Returns None when nothing is masked.
    """
    mask = None
    if causal:
        mask = torch.ones(n, m, dtype=torch.bool, device=device).tril()
    if key_padding_mask is not None:
        kpm = key_padding_mask[:, None, None, :]
        mask = kpm if mask is None else mask & kpm
    if attn_mask is not None:
        if attn_mask.dtype != torch.bool:
            fail("attn_mask", "a bool tensor (True = may attend)", describe(attn_mask), TypeError)
        mask = attn_mask if mask is None else mask & attn_mask
    return mask


def attention_logits(q: torch.Tensor, k: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Scaled logits ``Q K^T * scale`` of shape (B, H, N, M) (scale defaults to D^-1/2)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return torch.matmul(q, k.transpose(-2, -1)) * scale


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the last dim of ``logits`` (..., N, M) where ``mask`` (bool, broadcastable, True = may attend)
    allows; a row with no allowed key gives zeros (not NaN)."""
    if mask is None:
        return torch.softmax(logits, dim=-1)
    logits = logits.masked_fill(~mask, float("-inf"))
    has_key = mask.any(dim=-1, keepdim=True)
    # A row with no visible key would be softmax(all -inf) = NaN; define it as zeros.
    logits = logits.masked_fill(~has_key, 0.0)
    return torch.softmax(logits, dim=-1) * has_key


def _validate(q, k, v, key_padding_mask, scale):
    check_qkv(q, k, v)
    check_attention_options(q, k.shape[2], key_padding_mask, scale)


@lower_precision_op
def attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
    attn_mask: torch.Tensor | None = None,
    scale: float | None = None,
    return_probs: bool = False,
    return_logits: bool = False,
):
    """Explicit softmax attention: ``softmax(Q K^T * scale, masked) V``.

    Args:
        q: (B, H, N, D); k: (B, H, M, D); v: (B, H, M, Dv).
        causal: query i sees keys j <= i.
        key_padding_mask: (B, M) bool, True = real key.
        attn_mask: bool, broadcastable to (B, H, N, M), True = may attend.
        scale: logit scale, default D^-1/2.
        return_probs: also return the (B, H, N, M) probabilities.
        return_logits: also return the (B, H, N, M) scaled logits before masking.
    Returns:
        (B, H, N, Dv) output (then probabilities, then logits, when asked). Query rows with no visible key
        give zeros. Low-precision inputs are computed in float32 and cast back.
    """
    _validate(q, k, v, key_padding_mask, scale)
    out_dtype = q.dtype
    if q.dtype in (torch.float16, torch.bfloat16):
        q, k, v = q.float(), k.float(), v.float()
    logits = raw_logits = attention_logits(q, k, scale)
    mask = build_attention_mask(
        q.shape[2], k.shape[2], causal=causal, key_padding_mask=key_padding_mask, attn_mask=attn_mask, device=q.device
    )
    probs = masked_softmax(logits, mask)
    out = torch.matmul(probs, v).to(out_dtype)
    extras = ([probs.to(out_dtype)] if return_probs else []) + ([raw_logits] if return_logits else [])
    return (out, *extras) if extras else out


@lower_precision_op
def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
    attn_mask: torch.Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Softmax attention through ``F.scaled_dot_product_attention``.

    Same arguments and result as :func:`attention_reference` (which it is
    tested against), plus ``dropout_p`` on the probabilities (training only).
    Inside ``record_attention`` it takes the reference path and records the
    probabilities; inside ``capture_attention_inputs`` its q, k and options are kept.
    Shapes: q (B, H, N, D), k (B, H, M, D), v (B, H, M, Dv) -> (B, H, N, Dv).
    """
    _validate(q, k, v, key_padding_mask, scale)
    if not (0.0 <= dropout_p < 1.0):
        fail("dropout_p", "a float in [0, 1)", describe(dropout_p))
    capture(AttentionInputs(q, k, causal, key_padding_mask, attn_mask, scale))
    if is_recording():
        out, probs, logits = attention_reference(
            q, k, v, causal=causal, key_padding_mask=key_padding_mask, attn_mask=attn_mask, scale=scale,
            return_probs=True, return_logits=True,
        )
        record(probs, logits)
        if dropout_p > 0.0:
            # Keep training semantics while recording: dropout on probabilities.
            out = torch.matmul(F.dropout(probs, dropout_p), v)
        return out
    if key_padding_mask is None and attn_mask is None:
        return sdpa(q, k, v, is_causal=causal, scale=scale, dropout_p=dropout_p)
    mask = build_attention_mask(
        q.shape[2], k.shape[2], causal=causal, key_padding_mask=key_padding_mask, attn_mask=attn_mask, device=q.device
    )
    has_key = mask.any(dim=-1, keepdim=True)
    # Rows with no visible key: let them see everything (finite, no NaN in the
    # backward) and zero their output afterwards, matching the reference.
    safe_mask = mask | ~has_key
    out = sdpa(q, k, v, attn_mask=safe_mask, scale=scale, dropout_p=dropout_p)
    return out * has_key.to(out.dtype)


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, attn_mask: torch.Tensor | None = None,
         is_causal: bool = False, scale: float | None = None, dropout_p: float = 0.0) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` (q (..., N, D), k (..., M, D), v (..., M, Dv), same arguments) with
    attnlab's choice of backward for bf16: below ``FP32_BACKWARD_MAX_LOGITS`` logits per head (N x M) the
    backward runs in fp32 (:class:`_LowPrecisionAttention`), where torch's bf16 CPU backward is several times
    slower than its fp32 one; from ``BLOCKED_BACKWARD_MIN_LOGITS`` on, unmasked non-causal bf16 on one thread
    takes attnlab's blocked bf16 backward (the fused kernels need one head size for q, k and v; else SDPA as is).
    The attention ops call it for every SDPA."""
    if (q.dtype in LOW_PRECISION and dropout_p == 0.0 and q.dim() == 4 and v.shape[-1] == q.shape[-1]
            and (q.shape[-2] * k.shape[-2] < FP32_BACKWARD_MAX_LOGITS
                 or _takes_blocked_backward(q, k, attn_mask, is_causal))
            and torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)):
        return _LowPrecisionAttention.apply(q, k, v, attn_mask, is_causal, scale)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=scale,
                                          dropout_p=dropout_p)


#: below this many logits per head (N x M), bf16 attention takes its backward in fp32 (see _LowPrecisionAttention)
FP32_BACKWARD_MAX_LOGITS = 1 << 18


#: from this many logits per head (N x M), unmasked non-causal bf16 attention takes the blocked bf16 backward
BLOCKED_BACKWARD_MIN_LOGITS = 1 << 20


def _takes_blocked_backward(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None, causal: bool) -> bool:
    """Whether bf16 attention runs attnlab's blocked bf16 backward: unmasked, non-causal, from
    ``BLOCKED_BACKWARD_MIN_LOGITS`` logits per head, with one torch thread. Its time / torch's bf16 kernel's
    (D=64 unless stated, one thread, load 9-11): N = 512 1.08x (B=16, H=8) and 0.94x (B=1), N = 1024 0.87x
    (B=1 and 4, H=8) and 0.91x (B=8, H=4, D=32), N = 2048 0.71x, N = 4096 0.66-0.76x; causal 1.0-1.1x (so not
    taken). With two threads (load 11) it took 3.2x the kernel's wall time: its ~1000 small products per call
    each wait for the second core, where torch's kernel splits the heads between threads."""
    return (q.dtype == torch.bfloat16 and mask is None and not causal and torch.get_num_threads() == 1
            and q.shape[-2] * k.shape[-2] >= BLOCKED_BACKWARD_MIN_LOGITS)


class _LowPrecisionAttention(torch.autograd.Function):
    """bf16 softmax attention with attnlab's choice of backward: SDPA's fused bf16 forward (output and
    log-sum-exp), then

    * below ``FP32_BACKWARD_MAX_LOGITS`` logits per head, torch's fused backward run in fp32: torch 2.13's
      fused CPU backward for bf16 measured 4-7x slower than its fp32 backward at N <= 128. The backward
      upcasts q, k, v, the output and dO (O(N D) casts); the gradients are cast back.
    * from ``BLOCKED_BACKWARD_MIN_LOGITS`` on (bf16, unmasked, non-causal, one thread only:
      :func:`_takes_blocked_backward`), the blocked bf16 backward of :mod:`attnlab.ops.attention_backward` from
      the forward's log-sum-exp. (In between, :func:`sdpa` does not use this class: torch's bf16 kernel.)

    ``mask``: bool (True = may attend, every row with a visible key) or additive, broadcastable to (B, H, N, M).
    """

    @staticmethod
    def forward(ctx, q, k, v, mask, causal, scale):
        bias = _additive(mask, q.dtype)
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, 0.0, causal, attn_mask=bias, scale=scale)[:2]
        ctx.save_for_backward(q, k, v, out, lse, mask)
        ctx.causal, ctx.scale = causal, scale
        ctx.blocked = _takes_blocked_backward(q, k, mask, causal)   # decided here, on the forward's thread count
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, do):
        q, k, v, out, lse, mask = ctx.saved_tensors
        if ctx.blocked:
            scale = q.shape[-1] ** -0.5 if ctx.scale is None else ctx.scale
            return (*blocked_bf16_attention_backward(do, q, k, v, out, lse, scale=scale, causal=ctx.causal),
                    None, None, None)
        grads = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
            do.float(), q.float(), k.float(), v.float(), out.float(), lse, 0.0, ctx.causal,
            attn_mask=_additive(mask, torch.float32), scale=ctx.scale)
        return (*(g.to(t.dtype) for g, t in zip(grads, (q, k, v))), None, None, None)


def _additive(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A bool mask (True = may attend) as the additive 0 / -inf mask of ``dtype``; an additive one cast to it."""
    if mask is None or mask.dtype != torch.bool:
        return None if mask is None else mask.to(dtype)
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))
