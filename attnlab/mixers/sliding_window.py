"""The ``sliding_window`` mixer: sliding-window softmax attention (the local layers of P12's hybrids)."""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from attnlab.layers.heads import split_qkv
from attnlab.layers.kv_cache import attend_with_cache, cache_length, check_token, empty_kv_cache
from attnlab.layers.rotary import make_rope
from attnlab.utils.checks import check_positive_int
from attnlab.mixers.base import Capabilities, TokenMixer, check_num_heads
from attnlab.mixers.registry import register
from attnlab.ops.sliding_window import sliding_window_attention

__all__ = ["SlidingWindowAttention"]


@register("sliding_window", test_kwargs={"num_heads": 2, "window": 3})
class SlidingWindowAttention(TokenMixer):
    """Sliding-window softmax attention, x (B, N, C) -> (B, N, C), O(N w).

    Causal: each token sees itself and the ``window - 1`` tokens before it (Mistral-style;
    the local layers of P12's hybrids); bidirectional: the tokens within distance
    ``window - 1`` on either side, cut at the sequence ends. Multi-head with qkv and
    output projections; never forms the N x N matrix (tiled op, forward and backward).

    Args:
        dim: channel width C (divisible by ``num_heads``).
        num_heads: heads H.
        window: w (see above).
        qkv_bias: bias on the qkv projection.
        proj_drop: dropout after the output projection.
        rope: rotary position embedding on q and k (False, True or a dict of options).
    """

    capabilities = Capabilities(causal=True, bidirectional=True, key_padding_mask=True, recurrent=True,
                                complexity="O(N w)", paper="P12")

    def __init__(self, dim: int, num_heads: int = 4, window: int = 64, qkv_bias: bool = False, proj_drop: float = 0.0,
                 rope: bool | dict = False):
        super().__init__(dim)
        self.num_heads = check_num_heads(dim, num_heads)
        self.window = check_positive_int("window", window)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.rope = make_rope(rope, dim // num_heads)

    def mix(self, x, *, grid, causal, key_padding_mask):
        q, k, v = split_qkv(self.qkv(x), self.num_heads, rope=self.rope)
        o = sliding_window_attention(q, k, v, self.window, causal=causal, key_padding_mask=key_padding_mask)
        return self.proj_drop(self.proj(rearrange(o, "b h n d -> b n (h d)")))

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> dict:
        """An empty key-value cache (it keeps the last ``window`` tokens)."""
        return empty_kv_cache(batch_size, self.num_heads, self.dim // self.num_heads, device=device, dtype=dtype)

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """Causal decoding: x_t (B, C) -> (y_t (B, C), new cache); the token sees itself and the window - 1 before."""
        q, k, v = split_qkv(self.qkv(check_token(x_t, self.dim)), self.num_heads, rope=self.rope,
                            offset=cache_length(state))
        o, state = attend_with_cache(q[:, :, 0], k[:, :, 0], v[:, :, 0], state, window=self.window)
        return self.proj(rearrange(o, "b h d -> b (h d)")), state
