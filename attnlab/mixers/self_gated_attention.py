"""The ``self_gated_attention`` mixer: P08's "Non-approximate" attention, a softmax over per-token self-gating scores."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from attnlab.layers.kv_cache import check_token
from attnlab.mixers.base import Capabilities, TokenMixer, check_num_heads
from attnlab.mixers.registry import register
from attnlab.ops.cumulative_softmax import cumulative_softmax_attention, cumulative_softmax_init, cumulative_softmax_step
from attnlab.utils.checks import check_positive_int

__all__ = ["SelfGatedAttention"]


@register("self_gated_attention", test_kwargs={"num_heads": 2, "chunk_size": 4})
class SelfGatedAttention(TokenMixer):
    """P08's Non-approximate attention (Eq. 7-8), x (B, N, C) -> (B, N, C); O(N), no query-key pairs.

    Per head, Q = SiLU(x W_Q), K, V = x W_{K,V}; each token's score is its own s_j = <q_j, k_j> / sqrt(d_h),
    and token i averages the values of the keys it sees with weights softmax_j(s_j) (a running softmax
    when causal: :mod:`attnlab.ops.cumulative_softmax`). A token's weight does not depend on the query,
    so RoPE does not apply (rotating q_j and k_j by the same angle leaves s_j unchanged). Causal or
    bidirectional (then every token gets the same average), key-padding mask, O(d_h)-per-token decoding.

    Args:
        dim: channel width C (divisible by ``num_heads``).
        num_heads: heads H.
        chunk_size: chunk length of the causal form.
        qkv_bias: bias on the q, k, v projection.
    """

    capabilities = Capabilities(causal=True, bidirectional=True, key_padding_mask=True, recurrent=True,
                                complexity="O(N)", paper="P08")

    def __init__(self, dim: int, num_heads: int = 4, chunk_size: int = 64, qkv_bias: bool = False):
        super().__init__(dim)
        self.num_heads = check_num_heads(dim, num_heads)
        self.chunk_size = check_positive_int("chunk_size", chunk_size)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def _scores_values(self, t):
        """From the qkv projection (..., 3C): scores (..., H) and values (..., H, d_h) per token."""
        q, k, v = rearrange(t, "... (three h d) -> three ... h d", three=3, h=self.num_heads)
        return (F.silu(q) * k).sum(-1) / math.sqrt(q.shape[-1]), v

    def mix(self, x, *, grid, causal, key_padding_mask):
        s, v = self._scores_values(self.qkv(x))  # (B, N, H), (B, N, H, d)
        o = cumulative_softmax_attention(s.transpose(1, 2), v.transpose(1, 2), causal=causal,
                                         key_padding_mask=key_padding_mask, chunk_size=self.chunk_size)
        return self.proj(rearrange(o, "b h n d -> b n (h d)"))

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> dict:
        """The running log-sum-exp (B, H) and output (B, H, d_h)."""
        return cumulative_softmax_init(batch_size, self.num_heads, self.dim // self.num_heads, device=device,
                                       dtype=dtype)

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """Causal decoding: x_t (B, C) -> (y_t (B, C), new state)."""
        s, v = self._scores_values(self.qkv(check_token(x_t, self.dim)))
        o, state = cumulative_softmax_step(s, v, state)
        return self.proj(rearrange(o, "b h d -> b (h d)")), state
