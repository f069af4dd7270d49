"""Isomer's Context-Sharing attention (P30): one global context per frame, the same for every query position."""
from __future__ import annotations

import torch
from torch import nn

from attnlab.mixers.base import Capabilities, TokenMixer
from attnlab.mixers.registry import register
from attnlab.ops.context_sharing import context_sharing
from attnlab.utils.checks import fail

__all__ = ["ContextSharing"]


@register("context_sharing", test_kwargs={"ratio": 2.0, "zero_init": False})
class ContextSharing(TokenMixer):
    """Context-Sharing attention of Isomer's CST (P30): softmax over positions -> one context -> MLP -> every position.

    ``w = softmax_j(score(x_j))`` over the N positions (``score`` is a linear map to one logit, P30's
    1x1 convolution), ``c = sum_j w_j x_j``, and the output at every position is
    ``transform(c) = fc2(relu(LayerNorm(fc1 c)))``: the block adds it to each token (GCNet's global
    context block, which P30's CST adopts for the low-level fusion stages). The output does not depend
    on which position asks: P30's observation that low-level attention is query-independent, built in.
    Cost O(N C + C * hidden) per frame instead of O(N^2 C).

    Args:
        dim: width C.
        ratio: hidden width of the transform over C (DLUT-yyc/Isomer uses 16: an expansion, not GCNet's
            1/16 bottleneck).
        zero_init: start ``fc2`` at zero so the block starts as the identity (P30, GCNet).
    """

    capabilities = Capabilities(causal=False, bidirectional=True, key_padding_mask=True, complexity="O(N)",
                                paper="P30")

    def __init__(self, dim: int, ratio: float = 16.0, zero_init: bool = True):
        super().__init__(dim)
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio > 0:
            fail("ratio", "a number > 0", repr(ratio))
        hidden = max(int(round(dim * ratio)), 1)
        self.score = nn.Linear(dim, 1)
        self.fc1 = nn.Linear(dim, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.fc2 = nn.Linear(hidden, dim)
        if zero_init:
            nn.init.zeros_(self.fc2.weight)
            nn.init.zeros_(self.fc2.bias)

    def context(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The shared context c of each example: (B, N, C) -> (B, C)."""
        shared = context_sharing(x[:, None], self.score(x).to(x.dtype)[:, None, :, 0], key_padding_mask=key_padding_mask)
        return shared[:, 0, 0]

    def mix(self, x, *, grid, causal, key_padding_mask):
        ctx = self.fc2(torch.relu(self.norm(self.fc1(self.context(x, key_padding_mask)))))
        return ctx[:, None, :].expand_as(x)
