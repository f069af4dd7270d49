"""The ``gated_mlp`` mixer: P08's "MLP" variant, a per-token gated MLP in place of attention (no token mixing)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from attnlab.mixers.base import Capabilities, TokenMixer
from attnlab.mixers.registry import register
from attnlab.utils.checks import check_positive_int

__all__ = ["GatedMLP"]


@register("gated_mlp")
class GatedMLP(TokenMixer):
    """P08's MLP variant (Eq. 4-5): FC_Dn(SiLU(FC_Gt(x)) * FC_Up(x)) per token, x (B, N, C) -> (B, N, C).

    Each token is processed alone: no mixing across positions (hence trivially causal and blind to
    padding). The default hidden width round(4 C / 3) gives 3 C hidden = 4 C^2 weights, the count of
    standard attention's W_Q, W_K, W_V, W_O, as the paper matches parameters.

    Args:
        dim: channel width C.
        hidden: hidden width (default round(4 C / 3)).
        bias: biases on the three projections (off, as in Qwen2.5's MLP).
    """

    capabilities = Capabilities(causal=True, bidirectional=True, key_padding_mask=True, complexity="O(N)",
                                paper="P08")

    def __init__(self, dim: int, hidden: int | None = None, bias: bool = False):
        super().__init__(dim)
        hidden = round(4 * dim / 3) if hidden is None else check_positive_int("hidden", hidden)
        self.hidden = hidden
        self.gate = nn.Linear(dim, hidden, bias=bias)
        self.up = nn.Linear(dim, hidden, bias=bias)
        self.down = nn.Linear(hidden, dim, bias=bias)

    def mix(self, x, *, grid, causal, key_padding_mask):
        return self.down(F.silu(self.gate(x)) * self.up(x))
