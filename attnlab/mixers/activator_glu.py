"""Activator's GLU-MLP used in place of attention (Abdullah & Aydin 2024, P07).

The Activator block replaces multi-head attention by a gated linear unit:
``P3( LN_h(GELU(P1 x)) * LN_h(P2 x) )``, with one LayerNorm ``LN_h`` shared by
both branches. As in the official model, the gate acts on each token's
channels only: there is no mixing across tokens, so the mixer is exactly
permutation-equivariant over tokens (and hence trivially causal and unaffected
by padded tokens). Whatever spatial reasoning an Activator model does comes
from the patch embedding and the pooled head.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from attnlab.utils.checks import describe, fail
from attnlab.mixers.base import Capabilities, TokenMixer
from attnlab.mixers.registry import register

__all__ = ["ActivatorGLU"]


@register("activator_glu", test_kwargs={"hidden_ratio": 2.0})
class ActivatorGLU(TokenMixer):
    """GLU-MLP token "mixer" of Activator (P07): x (B, N, C) -> (B, N, C), per token.

    ``y = proj( norm(GELU(gate_proj(x))) * norm(value_proj(x)) )`` where
    ``gate_proj`` and ``value_proj`` map C -> hidden = ``hidden_ratio * C`` and
    ``norm`` is one LayerNorm(hidden) shared by the two branches (as in the
    official code); ``proj`` maps back to C. Cost O(N C hidden).

    Args:
        dim: channel width C.
        hidden_ratio: hidden width over C (the paper's CIFAR model: 512 / 256 = 2).
        bias: biases on the three projections.
        drop: dropout on the gated hidden activations (training only).
    """

    capabilities = Capabilities(
        causal=True, bidirectional=True, grid="none", key_padding_mask=True, complexity="O(N)", paper="P07",
    )

    def __init__(self, dim: int, hidden_ratio: float = 2.0, bias: bool = True, drop: float = 0.0):
        super().__init__(dim)
        if isinstance(hidden_ratio, bool) or not isinstance(hidden_ratio, (int, float)) or hidden_ratio <= 0:
            fail("hidden_ratio", "a positive float", describe(hidden_ratio))
        hidden = max(1, int(round(dim * hidden_ratio)))
        self.hidden = hidden
        self.gate_proj = nn.Linear(dim, hidden, bias=bias)
        self.value_proj = nn.Linear(dim, hidden, bias=bias)
        self.norm = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(drop)
        self.proj = nn.Linear(hidden, dim, bias=bias)

    def mix(self, x, *, grid, causal, key_padding_mask):
        gated = self.norm(F.gelu(self.gate_proj(x))) * self.norm(self.value_proj(x))
        return self.proj(self.drop(gated))
