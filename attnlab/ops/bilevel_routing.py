"""Bi-level routing attention (BRA, P10 BiFormer): the gather fast path and its dense-masked reference.

Semantics (both functions compute exactly this):

* The (h, w) token grid is cut into ``n_win x n_win`` regions of ``ceil(h / n_win) x
  ceil(w / n_win)`` tokens (the last row / column of regions is cut short, or empty, when
  the grid is not a multiple of ``n_win``: the fast path pads inside, padded tokens are
  never attended and their outputs are dropped).
* Region-level routing: the region query / key is the mean of the region's real tokens'
  queries / keys over all heads concatenated (one routing shared by the heads, as in
  BiFormer); the region affinity is ``q_r k_r^T`` and every query region keeps the
  ``topk`` key regions of highest affinity (empty regions are never preferred to real
  ones). Routing is a hard, non-differentiable selection (BiFormer's default): no
  gradient flows through the choice of regions.
* Token-level attention: every query attends, with ordinary multi-head softmax
  attention, to all real tokens of its region's ``topk`` routed regions.

:func:`bilevel_routing_attention` gathers the routed regions' keys / values per query
region and runs one small dense attention per region (SDPA), so time and memory are
O(N * topk * N / n_win^2) and the N x N matrix is never formed.
:func:`bilevel_routing_attention_reference` builds the token-level N x N mask implied by
the routing and runs masked softmax attention over all tokens. Local context
enhancement (the depthwise convolution on V) lives in the mixer
(``attnlab.mixers.bilevel_routing``), not here.

Reference: Zhu et al., "BiFormer: Vision Transformer with Bi-Level Routing Attention", CVPR 2023.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnlab.utils.checks import check_grid, check_key_padding_mask, check_positive_int, check_tensor, describe, fail
from attnlab.utils.precision import lower_precision_op
from attnlab.ops.attention import attention, attention_reference, check_self_qkv
from attnlab.ops.recording import is_recording, record

__all__ = [
    "bilevel_routing_attention", "bilevel_routing_attention_reference", "route_regions", "region_ids", "gather_rows",
]


def _check(q, k, v, grid, n_win, topk, key_padding_mask, index):
    check_self_qkv(q, k, v)
    grid = check_grid("grid", grid, q.shape[2], (2,))
    check_positive_int("n_win", n_win)
    check_positive_int("topk", topk)
    if key_padding_mask is not None:
        check_key_padding_mask("key_padding_mask", key_padding_mask, q.shape[0], q.shape[2])
    if index is not None:
        check_tensor("index", index, ndim=3)
        want = (q.shape[0], n_win * n_win, min(topk, n_win * n_win))
        if tuple(index.shape) != want or index.dtype != torch.long:
            fail("index", f"a long tensor of shape (B, n_win^2, min(topk, n_win^2)) = {want}", describe(index))
    return grid


class _GatherRows(torch.autograd.Function):
    """``src.index_select(0, index)`` whose backward is one ``index_add_`` (autograd's default is a slow scatter)."""

    @staticmethod
    def forward(ctx, src, index):
        ctx.save_for_backward(index)
        ctx.rows = src.shape[0]
        return src.index_select(0, index)

    @staticmethod
    def backward(ctx, grad):
        (index,) = ctx.saved_tensors
        out = grad.new_zeros((ctx.rows, *grad.shape[1:]))
        return out.index_add_(0, index, grad.contiguous()), None


def gather_rows(src: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` (1-D long) of ``src`` (R, ...) -> (len(index), ...), differentiable in ``src``."""
    return _GatherRows.apply(src, index)


def region_ids(grid: tuple[int, int], n_win: int, device=None) -> torch.Tensor:
    """Region id (row-major over the ``n_win x n_win`` regions) of every token of the (h, w) grid, shape (N,)."""
    h, w = grid
    rh, rw = math.ceil(h / n_win), math.ceil(w / n_win)
    rows = torch.arange(h, device=device) // rh
    cols = torch.arange(w, device=device) // rw
    return (rows[:, None] * n_win + cols[None, :]).reshape(-1)


@torch.no_grad()
def route_regions(q_r: torch.Tensor, k_r: torch.Tensor, key_count: torch.Tensor, topk: int) -> torch.Tensor:
    """Top-k key regions per query region: (B, R, C) region queries/keys -> (B, R, min(topk, R)) indices.

    ``key_count`` (B, R) is the number of real tokens per region; empty key regions get
    affinity -inf so that real regions are always preferred. No gradient (hard routing).
    """
    logits = torch.matmul(q_r, k_r.transpose(-2, -1))
    logits = logits.masked_fill((key_count == 0)[:, None, :], float("-inf"))
    return torch.topk(logits, k=min(topk, logits.shape[-1]), dim=-1).indices


def _heads_concat(t: torch.Tensor) -> torch.Tensor:
    # (B, H, ..., D) -> (B, ..., H*D): the routing affinity uses all heads together.
    return t.movedim(1, -2).reshape(*t.shape[:1], *t.shape[2:-1], t.shape[1] * t.shape[-1])


@lower_precision_op
def bilevel_routing_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    grid: tuple[int, int],
    *,
    n_win: int,
    topk: int,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    index: torch.Tensor | None = None,
    return_index: bool = False,
):
    """Dense-masked bi-level routing attention (see module doc); forms the N x N mask.

    Args:
        q, k: (B, H, N, D); v: (B, H, N, Dv); ``grid`` = (h, w) with h * w = N.
        n_win: regions per side; topk: routed key regions per query region.
        key_padding_mask: (B, N) bool, True = real token (padded tokens are neither
            routed on nor attended).
        scale: logit scale, default D^-1/2.
        index: optional (B, n_win^2, topk') routing to use instead of computing it.
        return_index: also return the routing indices.
    Returns:
        (B, H, N, Dv) (and the (B, n_win^2, topk') routing when asked).
    """
    grid = _check(q, k, v, grid, n_win, topk, key_padding_mask, index)
    b, _, n, _ = q.shape
    rid = region_ids(grid, n_win, q.device)
    onehot = F.one_hot(rid, n_win * n_win).to(q.dtype)  # (N, R)
    valid = torch.ones(b, n, dtype=q.dtype, device=q.device) if key_padding_mask is None else key_padding_mask.to(q.dtype)
    count = valid @ onehot  # (B, R)
    if index is None:
        qc, kc = _heads_concat(q.detach()) * valid[..., None], _heads_concat(k.detach()) * valid[..., None]
        denom = count.clamp(min=1)[..., None]
        q_r = torch.einsum("bnc,nr->brc", qc, onehot) / denom
        k_r = torch.einsum("bnc,nr->brc", kc, onehot) / denom
        index = route_regions(q_r, k_r, count, topk)
    selected = torch.zeros(b, n_win * n_win, n_win * n_win, dtype=torch.bool, device=q.device)
    selected.scatter_(2, index, True)
    allowed = selected[:, rid][:, :, rid]  # (B, N, N): query token i may see key token j
    out, probs = attention_reference(
        q, k, v, key_padding_mask=key_padding_mask, attn_mask=allowed[:, None], scale=scale, return_probs=True
    )
    if is_recording():
        record(probs)
    return (out, index) if return_index else out


@lower_precision_op
def bilevel_routing_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    grid: tuple[int, int],
    *,
    n_win: int,
    topk: int,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    index: torch.Tensor | None = None,
    return_index: bool = False,
):
    """Bi-level routing attention by gathering the routed regions (never forms N x N).

    Same arguments and result as :func:`bilevel_routing_attention_reference` (tested
    against it). Inside ``record_attention`` it takes the reference path so that the
    (B, H, N, N) probabilities can be recorded.
    """
    if is_recording():
        return bilevel_routing_attention_reference(
            q, k, v, grid, n_win=n_win, topk=topk, key_padding_mask=key_padding_mask, scale=scale, index=index,
            return_index=return_index,
        )
    h, w = _check(q, k, v, grid, n_win, topk, key_padding_mask, index)
    b, nh, n, d = q.shape
    dv = v.shape[-1]
    s = n_win
    rh, rw = math.ceil(h / s), math.ceil(w / s)
    ph, pw = rh * s - h, rw * s - w
    real = torch.ones(b, h, w, dtype=torch.bool, device=q.device)
    if key_padding_mask is not None:
        real = key_padding_mask.reshape(b, h, w)
    padded = ph > 0 or pw > 0

    def regions(t: torch.Tensor) -> torch.Tensor:
        # (B, H, N, D) -> (B, R, H, rh*rw, D), zero-padding the grid to a multiple of n_win
        t = t.reshape(b, nh, h, w, t.shape[-1])
        if padded:
            t = F.pad(t, (0, 0, 0, pw, 0, ph))
        t = t.reshape(b, nh, s, rh, s, rw, t.shape[-1]).permute(0, 2, 4, 1, 3, 5, 6)
        return t.reshape(b, s * s, nh, rh * rw, t.shape[-1])

    valid = F.pad(real, (0, pw, 0, ph)) if padded else real
    valid = valid.reshape(b, s, rh, s, rw).permute(0, 1, 3, 2, 4).reshape(b, s * s, rh * rw)
    q_g, k_g, v_g = regions(q), regions(k), regions(v)
    count = valid.sum(-1)
    if index is None:
        with torch.no_grad():
            vf = valid.to(q.dtype)[:, :, None, :, None]
            denom = count.clamp(min=1).to(q.dtype)[:, :, None]
            q_r = (q_g.detach() * vf).sum(3).reshape(b, s * s, nh * d) / denom
            k_r = (k_g.detach() * vf).sum(3).reshape(b, s * s, nh * d) / denom
            index = route_regions(q_r, k_r, count, topk)
    kk = index.shape[-1]
    flat = (index + torch.arange(b, device=q.device)[:, None, None] * (s * s)).reshape(-1)
    w2 = rh * rw

    def gather(t: torch.Tensor, dim: int) -> torch.Tensor:
        # routed regions' tokens per query region: (B*R, H, topk*w2, dim)
        sel = gather_rows(t.reshape(b * s * s, nh, w2, dim), flat)
        return sel.reshape(b * s * s, kk, nh, w2, dim).transpose(1, 2).reshape(b * s * s, nh, kk * w2, dim)

    k_sel, v_sel = gather(k_g, d), gather(v_g, dv)
    kpm = None
    if padded or key_padding_mask is not None:
        kpm = valid.reshape(b * s * s, w2).index_select(0, flat).reshape(b * s * s, kk * w2)
    out = attention(q_g.reshape(b * s * s, nh, w2, d), k_sel, v_sel, key_padding_mask=kpm, scale=scale)
    out = out.reshape(b, s, s, nh, rh, rw, dv).permute(0, 3, 1, 4, 2, 5, 6).reshape(b, nh, s * rh, s * rw, dv)
    if padded:
        out = out[:, :, :h, :w]
    out = out.reshape(b, nh, n, dv)
    return (out, index) if return_index else out
