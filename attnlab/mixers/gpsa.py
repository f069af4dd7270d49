"""Gated positional self-attention, GPSA (ConViT, d'Ascoli et al. 2021, P11).

Each head mixes a content attention ``softmax(q k^T / sqrt(d_h))`` with a
positional attention ``softmax(v_h . r_ij)`` that depends only on the relative
offset r_ij = (dx, dy, dx^2 + dy^2) between patches i and j:

    A_h = (1 - sigmoid(lambda_h)) A^content_h + sigmoid(lambda_h) A^pos_h

Both terms are row-stochastic, so A_h is too (the official code divides by the
row sum again, which is an identity up to rounding and is skipped here). With
the "local init" each head's positional attention is a Gaussian-like bump
centred on its own offset Delta_h on a sqrt(H) x sqrt(H) grid around the query,
which makes the layer start out as a convolution that the gate can unlearn.

Speed: the positional term does not depend on the batch, so it is computed once
per call as (H, N, N) instead of per image (timm builds a (B, N, N, 3) tensor
and a Linear over it); the content term runs through SDPA, and the output is
``(1 - g) * SDPA(q, k, v) + g * (A^pos @ v)``, algebraically equal to ``A @ v``.
"""
from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn

from attnlab.utils.checks import describe, fail
from attnlab.mixers.base import Capabilities, TokenMixer, check_num_heads
from attnlab.mixers.registry import register
from attnlab.ops.attention import attention, attention_reference
from attnlab.ops.recording import is_recording, record

__all__ = ["GatedPositionalSelfAttention", "relative_indices"]


def relative_indices(grid: tuple[int, int], *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Relative offsets between the tokens of a row-major (H, W) grid: (N, N, 3).

    Entry [i, j] is (dx, dy, dx^2 + dy^2) with dx = col_j - col_i and
    dy = row_j - row_i (the key's position relative to the query's), the
    convention of the official ConViT code.
    """
    h, w = grid
    rows = torch.arange(h, device=device, dtype=dtype).repeat_interleave(w)
    cols = torch.arange(w, device=device, dtype=dtype).repeat(h)
    dx = cols[None, :] - cols[:, None]
    dy = rows[None, :] - rows[:, None]
    return torch.stack([dx, dy, dx * dx + dy * dy], dim=-1)


@register("gpsa", test_kwargs={"num_heads": 4}, test_grid=(3, 3))
class GatedPositionalSelfAttention(TokenMixer):
    """GPSA (ConViT, P11): x (B, N, C) on a grid (H, W) -> (B, N, C).

    Parameters keep timm's names (``qk``, ``v``, ``proj``, ``pos_proj``,
    ``gating_param``) so that timm ConViT weights load without renaming.

    Args:
        dim: channel width C (divisible by ``num_heads``).
        num_heads: heads H; the local init places the first floor(sqrt(H))^2
            heads on a square grid of offsets (H a perfect square uses all).
        qkv_bias: bias on the q/k and v projections (ConViT: none).
        locality_strength: alpha of the local init; larger = sharper bump.
        local_init: apply the locality initialisation (v = identity, positional
            weights centred on each head's offset).
        proj_drop: dropout after the output projection.
    """

    capabilities = Capabilities(
        causal=False, bidirectional=True, grid="required", grid_dims=(2,), key_padding_mask=False,
        complexity="O(N^2)", paper="P11",
    )

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        qkv_bias: bool = False,
        locality_strength: float = 1.0,
        local_init: bool = True,
        proj_drop: float = 0.0,
    ):
        super().__init__(dim)
        check_num_heads(dim, num_heads)
        if isinstance(locality_strength, bool) or not isinstance(locality_strength, (int, float)) or locality_strength <= 0:
            fail("locality_strength", "a positive float", describe(locality_strength))
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.locality_strength = float(locality_strength)
        self.qk = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.pos_proj = nn.Linear(3, num_heads)
        self.proj_drop = nn.Dropout(proj_drop)
        self.gating_param = nn.Parameter(torch.ones(num_heads))
        self._rel_cache: dict = {}
        if local_init:
            self.local_init()

    @torch.no_grad()
    def local_init(self) -> None:
        """ConViT's locality init: W_v = I and head h's positional logits -alpha |delta - Delta_h|^2 (+const)."""
        self.v.weight.copy_(torch.eye(self.dim))
        if self.v.bias is not None:
            self.v.bias.zero_()
        nn.init.zeros_(self.pos_proj.bias)
        k = int(math.isqrt(self.num_heads))
        center = (k - 1) / 2 if k % 2 == 0 else k // 2
        for h1 in range(k):
            for h2 in range(k):
                pos = h1 + k * h2
                # logit = alpha * (2 Dx dx + 2 Dy dy - (dx^2 + dy^2)), maximal at (dx, dy) = (Dx, Dy).
                self.pos_proj.weight[pos] = torch.tensor([2.0 * (h2 - center), 2.0 * (h1 - center), -1.0])
        self.pos_proj.weight.mul_(self.locality_strength)

    def head_offsets(self) -> list[tuple[float, float]]:
        """The (dx, dy) offset each locally-initialised head is centred on (first floor(sqrt(H))^2 heads)."""
        k = int(math.isqrt(self.num_heads))
        center = (k - 1) / 2 if k % 2 == 0 else k // 2
        out = [None] * (k * k)
        for h1 in range(k):
            for h2 in range(k):
                out[h1 + k * h2] = (h2 - center, h1 - center)
        return out

    def _rel(self, grid, device, dtype) -> torch.Tensor:
        key = (tuple(grid), device, dtype)
        rel = self._rel_cache.get(key)
        if rel is None:
            self._rel_cache.clear()
            rel = self._rel_cache[key] = relative_indices(grid, device=device, dtype=dtype)
        return rel

    def positional_attention(self, grid: tuple[int, int], device=None, dtype=torch.float32) -> torch.Tensor:
        """A^pos: (H, N, N) row-stochastic positional attention for ``grid``."""
        rel = self._rel(grid, device, dtype)
        logits = torch.nn.functional.linear(rel, self.pos_proj.weight.to(dtype), self.pos_proj.bias.to(dtype))
        return logits.permute(2, 0, 1).softmax(dim=-1)

    def gate(self) -> torch.Tensor:
        """sigmoid(lambda_h) per head: the weight of the positional attention, shape (H,)."""
        return torch.sigmoid(self.gating_param)

    def mix(self, x, *, grid, causal, key_padding_mask):
        q, k = rearrange(self.qk(x), "b n (two h d) -> two b h n d", two=2, h=self.num_heads)
        v = rearrange(self.v(x), "b n (h d) -> b h n d", h=self.num_heads)
        pos = self.positional_attention(grid, x.device, x.dtype)
        g = self.gate().to(x.dtype).view(1, -1, 1, 1)
        if is_recording():
            _, content, logits = attention_reference(q, k, v, return_probs=True, return_logits=True)
            probs = (1.0 - g) * content + g * pos
            record(probs, logits)
            o = probs @ v
        else:
            o = (1.0 - g) * attention(q, k, v) + g * torch.matmul(pos, v)
        return self.proj_drop(self.proj(rearrange(o, "b h n d -> b n (h d)")))
