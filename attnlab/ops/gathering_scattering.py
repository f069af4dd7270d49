"""Isomer's Semantic Gathering-Scattering attention (P30): foreground and background queries attend to their own side's
few merged tokens, and the results are scattered back to their positions.

Given a foreground / background split of the N positions (``fg``, ``bg``: disjoint (B, N) bool
masks; a position in neither is left out), K soft tokens per side (``soft_token_merge``: each token a
softmax-weighted sum over positions of the side-weighted features), every foreground query attends
to the foreground tokens only, every background query to the background tokens only, and each
result goes back to the query's position (zeros where a position is on neither side). Cost
O(N K D) instead of O(N^2 D).

- :func:`soft_token_merge` / :func:`soft_token_merge_reference` — the gathering;
- :func:`gathering_scattering_attention` — one masked softmax attention over the 2K tokens of both
  sides (a query sees exactly its side's K tokens), through :func:`attnlab.ops.attention.attention`;
- :func:`gathering_scattering_attention_reference` — the literal algorithm of P30: per example,
  gather each side's queries, attend, scatter them back (the step DLUT-yyc/Isomer's ``sgst.py``
  computes and then discards: ``feature.clone().masked_scatter_(...)`` writes into a temporary).
"""
from __future__ import annotations

import torch

from attnlab.utils.checks import check_key_padding_mask, check_tensor, describe, fail
from attnlab.ops.attention import attention, attention_reference, check_qkv

__all__ = ["soft_token_merge", "soft_token_merge_reference", "gathering_scattering_attention",
           "gathering_scattering_attention_reference"]


def _check_merge(x, logits, weight, key_padding_mask):
    check_tensor("x", x, ndim=3, floating=True)
    check_tensor("logits", logits, ndim=3, floating=True)
    if logits.shape[:2] != x.shape[:2]:
        fail("logits", f"shape (B, N, K) with (B, N) = {tuple(x.shape[:2])}", describe(logits))
    if weight is not None:
        check_tensor("weight", weight, ndim=2, floating=True)
        if weight.shape != x.shape[:2]:
            fail("weight", f"shape (B, N) = {tuple(x.shape[:2])}", describe(weight))
    if key_padding_mask is not None:
        check_key_padding_mask("key_padding_mask", key_padding_mask, x.shape[0], x.shape[1])


def soft_token_merge(x: torch.Tensor, logits: torch.Tensor, weight: torch.Tensor | None = None, *,
                     key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """K soft tokens: ``t_k = sum_n softmax_n(logits[:, :, k])_n * weight_n * x_n``.

    Args:
        x: (B, N, C) features; logits: (B, N, K) merging logits; weight: (B, N) per-position weight
            (P30: the heat map for the foreground tokens, one minus it for the background) or None (ones);
        key_padding_mask: (B, N) bool, True = real position (padded positions are not merged).
    Returns:
        (B, K, C) tokens.
    """
    _check_merge(x, logits, weight, key_padding_mask)
    if key_padding_mask is not None:  # a fully padded sequence: no token content (zeros), never NaN
        logits = logits.masked_fill(~_keep(key_padding_mask)[:, :, None], float("-inf"))
    a = torch.softmax(logits, dim=1)
    if key_padding_mask is not None:
        a = a * key_padding_mask.any(-1)[:, None, None]
    xw = x if weight is None else x * weight[..., None]
    return a.transpose(1, 2) @ xw


def soft_token_merge_reference(x: torch.Tensor, logits: torch.Tensor, weight: torch.Tensor | None = None, *,
                               key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The same, token by token: normalised exponentials of one logit column, a weighted sum over positions."""
    _check_merge(x, logits, weight, key_padding_mask)
    keep = torch.ones(x.shape[:2], dtype=torch.bool) if key_padding_mask is None else _keep(key_padding_mask)
    w = torch.ones(x.shape[:2], dtype=x.dtype) if weight is None else weight
    tokens = []
    for k in range(logits.shape[-1]):
        col = logits[:, :, k].masked_fill(~keep, float("-inf"))
        e = torch.exp(col - col.amax(1, keepdim=True))
        tokens.append(((e / e.sum(1, keepdim=True) * w)[..., None] * x).sum(1))
    out = torch.stack(tokens, dim=1)
    return out if key_padding_mask is None else out * key_padding_mask.any(-1)[:, None, None]


def _keep(key_padding_mask: torch.Tensor) -> torch.Tensor:
    """The positions a softmax may weigh: the real ones, or all of them in a fully padded row (zeroed after)."""
    return key_padding_mask | ~key_padding_mask.any(-1, keepdim=True)


def _check_split(q, k_fg, v_fg, k_bg, v_bg, fg, bg):
    check_qkv(q, k_fg, v_fg)
    check_qkv(q, k_bg, v_bg)
    b, _, n, _ = q.shape
    for arg, m in (("fg", fg), ("bg", bg)):
        check_key_padding_mask(arg, m, b, n)
    if (fg & bg).any():
        fail("bg", "a mask disjoint from fg (a position is foreground, background or neither)",
             f"{int((fg & bg).sum())} positions on both sides")


def gathering_scattering_attention(q: torch.Tensor, k_fg: torch.Tensor, v_fg: torch.Tensor, k_bg: torch.Tensor,
                                   v_bg: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor, *,
                                   scale: float | None = None) -> torch.Tensor:
    """Each query attends to its own side's tokens; zeros for positions on neither side.

    Args:
        q: (B, H, N, D) queries; k_fg, v_fg, k_bg, v_bg: (B, H, K, D) each side's token keys and values
            (the two sides may hold different numbers of tokens);
        fg, bg: (B, N) bool, disjoint: the positions of the foreground / background queries;
        scale: logit scale (default D^-1/2).
    Returns:
        (B, H, N, D). Runs as one softmax attention over the concatenated tokens with a mask that lets a
        foreground query see the foreground tokens only (and likewise for the background).
    """
    _check_split(q, k_fg, v_fg, k_bg, v_bg, fg, bg)
    kf, kb = k_fg.shape[2], k_bg.shape[2]
    side = torch.cat([torch.ones(kf, dtype=torch.bool, device=q.device),
                      torch.zeros(kb, dtype=torch.bool, device=q.device)])
    mask = (fg[:, :, None] & side) | (bg[:, :, None] & ~side)  # (B, N, Kf + Kb)
    k, v = torch.cat([k_fg, k_bg], dim=2), torch.cat([v_fg, v_bg], dim=2)
    return attention(q, k, v, attn_mask=mask[:, None], scale=scale)


def gathering_scattering_attention_reference(q: torch.Tensor, k_fg: torch.Tensor, v_fg: torch.Tensor,
                                             k_bg: torch.Tensor, v_bg: torch.Tensor, fg: torch.Tensor,
                                             bg: torch.Tensor, *, scale: float | None = None) -> torch.Tensor:
    """The literal gather / attend / scatter, example by example (P30's algorithm, with the scatter kept)."""
    _check_split(q, k_fg, v_fg, k_bg, v_bg, fg, bg)
    rows = []
    for i in range(q.shape[0]):
        out = torch.zeros_like(q[i])
        for sel, k, v in ((fg[i], k_fg[i], v_fg[i]), (bg[i], k_bg[i], v_bg[i])):
            idx = sel.nonzero().flatten()
            if idx.numel():
                gathered = q[i][:, idx]  # (H, n_side, D)
                attended = attention_reference(gathered[None], k[None], v[None], scale=scale)[0]
                out = out.index_put((torch.arange(q.shape[1])[:, None], idx[None, :]), attended)
        rows.append(out)
    return torch.stack(rows)
