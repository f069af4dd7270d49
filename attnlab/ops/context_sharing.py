"""The global context of Isomer's Context-Sharing Transformer (P30): one softmax over positions, shared by every query.

CST replaces query-key attention by a single attention distribution per frame: ``w = softmax_j(l_j)``
over the N positions, from per-position logits ``l`` (a 1x1 convolution of the features in P30,
GCNet's global context block), and one context ``c = sum_j w_j x_j`` that every position receives.
This is softmax attention whose logits do not depend on the query (``A_ij = softmax_j(l_j)``),
which is what P30 found the low-level stages of a vanilla fusion transformer learn; computing it
costs O(N D) instead of O(N^2 D).

:func:`context_sharing` computes ``c`` once and returns it broadcast to every query (a view);
:func:`context_sharing_reference` builds the N x N attention matrix with query-independent rows and
applies it, the obvious form it is tested against.
"""
from __future__ import annotations

import torch

from attnlab.utils.checks import check_key_padding_mask, check_tensor, describe, fail
from attnlab.ops.recording import is_recording, record

__all__ = ["context_sharing", "context_sharing_reference", "context_weights"]


def _check(x: object, logits: object, key_padding_mask: object) -> None:
    check_tensor("x", x, ndim=4, floating=True)
    check_tensor("logits", logits, ndim=3, floating=True)
    if tuple(logits.shape) != tuple(x.shape[:3]):
        fail("logits", f"shape (B, H, N) = {tuple(x.shape[:3])}", describe(logits))
    if logits.dtype != x.dtype:
        fail("logits", f"dtype {x.dtype} (as x)", describe(logits), TypeError)
    if key_padding_mask is not None:
        check_key_padding_mask("key_padding_mask", key_padding_mask, x.shape[0], x.shape[2])


def context_weights(logits: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax over positions of (B, H, N) logits, padded positions (False in the (B, N) mask) at weight 0; a fully
    padded sequence gets all-zero weights (not the NaN of a softmax over nothing, forward or backward)."""
    if key_padding_mask is not None:
        logits = logits.masked_fill(~_keep(key_padding_mask)[:, None, :], float("-inf"))
    if logits.dtype in (torch.float16, torch.bfloat16):  # softmax statistics in fp32
        w = torch.softmax(logits.float(), dim=-1).to(logits.dtype)
    else:
        w = torch.softmax(logits, dim=-1)
    return w if key_padding_mask is None else w * key_padding_mask.any(-1)[:, None, None]


def _keep(key_padding_mask: torch.Tensor) -> torch.Tensor:
    """The positions a softmax may weigh: the real ones, or all of them in a fully padded row (weighted 0 after)."""
    return key_padding_mask | ~key_padding_mask.any(-1, keepdim=True)


def context_sharing(x: torch.Tensor, logits: torch.Tensor, *,
                    key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """CST's shared context for every query.

    Args:
        x: (B, H, N, D) features (the values; H groups share nothing).
        logits: (B, H, N) per-position attention logits.
        key_padding_mask: (B, N) bool, True = real position (padded positions get no weight).
    Returns:
        (B, H, N, D): ``sum_j softmax(logits)_j x_j`` broadcast over the N queries (an expanded view).
        Inside ``record_attention`` the (query-independent) probabilities are recorded as a (B, H, N, N) view.
    """
    _check(x, logits, key_padding_mask)
    w = context_weights(logits, key_padding_mask)
    ctx = torch.einsum("bhn,bhnd->bhd", w, x)
    b, h, n, d = x.shape
    if is_recording():
        record(w[:, :, None, :].expand(b, h, n, n))
    return ctx[:, :, None, :].expand(b, h, n, d)


def context_sharing_reference(x: torch.Tensor, logits: torch.Tensor, *,
                              key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The same as an explicit N x N attention: ``A_ij = exp(l_j) / sum_m exp(l_m)`` for every query i, then ``A x``."""
    _check(x, logits, key_padding_mask)
    n = x.shape[2]
    scores = logits[:, :, None, :].repeat(1, 1, n, 1)  # (B, H, N, N): row i = the logits, whatever i is
    if key_padding_mask is not None:
        scores = scores.masked_fill(~_keep(key_padding_mask)[:, None, None, :], float("-inf"))
    probs = torch.exp(scores - scores.amax(-1, keepdim=True))
    probs = probs / probs.sum(-1, keepdim=True)
    if key_padding_mask is not None:  # a fully padded sequence: no context
        probs = probs * key_padding_mask.any(-1)[:, None, None, None]
    return probs @ x
