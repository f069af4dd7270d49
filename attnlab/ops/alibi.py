"""ALiBi, attention with linear biases (Press, Smith, Lewis 2022, "Train Short, Test Long"), on (B, H, N, D).

Head h adds ``-m_h * (i - j)`` to the logit of query position i and key position j (after the usual
``Q K^T / sqrt(D)``: ALiBi does not change the scale) and uses no position embedding. The slopes m_h are the
paper's geometric sequence: for H a power of two, m_h = 2^(-8 h / H), h = 1..H; otherwise the sequence of the
closest smaller power of two c, followed by every other slope of the sequence for 2c, up to H slopes (the
official code's rule).

Causal attention sees only j <= i, so the bias is -m_h (i - j) <= 0. For bidirectional attention the paper
gives no rule; here the bias is symmetric, ``-m_h |i - j|`` (a stated choice, as in encoder ports of ALiBi).

:func:`alibi_attention` runs through SDPA with the bias as a float mask, built per chunk of queries: the bias of
a chunk of c queries is (H, c, M) floats (B x H x c x M with a key-padding mask), so the extra memory is bounded
by ``ALIBI_CHUNK_ELEMENTS`` elements whatever N is, and the total work is O(H N M) like the logits themselves;
causal chunks (at most ``CAUSAL_CHUNK_ROWS`` rows) leave out the keys after their last row. SDPA's causal kernel
without a bias skips the future more finely: measured forward + backward, the ALiBi path is several times its
time (docs/notes/language.md), and about half the explicit softmax's at N = 2048.
:func:`alibi_attention_reference` builds the bias entry by entry from the formula and computes
``softmax(Q K^T * scale + bias, masked) V`` explicitly. Query and key positions are explicit (``q_positions``,
``k_positions``), so a decoding step biases its query by its real position.

In bf16 the bias is rounded to bf16 before SDPA adds it (a relative error of 2^-8 of m_h |i - j|).
"""
from __future__ import annotations

import math

import torch

from attnlab.ops.attention import build_attention_mask, check_attention_options, check_qkv, masked_softmax, sdpa
from attnlab.ops.recording import is_recording, record
from attnlab.utils.checks import check_positive_int, check_tensor, describe, fail

__all__ = ["alibi_slopes", "alibi_bias", "alibi_attention", "alibi_attention_reference", "ALIBI_CHUNK_ELEMENTS",
           "CAUSAL_CHUNK_ROWS"]

#: the fast path's bias of one chunk of queries holds at most this many elements (16 MiB in fp32)
ALIBI_CHUNK_ELEMENTS = 1 << 22
#: causal chunks hold at most this many query rows: each chunk skips the keys after its last row, so smaller
#: chunks skip more of the future (about N^2 / 2 + N c / 2 logits instead of N^2)
CAUSAL_CHUNK_ROWS = 256


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """The H slopes m_1..m_H of ALiBi (float64, decreasing): 2^(-8h/H) for H a power of two, else the rule of
    Press et al. for other H (the closest smaller power of two's slopes, then every other slope of twice it)."""
    check_positive_int("num_heads", num_heads)

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (h + 1) for h in range(n)]

    closest = 2 ** int(math.floor(math.log2(num_heads)))
    slopes = power_of_two(closest)
    if closest != num_heads:
        slopes += power_of_two(2 * closest)[0::2][: num_heads - closest]
    return torch.tensor(slopes, dtype=torch.float64)


def _positions(name: str, positions: object, length: int, device) -> torch.Tensor:
    """Integer positions (length,) (default 0..length-1)."""
    if positions is None:
        return torch.arange(length, device=device)
    positions = check_tensor(name, positions, ndim=1)
    if positions.dtype.is_floating_point or positions.dtype.is_complex or positions.dtype == torch.bool:
        fail(name, "an integer tensor of positions", describe(positions), TypeError)
    if positions.shape[0] != length:
        fail(name, f"{length} positions (one per {'query' if name.startswith('q') else 'key'})", describe(positions))
    return positions.to(device)


def _check_slopes(slopes: object, heads: int) -> torch.Tensor:
    slopes = check_tensor("slopes", slopes, ndim=1, floating=True)
    if slopes.shape[0] != heads or not torch.isfinite(slopes).all():
        fail("slopes", f"{heads} finite slopes (one per head)", describe(slopes))
    return slopes


