"""The ``complex_attention`` mixer: ComplexFormer's complex multi-head attention (CMHA, P18)."""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from attnlab.layers.heads import split_qkv
from attnlab.layers.kv_cache import attend_with_cache, cache_length, check_token, empty_kv_cache
from attnlab.mixers.base import Capabilities, TokenMixer, check_num_heads
from attnlab.mixers.registry import register
from attnlab.ops.complex_attention import complex_attention, complex_rotate
from attnlab.utils.checks import describe, fail

__all__ = ["ComplexAttention"]


@register("complex_attention", test_kwargs={"num_heads": 2})
class ComplexAttention(TokenMixer):
    """Complex multi-head attention (ComplexFormer, P18), x (B, N, C) -> (B, N, C), through SDPA, O(N) memory.

    Per head, the query and key halves are read as complex numbers (magnitude, phase); the score is
    sum_k r_q r_k cos(delta_k (theta_q - theta_k) + b_k + (m - n) g_k) with learnable delta, b of shape
    (H, d_h / 2), no 1/sqrt(d_h) scaling, softmax over the keys (:mod:`attnlab.ops.complex_attention`, which
    computes it as a dot product of rotated vectors). Positions are built in (relative, RoPE-like): a
    backbone needs no position embedding for it. Causal or bidirectional, key-padding mask, decoding with
    a cache of rotated keys (:meth:`init_state` / :meth:`step`).

    Args:
        dim: channel width C (divisible by ``num_heads``; head dim d_h even).
        num_heads: heads H.
        base: base of the position frequencies g_k = base^(-2k / d_h) (10000 as in the official code).
        qkv_bias: bias on the q, k, v projection.
        attn_drop: dropout on the attention probabilities (training only).
        eps: added under the magnitude's square root (the official code's 1e-9); 0 (default) is exact
            and safe at the origin.
    """

    capabilities = Capabilities(causal=True, bidirectional=True, key_padding_mask=True, recurrent=True,
                                complexity="O(N^2)", paper="P18")

    def __init__(self, dim: int, num_heads: int = 4, base: float = 10000.0, qkv_bias: bool = False,
                 attn_drop: float = 0.0, eps: float = 0.0):
        super().__init__(dim)
        self.num_heads = check_num_heads(dim, num_heads)
        self.head_dim = dim // num_heads
        if self.head_dim % 2:
            fail("num_heads", f"a head count giving an even head dim (dim={dim})", num_heads)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps < 0:
            fail("eps", "a float >= 0", describe(eps))
        self.base, self.eps, self.attn_drop = float(base), float(eps), attn_drop
        half = self.head_dim // 2
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        # the official initialisation: delta ~ N(0, (d_h / 2)^-1/2), b = 0
        self.delta = nn.Parameter(torch.randn(num_heads, half) * half ** -0.5)
        self.bias = nn.Parameter(torch.zeros(num_heads, half))
        self.proj = nn.Linear(dim, dim)

    def mix(self, x, *, grid, causal, key_padding_mask):
        q, k, v = split_qkv(self.qkv(x), self.num_heads)
        o = complex_attention(q, k, v, self.delta, self.bias, causal=causal, key_padding_mask=key_padding_mask,
                              base=self.base, eps=self.eps, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj(rearrange(o, "b h n d -> b n (h d)"))

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> dict:
        """An empty cache of rotated keys and values."""
        return empty_kv_cache(batch_size, self.num_heads, self.head_dim, device=device, dtype=dtype)

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """Causal decoding: x_t (B, C) at position T = the cache length -> (y_t (B, C), cache with T + 1 tokens)."""
        q, k, v = split_qkv(self.qkv(check_token(x_t, self.dim)), self.num_heads)
        pos = torch.tensor([cache_length(state)], device=x_t.device)
        qr = complex_rotate(q, pos, self.delta, self.bias, base=self.base, eps=self.eps)
        kr = complex_rotate(k, pos, self.delta, None, base=self.base, eps=self.eps)
        o, state = attend_with_cache(qr[:, :, 0], kr[:, :, 0], v[:, :, 0], state, scale=1.0)
        return self.proj(rearrange(o, "b h d -> b (h d)")), state
