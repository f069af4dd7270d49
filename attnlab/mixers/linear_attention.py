"""Linear attention token mixer (Katharopoulos et al. 2020), the P12 baseline, with recurrent decoding."""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from attnlab.utils.checks import check_choice, check_positive_int, fail
from attnlab.mixers.base import Capabilities, TokenMixer, check_num_heads
from attnlab.mixers.registry import register
from attnlab.ops.linear_attention import FEATURE_MAPS, linear_attention, linear_attention_step

__all__ = ["LinearAttention"]


@register("linear_attention", test_kwargs={"num_heads": 2, "chunk_size": 4})
class LinearAttention(TokenMixer):
    """Multi-head linear attention, x (B, N, C) -> (B, N, C); causal or bidirectional, O(N).

    Per head: o_i = phi(q_i)^T sum_j phi(k_j) v_j^T / (phi(q_i)^T sum_j phi(k_j)) over
    j <= i (causal) or all j, computed chunkwise by
    :func:`attnlab.ops.linear_attention.linear_attention`. Decoding carries the
    (D x (D+1)) state per head: :meth:`init_state` / :meth:`step`.

    Args:
        dim: channel width C (divisible by ``num_heads``).
        num_heads: heads H, head dim C / H.
        feature_map: ``"elu+1"`` (default), ``"relu"`` or ``"identity"``.
        normalize: divide by phi(q)^T z (default True); False gives the unnormalised
            form with queries scaled by D^-1/2 (the baseline in P12).
        chunk_size: chunk length of the causal chunkwise form.
        eps: added to the normaliser.
    """

    capabilities = Capabilities(
        causal=True, bidirectional=True, key_padding_mask=True, recurrent=True, complexity="O(N)", paper="P12"
    )

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        feature_map: str = "elu+1",
        normalize: bool = True,
        chunk_size: int = 64,
        eps: float = 1e-6,
        qkv_bias: bool = False,
    ):
        super().__init__(dim)
        check_num_heads(dim, num_heads)
        check_choice("feature_map", feature_map, FEATURE_MAPS)
        if feature_map == "identity" and normalize:
            fail("normalize", "False with feature_map='identity' (the normaliser can be zero or negative)", True)
        self.num_heads = num_heads
        self.feature_map = feature_map
        self.normalize = normalize
        self.chunk_size = check_positive_int("chunk_size", chunk_size)
        self.eps = eps
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def _opts(self):
        return dict(feature_map=self.feature_map, normalize=self.normalize, eps=self.eps)

    def mix(self, x, *, grid, causal, key_padding_mask):
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        o = linear_attention(q, k, v, causal=causal, chunk_size=self.chunk_size, key_mask=key_padding_mask, **self._opts())
        return self.proj(rearrange(o, "b h n d -> b n (h d)"))

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> torch.Tensor:
        """Zero state (B, H, D, D + normalize): sum of phi(k) v^T (and of phi(k) when normalising)."""
        d = self.dim // self.num_heads
        return torch.zeros(batch_size, self.num_heads, d, d + int(self.normalize), device=device, dtype=dtype)

    def step(self, x_t: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Causal decoding: x_t (B, C) -> (y_t (B, C), new state); O(C^2 / H) per token."""
        q, k, v = rearrange(self.qkv(x_t), "b (three h d) -> three b h d", three=3, h=self.num_heads)
        o, state = linear_attention_step(q, k, v, state, **self._opts())
        return self.proj(rearrange(o, "b h d -> b (h d)")), state
