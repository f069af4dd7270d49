"""Combiner token mixers (P03: Ren et al., NeurIPS 2021): ``combiner_fixed`` and ``combiner_axial``."""
from __future__ import annotations

import math

from einops import rearrange
from torch import nn

from attnlab.layers.heads import split_qkv
from attnlab.layers.rotary import make_rope
from attnlab.utils.checks import check_choice, check_positive_int
from attnlab.mixers.base import Capabilities, TokenMixer, check_num_heads
from attnlab.mixers.registry import register
from attnlab.ops.combiner import combiner_axial, combiner_fixed

__all__ = ["Combiner"]

PATTERNS = {"fixed": combiner_fixed, "axial": combiner_axial}


@register("combiner_fixed", default_kwargs={"pattern": "fixed"}, test_kwargs={"num_heads": 2, "block_size": 3}, test_len=11)
@register("combiner_axial", default_kwargs={"pattern": "axial"}, test_kwargs={"num_heads": 2, "block_size": 3}, test_len=11)
class Combiner(TokenMixer):
    """Combiner multi-head attention (P03), x (B, N, C) -> (B, N, C): full attention support at O(N sqrt N).

    Each query attends directly to its own segment / row and, through one abstraction
    per other segment / row (a conditional expectation over that region), to every
    other token, all in one softmax (see :mod:`attnlab.ops.combiner`).
    ``pattern="fixed"`` is Combiner-Fixed, ``"axial"`` Combiner-Axial.

    Args:
        dim: channel width C (divisible by ``num_heads``).
        num_heads: heads H; head dim C / H.
        pattern: ``"fixed"`` or ``"axial"``.
        block_size: segment / row length s; default (None) round(sqrt(N)) per call, as in
            the paper, so that each query computes about 2 sqrt(N) logits.
        qkv_bias: bias on the q, k, v projection.
        rope: rotary position embedding on q and k before the op (False, True or a dict of options); the
            segment abstractions then pool rotated keys.
    """

    capabilities = Capabilities(
        causal=True, bidirectional=True, key_padding_mask=True, complexity="O(N sqrt N)", paper="P03"
    )

    def __init__(self, dim: int, num_heads: int = 4, pattern: str = "fixed", block_size: int | None = None,
                 qkv_bias: bool = False, rope: bool | dict = False):
        super().__init__(dim)
        check_num_heads(dim, num_heads)
        check_choice("pattern", pattern, tuple(PATTERNS))
        if block_size is not None:
            check_positive_int("block_size", block_size)
        self.num_heads = num_heads
        self.pattern = pattern
        self.block_size = block_size
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rope = make_rope(rope, dim // num_heads)

    def block_for(self, n: int) -> int:
        """The segment / row length used for sequences of length ``n``."""
        return self.block_size if self.block_size is not None else max(1, round(math.sqrt(n)))

    def mix(self, x, *, grid, causal, key_padding_mask):
        q, k, v = split_qkv(self.qkv(x), self.num_heads, rope=self.rope)
        op = PATTERNS[self.pattern]
        o = op(q, k, v, block_size=self.block_for(x.shape[1]), causal=causal, key_padding_mask=key_padding_mask)
        return self.proj(rearrange(o, "b h n d -> b n (h d)"))
