"""The ``fit`` and ``fit_local`` mixers: FIT's interleaved local / global attention as token mixers (P27).

FIT (Chen & Li, 2023) splits the tokens into groups and gives each group a few latent tokens. One FIT
block: local self-attention within every group; the latents read their group by cross-attention; global
self-attention (transformer layers) over all latents; the tokens read their group's latents back. The
cost is O(N n) locally (n tokens per group) plus O((t m)^2) globally (t groups of m latents): with t ~
N^(2/3) the block is O(N^(4/3)), and it never forms an N x N matrix.

* ``fit_local``: the local layer alone (softmax attention within groups; the local-only ablation);
* ``fit``: the whole block as one mixer, x (B, N, C) -> (B, N, C): ``local(x) + read_back(latents)``, where
  the latents start each call from learned vectors (shared by all groups; the backbone's position
  embedding tells groups apart), read their group, and run ``global_layers`` transformer layers. The
  paper's network, with latents that persist across blocks and its layout strings, is
  :class:`attnlab.models.fit.FIT`.

Groups: contiguous spans of ``group_size`` tokens (N padded inside to a multiple, padding masked); on a
2-D patch grid (``grid=(H, W)``, not causal) square windows of ``window`` (default: side
sqrt(group_size)), which must divide the grid. ``causal=True`` is FIT's autoregressive variant: causal
local attention in contiguous raster groups, block-causal global attention, and group j's tokens read
the latents of group j - 1 (the latents shifted by one group), so token i sees only tokens <= i.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from attnlab.layers import Mlp
from attnlab.mixers.base import Capabilities, TokenMixer, check_num_heads
from attnlab.mixers.registry import register
from attnlab.ops.attention import attention
from attnlab.ops.grouped_attention import group_attention, group_causal_mask, group_cross_attention, window_order
from attnlab.utils.checks import check_positive_int, describe, fail

__all__ = ["FITLocalAttention", "FITMixer", "GroupLayout", "plan_groups", "GroupCrossAttention", "LatentLayer",
           "check_window"]


def check_window(window: object) -> tuple[int, int] | None:
    """``window`` as (h, w) of positive ints (an int: a square), or None."""
    if window is None:
        return None
    win = (window, window) if isinstance(window, int) and not isinstance(window, bool) else window
    if not (isinstance(win, (tuple, list)) and len(win) == 2
            and all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in win)):
        fail("window", "None, a positive int or (h, w) of positive ints", describe(window), TypeError)
    return tuple(win)


@dataclass(frozen=True)
class GroupLayout:
    """How N tokens become ``num_groups`` groups of ``size``: an optional permutation (grid windows), then
    ``pad`` masked tokens at the end. :meth:`to_groups` / :meth:`from_groups` map (B, N, C) both ways."""

    n: int
    num_groups: int
    size: int
    perm: torch.Tensor | None = None
    pad: int = 0

    def to_groups(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, ...) -> (B, num_groups * size, ...) in group order (padding zeros at the end)."""
        if self.perm is not None:
            x = x[:, self.perm.to(x.device)]
        if self.pad:
            x = torch.cat([x, x.new_zeros(x.shape[0], self.pad, *x.shape[2:])], dim=1)
        return x

    def from_groups(self, y: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_groups`: (B, num_groups * size, ...) -> (B, N, ...)."""
        y = y[:, : self.n]
        if self.perm is not None:
            y = y[:, torch.argsort(self.perm).to(y.device)]
        return y

    def key_mask(self, key_padding_mask: torch.Tensor | None, batch: int, device) -> torch.Tensor | None:
        """The (B, num_groups * size) key mask in group order (padding False), or None when nothing is masked."""
        if key_padding_mask is None and not self.pad:
            return None
        kpm = key_padding_mask if key_padding_mask is not None else torch.ones(batch, self.n, dtype=torch.bool,
                                                                               device=device)
        return self.to_groups(kpm)


def plan_groups(n: int, grid: tuple[int, ...] | None, causal: bool, group_size: int,
                window: tuple[int, int] | None) -> GroupLayout:
    """The :class:`GroupLayout` of a mixer call (module docstring): windows on a 2-D grid unless causal, else
    contiguous groups of ``group_size`` (N padded to a multiple)."""
    if grid is not None and len(grid) == 2 and not causal:
        if window is None:
            side = math.isqrt(group_size)
            if side * side != group_size:
                fail("window", f"(h, w) for a 2-D grid: group_size={group_size} is not a square", None)
            window = (side, side)
        perm = window_order(tuple(grid), window)
        return GroupLayout(n, n // (window[0] * window[1]), window[0] * window[1], perm)
    size = min(group_size, n)
    t = -(-n // size)
    return GroupLayout(n, t, size, None, t * size - n)


class GroupCrossAttention(nn.Module):
    """Cross-attention from grouped queries to the keys of the same group (``shift=1``: the group before).

    Pre-norm on both sides (LayerNorm on the queries and on the keys/values, FIT's ``use_enc_ln``), q from
    ``dim_q``, k and v from ``dim_kv`` into ``attn_dim`` (default the smaller width), output projection back
    to ``dim_q``. ``forward(q_tokens (B, t m, dim_q), kv_tokens (B, t n, dim_kv), num_groups, shift,
    key_padding_mask)`` returns the residual update (B, t m, dim_q). No MLP (as in FIT).
    """

    def __init__(self, dim_q: int, dim_kv: int, num_heads: int, attn_dim: int | None = None):
        super().__init__()
        attn_dim = attn_dim or min(dim_q, dim_kv)
        self.num_heads = check_num_heads(attn_dim, num_heads)
        self.norm_q, self.norm_kv = nn.LayerNorm(dim_q), nn.LayerNorm(dim_kv)
        self.q = nn.Linear(dim_q, attn_dim)
        self.kv = nn.Linear(dim_kv, 2 * attn_dim)
        self.proj = nn.Linear(attn_dim, dim_q)

    def forward(self, q_tokens: torch.Tensor, kv_tokens: torch.Tensor, *, num_groups: int, shift: int = 0,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The update of ``q_tokens`` (see the class docstring)."""
        q = rearrange(self.q(self.norm_q(q_tokens)), "b n (h d) -> b h n d", h=self.num_heads)
        k, v = rearrange(self.kv(self.norm_kv(kv_tokens)), "b n (two h d) -> two b h n d", two=2, h=self.num_heads)
        o = group_cross_attention(q, k, v, num_groups=num_groups, shift=shift, key_padding_mask=key_padding_mask)
        return self.proj(rearrange(o, "b h n d -> b n (h d)"))


class LatentLayer(nn.Module):
    """A pre-norm transformer layer over the latents: z + SA(LN z) (block-causal when asked), then z + MLP(LN z)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.num_heads = check_num_heads(dim, num_heads)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = Mlp(dim, max(1, int(round(mlp_ratio * dim))))

    def forward(self, z: torch.Tensor, *, num_groups: int, causal: bool = False,
                latent_mask: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, t m, dim) -> same; ``causal``: latents of group j see groups <= j; ``latent_mask`` (B, t m) bool:
        False for the latents of groups that hold no real token (they are no keys)."""
        q, k, v = rearrange(self.qkv(self.norm1(z)), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        mask = group_causal_mask(num_groups, z.shape[1] // num_groups, device=z.device) if causal else None
        o = attention(q, k, v, attn_mask=mask, key_padding_mask=latent_mask)
        z = z + self.proj(rearrange(o, "b h n d -> b n (h d)"))
        return z + self.mlp(self.norm2(z))


class _GroupedMixer(TokenMixer):
    """What both FIT mixers share: the grouping options and the local attention's projections."""

    def __init__(self, dim: int, num_heads: int, group_size: int, window, qkv_bias: bool):
        super().__init__(dim)
        self.num_heads = check_num_heads(dim, num_heads)
        self.group_size = check_positive_int("group_size", group_size)
        self.window = check_window(window)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def local(self, xg: torch.Tensor, layout: GroupLayout, causal: bool, kpm: torch.Tensor | None) -> torch.Tensor:
        """Local self-attention of grouped tokens (B, t n, C) -> (B, t n, C)."""
        q, k, v = rearrange(self.qkv(xg), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        o = group_attention(q, k, v, num_groups=layout.num_groups, causal=causal, key_padding_mask=kpm)
        return self.proj(rearrange(o, "b h n d -> b n (h d)"))

    def layout(self, x: torch.Tensor, grid, causal: bool) -> GroupLayout:
        """The grouping of this call (see :func:`plan_groups`)."""
        return plan_groups(x.shape[1], grid, causal, self.group_size, self.window)


@register("fit_local", test_kwargs={"num_heads": 2, "group_size": 4}, test_grid=(4, 4))
class FITLocalAttention(_GroupedMixer):
    """FIT's local layer (P27): softmax self-attention within groups of tokens (grid windows or spans), x (B, N, C) -> (B, N, C).

    Args:
        dim: width C; num_heads: heads (divide C).
        group_size: tokens per group n for sequences (N padded inside to a multiple of n).
        window: (h, w) windows on a 2-D grid (default: square of side sqrt(group_size)).
        qkv_bias: bias on the qkv projection.
    """

    capabilities = Capabilities(causal=True, bidirectional=True, grid="optional", grid_dims=(1, 2),
                                key_padding_mask=True, complexity="O(N n)", paper="P27")

    def __init__(self, dim: int, num_heads: int = 4, group_size: int = 64, window=None, qkv_bias: bool = False):
        super().__init__(dim, num_heads, group_size, window, qkv_bias)

    def mix(self, x, *, grid, causal, key_padding_mask):
        lay = self.layout(x, grid, causal)
        kpm = lay.key_mask(key_padding_mask, x.shape[0], x.device)
        return lay.from_groups(self.local(lay.to_groups(x), lay, causal, kpm))


@register("fit", test_kwargs={"num_heads": 2, "group_size": 4, "latents_per_group": 2}, test_grid=(4, 4))
class FITMixer(_GroupedMixer):
    """One FIT block (P27) as a token mixer: local attention in groups, latents read their group, global layers
    over the latents, tokens read them back; x (B, N, C) -> (B, N, C) (see the module docstring).

    Args:
        dim: width C; num_heads: heads of the local attention and the cross-attentions (divide C).
        group_size, window: the grouping (as ``fit_local``).
        latents_per_group: m latents per group.
        latent_dim: their width (default C); latent_heads: heads of the global layers (default num_heads).
        global_layers: transformer layers over the latents (self-attention + MLP).
        mlp_ratio: hidden width of the global layers' MLP over latent_dim.
        qkv_bias: bias on the local qkv projection.
    """

    capabilities = Capabilities(causal=True, bidirectional=True, grid="optional", grid_dims=(1, 2),
                                key_padding_mask=True, complexity="O(N^(4/3))", paper="P27")

    def __init__(self, dim: int, num_heads: int = 4, group_size: int = 64, window=None, latents_per_group: int = 1,
                 latent_dim: int | None = None, latent_heads: int | None = None, global_layers: int = 1,
                 mlp_ratio: float = 4.0, qkv_bias: bool = False):
        super().__init__(dim, num_heads, group_size, window, qkv_bias)
        self.latents_per_group = check_positive_int("latents_per_group", latents_per_group)
        latent_dim = check_positive_int("latent_dim", latent_dim if latent_dim is not None else dim)
        check_positive_int("global_layers", global_layers)
        self.latents = nn.Parameter(torch.zeros(latents_per_group, latent_dim))
        nn.init.trunc_normal_(self.latents, std=0.02)
        self.read = GroupCrossAttention(latent_dim, dim, num_heads)
        self.global_layers = nn.ModuleList(LatentLayer(latent_dim, latent_heads or num_heads, mlp_ratio)
                                           for _ in range(global_layers))
        self.write = GroupCrossAttention(dim, latent_dim, num_heads)

    def mix(self, x, *, grid, causal, key_padding_mask):
        b = x.shape[0]
        lay = self.layout(x, grid, causal)
        kpm = lay.key_mask(key_padding_mask, b, x.device)
        xg = lay.to_groups(x)
        h = self.local(xg, lay, causal, kpm)
        u = xg + h
        t = lay.num_groups
        z = self.latents.to(x.dtype).repeat(t, 1).expand(b, -1, -1)
        z = z + self.read(z, u, num_groups=t, key_padding_mask=kpm)
        # A group of padding only (trailing padding past a group boundary) must not exist for the real tokens:
        # its latent is no key, so padding to a length gives what the unpadded sequence gives.
        latent_mask = None if kpm is None else kpm.view(b, t, -1).any(-1).repeat_interleave(z.shape[1] // t, dim=1)
        for layer in self.global_layers:
            z = layer(z, num_groups=t, causal=causal, latent_mask=latent_mask)
        w = self.write(u, z, num_groups=t, shift=1 if causal else 0)
        return lay.from_groups(h + w)