def alibi_bias(slopes: torch.Tensor, q_positions: torch.Tensor, k_positions: torch.Tensor, *, causal: bool,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The (H, N, M) bias ``-m_h (i - j)`` (``causal``) or ``-m_h |i - j|`` for query positions (N,) and key
    positions (M,), formed in float64 and cast to ``dtype``."""
    d = (q_positions[:, None] - k_positions[None, :]).to(torch.float64)
    if not causal:
        d = d.abs()
    return (-slopes.to(torch.float64)[:, None, None] * d).to(dtype)


def alibi_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slopes: torch.Tensor, *, causal: bool = False,
                    key_padding_mask: torch.Tensor | None = None, scale: float | None = None, dropout_p: float = 0.0,
                    q_positions: torch.Tensor | None = None, k_positions: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax attention with ALiBi through SDPA (float bias, chunked over queries; module docstring).

    q (B, H, N, D), k (B, H, M, D), v (B, H, M, Dv), slopes (H,); ``causal``: query row i sees key columns
    j <= i (top-left aligned, as SDPA); ``key_padding_mask`` (B, M) bool, True = real key; positions default
    to 0..N-1 and 0..M-1. Rows with no visible key give zeros. Inside ``attnlab.ops.record_attention`` it takes
    the reference path and records the probabilities. Returns (B, H, N, Dv).
    """
    check_qkv(q, k, v)
    check_attention_options(q, k.shape[2], key_padding_mask, scale)
    slopes = _check_slopes(slopes, q.shape[1])
    if not (0.0 <= dropout_p < 1.0):
        fail("dropout_p", "a float in [0, 1)", describe(dropout_p))
    n, m = q.shape[2], k.shape[2]
    qp, kp = _positions("q_positions", q_positions, n, q.device), _positions("k_positions", k_positions, m, q.device)
    if is_recording():
        out, probs, logits = alibi_attention_reference(q, k, v, slopes, causal=causal, scale=scale,
                                                       key_padding_mask=key_padding_mask, q_positions=qp,
                                                       k_positions=kp, return_probs=True)
        record(probs, logits)
        return out if dropout_p == 0.0 else torch.matmul(torch.nn.functional.dropout(probs, dropout_p), v)
    rows = q.shape[0] if key_padding_mask is not None else 1
    chunk = max(1, ALIBI_CHUNK_ELEMENTS // (rows * q.shape[1] * m))
    if causal:
        chunk = min(chunk, CAUSAL_CHUNK_ROWS)
    outs = []
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        # causal rows below ``stop`` see no key at or after it: those keys are not computed at all
        width = min(m, stop) if causal else m
        ks, vs = k[:, :, :width], v[:, :, :width]
        kpm = None if key_padding_mask is None else key_padding_mask[:, :width]
        bias = alibi_bias(slopes, qp[start:stop], kp[:width], causal=causal, dtype=q.dtype)[None]
        row_ids, key_ids = torch.arange(start, stop, device=q.device), torch.arange(width, device=q.device)
        mask = build_attention_mask(stop - start, width, key_padding_mask=kpm, device=q.device,
                                    attn_mask=(row_ids[:, None] >= key_ids[None, :]) if causal else None)
        if mask is None:
            outs.append(sdpa(q[:, :, start:stop], ks, vs, attn_mask=bias, scale=scale, dropout_p=dropout_p))
            continue
        has_key = mask.any(dim=-1, keepdim=True)
        # rows with no visible key see every key (finite gradients) and are zeroed after, as attention() does
        bias = bias.masked_fill(~(mask | ~has_key), float("-inf"))
        out = sdpa(q[:, :, start:stop], ks, vs, attn_mask=bias, scale=scale, dropout_p=dropout_p)
        outs.append(out * has_key.to(out.dtype))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)


def alibi_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slopes: torch.Tensor, *,
                              causal: bool = False, key_padding_mask: torch.Tensor | None = None,
                              scale: float | None = None, q_positions: torch.Tensor | None = None,
                              k_positions: torch.Tensor | None = None, return_probs: bool = False):
    """The literal ALiBi attention: the bias written entry by entry (Python loops: small sizes only), then
    ``softmax(Q K^T * scale + bias, masked) V`` in the inputs' dtype (fp32 for bf16 / fp16 inputs).

    Same arguments as :func:`alibi_attention`; with ``return_probs`` also the (B, H, N, M) probabilities and the
    biased logits before masking.
    """
    check_qkv(q, k, v)
    scale = check_attention_options(q, k.shape[2], key_padding_mask, scale)
    slopes = _check_slopes(slopes, q.shape[1])
    n, m = q.shape[2], k.shape[2]
    qp = _positions("q_positions", q_positions, n, q.device).tolist()
    kp = _positions("k_positions", k_positions, m, q.device).tolist()
    out_dtype, work = q.dtype, (torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype)
    q, k, v = q.to(work), k.to(work), v.to(work)
    bias = torch.tensor([[[-float(s) * ((i - j) if causal else abs(i - j)) for j in kp] for i in qp]
                         for s in slopes.tolist()], dtype=work, device=q.device)
    logits = torch.matmul(q, k.transpose(-2, -1)) * scale + bias
    mask = build_attention_mask(n, m, causal=causal, key_padding_mask=key_padding_mask, device=q.device)
    probs = masked_softmax(logits, mask)
    out = torch.matmul(probs, v).to(out_dtype)
    return (out, probs.to(out_dtype), logits) if return_probs else out
