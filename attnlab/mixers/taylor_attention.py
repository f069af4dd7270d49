"""The ``taylor_attention`` mixer: P08's "Approximate" attention, softmax's kernel replaced by its 2nd-order Taylor polynomial."""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from attnlab.layers.heads import split_qkv
from attnlab.layers.kv_cache import check_token
from attnlab.layers.rotary import make_rope
from attnlab.mixers.base import Capabilities, TokenMixer, check_num_heads
from attnlab.mixers.registry import register
from attnlab.ops.taylor_attention import taylor_attention, taylor_attention_init, taylor_attention_step
from attnlab.utils.checks import check_positive_int

__all__ = ["TaylorAttention"]


@register("taylor_attention", test_kwargs={"num_heads": 2, "chunk_size": 4})
class TaylorAttention(TokenMixer):
    """Taylor linear attention (P08's Approximate, after Based), x (B, N, C) -> (B, N, C); O(N D^2) per head.

    Q, K, V = x W (as standard attention, Eq. 3 of P08); the weights are 1 + x + x^2/2 of
    x = q.k / sqrt(d_h), normalised per query (:mod:`attnlab.ops.taylor_attention`). Causal or
    bidirectional, key-padding mask, an O(1)-per-token decoding step; sequences shorter than about d_h^2
    take the quadratic form (same result, fewer multiply-adds). ``rope=True`` rotates q and k (the kernel is
    a function of q.k, so rotations keep it relative).

    Args:
        dim: channel width C (divisible by ``num_heads``).
        num_heads: heads H (the feature size per head is 1 + d_h + d_h^2).
        chunk_size: chunk length of the causal chunkwise form.
        qkv_bias: bias on the q, k, v projection.
        rope: rotary position embedding on q and k (False, True or a dict of options).
    """

    capabilities = Capabilities(causal=True, bidirectional=True, key_padding_mask=True, recurrent=True,
                                complexity="O(N d_h^2)", paper="P08")

    def __init__(self, dim: int, num_heads: int = 4, chunk_size: int = 64, qkv_bias: bool = False,
                 rope: bool | dict = False):
        super().__init__(dim)
        self.num_heads = check_num_heads(dim, num_heads)
        self.chunk_size = check_positive_int("chunk_size", chunk_size)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rope = make_rope(rope, dim // num_heads)

    def mix(self, x, *, grid, causal, key_padding_mask):
        q, k, v = split_qkv(self.qkv(x), self.num_heads, rope=self.rope)
        o = taylor_attention(q, k, v, causal=causal, key_padding_mask=key_padding_mask, chunk_size=self.chunk_size)
        return self.proj(rearrange(o, "b h n d -> b n (h d)"))

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> dict:
        """Zero running sums (B, H, 1 + d + d^2, d + 1) and the position 0."""
        d = self.dim // self.num_heads
        return {"S": taylor_attention_init(batch_size, self.num_heads, d, d, device=device, dtype=dtype), "pos": 0}

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """Causal decoding: x_t (B, C) -> (y_t (B, C), new state); O(C d_h^2) per token."""
        q, k, v = split_qkv(self.qkv(check_token(x_t, self.dim)), self.num_heads, rope=self.rope, offset=state["pos"])
        o, s = taylor_attention_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], state["S"])
        return self.proj(rearrange(o, "b h d -> b (h d)")), {"S": s, "pos": state["pos"] + 1}
