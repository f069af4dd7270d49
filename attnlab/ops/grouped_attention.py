"""Attention within groups of tokens and between matching groups (P27, FIT: Far-reaching Interleaved Transformers).

FIT splits the N data tokens into t groups of n (contiguous spans of a sequence, or windows of an image's
patch grid brought into group order by :func:`window_order`) and gives every group m latent tokens. Its
block is built from three attention patterns, each one softmax attention with a block structure:

* :func:`group_attention`: local self-attention, token i sees the tokens of its own group (``causal``:
  only those up to itself), cost O(N n);
* :func:`group_cross_attention`: queries grouped t x m attend to keys grouped t x n of the *same* group
  (the latents reading their group, or the tokens reading their group's latents), or, with ``shift=1``,
  of the group before (FIT's autoregressive variant: group j reads the latents of group j - 1, group 0
  reads nothing and gets zeros);
* global self-attention over all t m latents, dense, or block-causal (:func:`group_causal_mask`: latent
  of group j sees the latents of groups <= j, all of its own group) in the autoregressive variant.

The fast paths reshape into (B, H, t, n, D) and call SDPA per group, never building an N x N matrix;
the references (:func:`group_attention_reference`, :func:`group_cross_attention_reference`) are dense
softmax attention over the whole sequence with the explicit mask built from each token's group index.
With t groups of n = N / t tokens the local cost is N^2 / t and the global (t m)^2: t ~ N^(2/3) gives
O(N^(4/3)) overall.
"""
from __future__ import annotations

import torch

from attnlab.ops.attention import attention, attention_reference, check_attention_options, check_qkv
from attnlab.utils.checks import check_positive_int, describe, fail

__all__ = ["group_attention", "group_attention_reference", "group_cross_attention", "group_cross_attention_reference",
           "group_causal_mask", "group_index", "window_order"]


def _check_groups(arg: str, n: int, num_groups: object) -> int:
    check_positive_int("num_groups", num_groups)
    if n % num_groups:
        fail(arg, f"a length divisible by num_groups={num_groups}", n)
    return n // num_groups


def group_index(n: int, num_groups: int) -> torch.Tensor:
    """(n,) long: the group of each of ``n`` tokens split into ``num_groups`` contiguous groups of ``n / num_groups``."""
    size = _check_groups("n", n, num_groups)
    return torch.arange(n) // size


def group_causal_mask(num_groups: int, group_size: int, *, device=None) -> torch.Tensor:
    """(t m, t m) bool: latent of group j may attend the latents of groups <= j (block-causal, True = may attend)."""
    check_positive_int("group_size", group_size)
    g = group_index(num_groups * group_size, num_groups).to(device)
    return g[:, None] >= g[None, :]


def window_order(grid: tuple[int, int], window: tuple[int, int]) -> torch.Tensor:
    """Permutation of a raster (H, W) grid's tokens into window order: windows of ``window`` in raster order,
    the tokens of each window in raster order. ``x[:, window_order(...)]`` groups tokens by window;
    ``argsort`` of it restores raster order. ValueError unless ``window`` divides ``grid``."""
    (h, w), (wh, ww) = grid, window
    for name, side, win in (("grid", h, wh), ("grid", w, ww)):
        check_positive_int("window", win)
        if side % win:
            fail(name, f"sides divisible by the window {tuple(window)}", tuple(grid))
    idx = torch.arange(h * w).reshape(h // wh, wh, w // ww, ww)
    return idx.permute(0, 2, 1, 3).reshape(-1)


def _group_kpm(key_padding_mask: torch.Tensor | None, b: int, t: int, n: int) -> torch.Tensor | None:
    return None if key_padding_mask is None else key_padding_mask.reshape(b * t, n)


def group_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, num_groups: int, causal: bool = False,
                    key_padding_mask: torch.Tensor | None = None, scale: float | None = None) -> torch.Tensor:
    """Softmax self-attention within contiguous groups: q, k (B, H, N, D), v (B, H, N, Dv) -> (B, H, N, Dv).

    Token i attends to the tokens j of its group (``causal``: j <= i); ``key_padding_mask`` (B, N), True =
    real key. A query with no visible key gets zeros. N must be divisible by ``num_groups``.
    """
    check_qkv(q, k, v)
    if k.shape[2] != q.shape[2]:
        fail("k", f"as many tokens as q ({q.shape[2]}): self-attention within groups", describe(k))
    check_attention_options(q, k.shape[2], key_padding_mask, scale)
    b, h, n_tok, _ = q.shape
    n = _check_groups("q", n_tok, num_groups)
    t = num_groups

    def grouped(x):
        return x.reshape(b, h, t, n, x.shape[-1]).transpose(1, 2).reshape(b * t, h, n, x.shape[-1])

    out = attention(grouped(q), grouped(k), grouped(v), causal=causal, scale=scale,
                    key_padding_mask=_group_kpm(key_padding_mask, b, t, n))
    return out.reshape(b, t, h, n, -1).transpose(1, 2).reshape(b, h, n_tok, -1)


