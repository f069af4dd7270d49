"""Multi-head softmax self-attention, with optional qk-layernorm (P02)."""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from attnlab.layers.kv_cache import attend_with_cache, cache_length, check_token, empty_kv_cache
from attnlab.layers.heads import split_qkv
from attnlab.layers.rotary import make_rope
from attnlab.mixers.base import Capabilities, TokenMixer, check_num_heads
from attnlab.mixers.registry import register
from attnlab.ops.alibi import alibi_attention, alibi_slopes
from attnlab.ops.attention import attention
from attnlab.utils.checks import describe, fail

__all__ = ["MultiHeadAttention"]


@register("softmax", test_kwargs={"num_heads": 2})
@register("softmax_qknorm", default_kwargs={"qk_norm": True}, test_kwargs={"num_heads": 2})
class MultiHeadAttention(TokenMixer):
    """Multi-head softmax self-attention (Vaswani et al. 2017), x (B, N, C) -> (B, N, C).

    ``qk_norm=True`` applies LayerNorm over each head's d_h to queries and keys
    before the dot product, the mitigation of attention-logit growth studied in
    P02 (Wortsman et al. 2023; Dehghani et al. 2023). Note the norm is per head
    (over d_h), not over the full width C. Runs through SDPA; inside
    ``attnlab.ops.record_attention`` its probabilities are recorded.

    ``rope=True`` (or a dict of :class:`attnlab.layers.RotaryEmbedding` options) rotates queries and
    keys by their positions (RoPE). ``alibi=True`` instead adds ALiBi's per-head linear bias -m_h (i - j)
    (causal; -m_h |i - j| bidirectional) to the logits (Press et al. 2022, :mod:`attnlab.ops.alibi`). Decoding: :meth:`init_state` / :meth:`step` keep a key-value
    cache, one token per step, equal to the causal forward at that position.

    Args:
        dim: channel width C (divisible by ``num_heads``).
        num_heads: number of heads H; head dim d_h = C / H.
        qkv_bias: bias on the q, k, v projection.
        qk_norm: per-head LayerNorm on q and k (P02).
        attn_drop: dropout on attention probabilities (training only).
        proj_drop: dropout after the output projection.
        proj_bias: bias on the output projection.
        rope: rotary position embedding on q and k (False, True or a dict of options).
        alibi: ALiBi's linear biases on the logits (not with ``rope``).

    ``attention_fn``: None (the default: :func:`attnlab.ops.attention.attention`) or a function with its
    signature used instead; sequence parallelism (``attnlab.distributed``) sets it to Ulysses / ring / hybrid
    attention over a sharded sequence. ``supports_sequence_parallel`` marks the mixers that honour it.
    """

    supports_sequence_parallel = True

    capabilities = Capabilities(causal=True, bidirectional=True, key_padding_mask=True, recurrent=True,
                                complexity="O(N^2)", paper="P02")

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        qkv_bias: bool = False,
        qk_norm: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        proj_bias: bool = True,
        rope: bool | dict = False,
        alibi: bool = False,
    ):
        super().__init__(dim)
        check_num_heads(dim, num_heads)
        if not isinstance(alibi, bool):
            fail("alibi", "a bool", describe(alibi), TypeError)
        if alibi and rope not in (None, False):
            fail("alibi", "False when rope is set (one position scheme per mixer)", f"alibi=True with rope={rope!r}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)
        self.rope = make_rope(rope, self.head_dim)
        # ALiBi's slopes are powers of two: exact in every float dtype the module is cast to
        self.register_buffer("alibi_slopes", alibi_slopes(num_heads).float() if alibi else None, persistent=False)
        self.attention_fn = None

    def _qkv(self, x, offset: int = 0):
        """Heads (B, H, N, D) of q, k, v for x (B, N, C) (or (B, C): one token), normed and rotated from ``offset``."""
        return split_qkv(self.qkv(x), self.num_heads, rope=self.rope, offset=offset, q_norm=self.q_norm,
                         k_norm=self.k_norm)

    def mix(self, x, *, grid, causal, key_padding_mask):
        q, k, v = self._qkv(x)
        drop = self.attn_drop if self.training else 0.0
        if self.alibi_slopes is not None:
            if self.attention_fn is not None:
                fail("attention_fn", "None with alibi=True (the bias needs the whole sequence's positions)",
                     describe(self.attention_fn))
            o = alibi_attention(q, k, v, self.alibi_slopes, causal=causal, key_padding_mask=key_padding_mask,
                                dropout_p=drop)
        else:
            o = (self.attention_fn or attention)(q, k, v, causal=causal, key_padding_mask=key_padding_mask,
                                                 dropout_p=drop)
        return self.proj_drop(self.proj(rearrange(o, "b h n d -> b n (h d)")))

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> dict:
        """An empty key-value cache for ``batch_size`` sequences (see :mod:`attnlab.layers.kv_cache`)."""
        return empty_kv_cache(batch_size, self.num_heads, self.head_dim, device=device, dtype=dtype)

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """Causal decoding: x_t (B, C) at position T = the cache length -> (y_t (B, C), cache with T + 1 tokens)."""
        q, k, v = self._qkv(check_token(x_t, self.dim), offset=cache_length(state))
        o, state = attend_with_cache(q[:, :, 0], k[:, :, 0], v[:, :, 0], state, alibi_slopes=self.alibi_slopes)
        return self.proj(rearrange(o, "b h d -> b (h d)")), state
