"""Isomer's Semantic Gathering-Scattering attention (P30): foreground and background queries attend to their own few
soft tokens; the results are scattered back to their positions."""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from attnlab.mixers.base import Capabilities, TokenMixer, check_num_heads
from attnlab.mixers.registry import register
from attnlab.ops.gathering_scattering import gathering_scattering_attention, soft_token_merge
from attnlab.utils.checks import check_positive_int, fail

__all__ = ["GatheringScattering"]


@register("gathering_scattering", test_kwargs={"num_heads": 2, "num_tokens": 2})
class GatheringScattering(TokenMixer):
    """Semantic Gathering-Scattering attention of Isomer's SGST (P30): fg/bg split by a heat map, K soft tokens a side.

    A heat map ``h = sigmoid(heat(x))`` (P30's 1x1 convolution) splits the positions: foreground where
    ``h >= tau``, background where ``h < 1 - tau`` (with ``tau > 0.5`` a band in between is on neither
    side and gets zero). Each side gathers K soft tokens (``soft_token_merge``: softmax over positions
    of a linear map of the side-weighted features ``h x`` or ``(1 - h) x``, as in DLUT-yyc/Isomer), and
    every foreground query attends to the foreground tokens only, every background query to the
    background tokens only (``gathering_scattering_attention``); the results are scattered back to
    their positions. The threshold is not differentiable: the heat map learns through the soft weights.
    Cost O(N K C) instead of O(N^2 C).

    ``discard_scatter=True`` reproduces DLUT-yyc/Isomer's ``sgst.py``, which computes the scattered
    result into a temporary (``feature.clone().masked_scatter_(...)``) and returns the input
    unchanged: the mixer then returns zeros (and :class:`attnlab.models.isomer.SGSTBlock` its input).
    The default is the paper's behaviour.

    Args:
        dim: width C; num_heads: heads (divide C); num_tokens: K tokens per side;
        tau: threshold in [0.5, 1); qkv_bias: bias of the query, key and value maps;
        discard_scatter: the official code's behaviour (see above).
    """

    capabilities = Capabilities(causal=False, bidirectional=True, key_padding_mask=True, complexity="O(N K)",
                                paper="P30")

    def __init__(self, dim: int, num_heads: int = 1, num_tokens: int = 8, tau: float = 0.5, qkv_bias: bool = True,
                 discard_scatter: bool = False):
        super().__init__(dim)
        self.num_heads = check_num_heads(dim, num_heads)
        self.num_tokens = check_positive_int("num_tokens", num_tokens)
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0.5 <= tau < 1.0:
            fail("tau", "a number in [0.5, 1)", repr(tau))
        if not isinstance(discard_scatter, bool):
            fail("discard_scatter", "a bool", repr(discard_scatter), TypeError)
        self.tau, self.discard_scatter = float(tau), discard_scatter
        self.heat = nn.Linear(dim, 1)
        self.merge_fg = nn.Linear(dim, num_tokens)
        self.merge_bg = nn.Linear(dim, num_tokens)
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv_fg = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.kv_bg = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def split(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Heat map (B, N) in (0, 1) and the foreground / background masks (B, N) bool (padding on neither side)."""
        heat = torch.sigmoid(self.heat(x)[..., 0])
        fg, bg = heat >= self.tau, heat < 1.0 - self.tau
        if key_padding_mask is not None:
            fg, bg = fg & key_padding_mask, bg & key_padding_mask
        return heat, fg, bg

    def forward_split(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(output (B, N, C), fg (B, N), bg (B, N)) for validated input x (B, N, C)."""
        heat, fg, bg = self.split(x, key_padding_mask)
        w_fg, w_bg = heat, 1.0 - heat
        t_fg = soft_token_merge(x, self.merge_fg(x * w_fg[..., None]), w_fg, key_padding_mask=key_padding_mask)
        t_bg = soft_token_merge(x, self.merge_bg(x * w_bg[..., None]), w_bg, key_padding_mask=key_padding_mask)
        h = self.num_heads
        q = rearrange(self.q(x), "b n (h d) -> b h n d", h=h)
        k_fg, v_fg = rearrange(self.kv_fg(t_fg), "b k (two h d) -> two b h k d", two=2, h=h)
        k_bg, v_bg = rearrange(self.kv_bg(t_bg), "b k (two h d) -> two b h k d", two=2, h=h)
        o = gathering_scattering_attention(q, k_fg, v_fg, k_bg, v_bg, fg, bg)
        out = self.proj(rearrange(o, "b h n d -> b n (h d)")) * (fg | bg)[..., None].to(x.dtype)
        if self.discard_scatter:  # DLUT-yyc/Isomer: the scattered result is written to a temporary and dropped
            out = torch.zeros_like(out)
        return out, fg, bg

    def mix(self, x, *, grid, causal, key_padding_mask):
        return self.forward_split(x, key_padding_mask)[0]