def group_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, num_groups: int,
                              causal: bool = False, key_padding_mask: torch.Tensor | None = None,
                              scale: float | None = None) -> torch.Tensor:
    """:func:`group_attention` as dense softmax over all N keys with the explicit group mask."""
    check_qkv(q, k, v)
    g = group_index(q.shape[2], num_groups).to(q.device)
    return attention_reference(q, k, v, causal=causal, key_padding_mask=key_padding_mask, scale=scale,
                               attn_mask=g[:, None] == g[None, :])


def _check_shift(shift: object) -> int:
    if isinstance(shift, bool) or shift not in (0, 1):
        fail("shift", "0 (same group) or 1 (the group before: FIT's autoregressive variant)", describe(shift))
    return shift


def group_cross_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, num_groups: int, shift: int = 0,
                          key_padding_mask: torch.Tensor | None = None, scale: float | None = None) -> torch.Tensor:
    """Queries of group j attend the keys of group j - ``shift``: q (B, H, t m, D), k (B, H, t n, D), v (B, H, t n, Dv).

    Both sequences are split into ``num_groups`` contiguous groups. ``shift=1``: group 0's queries get
    zeros. ``key_padding_mask`` (B, t n), True = real key; a query with no visible key gets zeros.
    Returns (B, H, t m, Dv).
    """
    check_qkv(q, k, v)
    check_attention_options(q, k.shape[2], key_padding_mask, scale)
    shift = _check_shift(shift)
    b, h = q.shape[:2]
    t = num_groups
    m, n = _check_groups("q", q.shape[2], t), _check_groups("k", k.shape[2], t)
    qg = q.reshape(b, h, t, m, q.shape[-1]).transpose(1, 2)  # (B, t, H, m, D)
    kg = k.reshape(b, h, t, n, k.shape[-1]).transpose(1, 2)
    vg = v.reshape(b, h, t, n, v.shape[-1]).transpose(1, 2)
    kpm = None if key_padding_mask is None else key_padding_mask.reshape(b, t, n)
    if shift:
        qg = qg[:, 1:]
        kg, vg = kg[:, :-1], vg[:, :-1]
        kpm = None if kpm is None else kpm[:, :-1]
    tt = qg.shape[1]
    if tt == 0:
        return q.new_zeros(b, h, t * m, v.shape[-1])
    out = attention(qg.reshape(b * tt, h, m, -1), kg.reshape(b * tt, h, n, -1), vg.reshape(b * tt, h, n, -1),
                    scale=scale, key_padding_mask=None if kpm is None else kpm.reshape(b * tt, n))
    out = out.reshape(b, tt, h, m, -1)
    if shift:
        out = torch.cat([out.new_zeros(b, 1, h, m, out.shape[-1]), out], dim=1)
    return out.transpose(1, 2).reshape(b, h, t * m, -1)


def group_cross_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, num_groups: int,
                                    shift: int = 0, key_padding_mask: torch.Tensor | None = None,
                                    scale: float | None = None) -> torch.Tensor:
    """:func:`group_cross_attention` as dense softmax over all t n keys with the explicit group mask."""
    check_qkv(q, k, v)
    shift = _check_shift(shift)
    gq = group_index(q.shape[2], num_groups).to(q.device)
    gk = group_index(k.shape[2], num_groups).to(q.device)
    return attention_reference(q, k, v, key_padding_mask=key_padding_mask, scale=scale,
                               attn_mask=gq[:, None] - shift == gk[None, :])
