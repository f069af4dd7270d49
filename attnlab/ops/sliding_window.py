"""Sliding-window attention (1D, causal or bidirectional), trainable on CPU in O(N w).

Query ``i`` sees the keys ``j`` with ``0 <= i - j < window`` (causal: the last ``window``
tokens, itself included, as in Mistral / the local layers of P12's hybrids) or
``|i - j| < window`` (bidirectional: ``2 window - 1`` keys). Unlike neighborhood attention
(:mod:`attnlab.ops.neighborhood`) the window is *cut* at the sequence ends, not shifted
inward, so the first queries see fewer keys.

:func:`sliding_window_attention` runs on the tiled core of the neighborhood op (query
tiles against strided key tiles, SDPA per tile with a per-tile mask; never the N x N
matrix); :func:`sliding_window_attention_reference` is SDPA-free dense softmax with the
explicit (N, N) mask.
"""
from __future__ import annotations

import torch

from attnlab.utils.checks import check_positive_int, describe, fail
from attnlab.utils.precision import fp32_op
from attnlab.ops.neighborhood import (
    AxisWindow,
    grid_mask_and_rel,
    check_backend,
    check_local_qkv,
    default_tile,
    dense_local_attention,
    masked_dense_attention,
    plan_axis,
    tiled_local_attention,
    use_dense,
)
from attnlab.ops.recording import is_recording, record

__all__ = ["sliding_window_attention", "sliding_window_attention_reference", "sliding_window_mask", "sw_window"]


def sw_window(window: int, causal: bool) -> AxisWindow:
    """The :class:`AxisWindow` of a sliding window of ``window`` (see the module docstring)."""
    check_positive_int("window", window)
    if not isinstance(causal, bool):
        fail("causal", "a bool", describe(causal), TypeError)
    return AxisWindow("sw", left=window - 1, right=0 if causal else window - 1)


def sliding_window_mask(n: int, window: int, causal: bool = False) -> torch.Tensor:
    """(N, N) bool mask of the sliding window (True = may attend)."""
    return grid_mask_and_rel((n,), [sw_window(window, causal)])[0]


@fp32_op
def sliding_window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: int,
    *,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    tile: int | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Sliding-window softmax attention: O(N w) time and memory, forward and backward.

    Args:
        q, k, v: (B, H, N, D) (v may have its own Dv).
        window: w; causal keys ``i - w < j <= i``, bidirectional ``|i - j| < w``.
        causal: see above.
        key_padding_mask: (B, N) bool, True = real key; a query with no real key in its
            window gets zeros.
        scale: logit scale (default D^-1/2).
        tile: query tile of the tiled path (default 64 for w > 96, smaller for small windows).
        backend: ``"tiled"``, ``"dense"`` (one SDPA call with the (N, N) mask, for small N)
            or ``"auto"`` (dense up to ``DENSE_MAX_N`` tokens unless a tile is given).
    Returns:
        (B, H, N, Dv), equal to :func:`sliding_window_attention_reference`.
    """
    check_local_qkv(q, k, v, key_padding_mask, scale)
    w = sw_window(window, causal)
    check_backend(backend, tile)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    if is_recording():
        out, probs = sliding_window_attention_reference(
            q, k, v, window, causal=causal, key_padding_mask=key_padding_mask, scale=scale, return_probs=True
        )
        record(probs)
        return out
    if use_dense(backend, q.shape[2], tile):
        return dense_local_attention(q, k, v, (q.shape[2],), (w,), scale=scale, key_padding_mask=key_padding_mask)
    if tile is not None:
        check_positive_int("tile", tile)
    plan = plan_axis(q.shape[2], w, tile if tile is not None else default_tile(w, 1))
    return tiled_local_attention(q, k, v, [plan], scale=scale, key_padding_mask=key_padding_mask)


@fp32_op
def sliding_window_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: int,
    *,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    return_probs: bool = False,
):
    """Dense reference: ``softmax(Q K^T * scale, sliding-window mask) V``, O(N^2).

    Same arguments as :func:`sliding_window_attention`; rows with no visible key give
    zeros; ``return_probs`` also returns the (B, H, N, N) probabilities.
    """
    check_local_qkv(q, k, v, key_padding_mask, scale)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    mask = sliding_window_mask(q.shape[2], window, causal).to(q.device)
    return masked_dense_attention(q, k, v, mask, key_padding_mask=key_padding_mask, scale=scale, return_probs=return_probs)
