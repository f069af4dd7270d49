"""P08's attentions whose queries and keys do not come from the layer's hidden state (Xue, Moosavi, Aletras 2025).

Standard attention computes Q, K, V from the current hidden state H. Deconstructing Attention (P08, Sec.
3.4-3.5) relaxes where Q and K come from, keeping V = H W_V, the output projection and the softmax:

* ``static_emb_qk`` — StaticEmbQK (Eq. 13): Q, K = e W_{Q,K} from the layer-0 embeddings e = Emb(t) of
  the input (sequence-dependent, but not contextualised). Context ``"embeddings"``.
* ``rnd_emb_qk`` — RndEmbQK (Eq. 9-10): Q, K = X_l W_{Q,K}, where X_l is this layer's hidden state of a
  fixed random sequence eps ~ N(0, sigma^2) run through the same network. The attention map is the same
  for every input. Context ``"random_stream"`` (the backbone runs the stream).
* ``fixed_seq_qk`` — FixedSeqQK (Eq. 11-12): the same with a fixed token sequence instead of eps.
  Context ``"text_stream"``.
* ``rnd_table_qk`` — Q, K from a frozen random embedding table looked up with the input's token ids.
  This is how the issue and the research notes read "RndEmbQK"; the paper's RndEmbQK is
  ``rnd_emb_qk``. Kept as an extra ablation (sequence-dependent, never trained). Context ``"token_ids"``.

Every variant has the parameters of standard attention (W_Q, W_K from the context's width, W_V, W_O:
4 C^2 at equal widths), takes ``rope=`` like the softmax mixer, and runs through SDPA. A stream of
batch 1 is broadcast over the input's batch (one attention map for all sequences).
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from attnlab.layers.rotary import make_rope
from attnlab.mixers.base import Capabilities, TokenMixer, check_num_heads
from attnlab.mixers.registry import register
from attnlab.ops.attention import attention
from attnlab.utils.checks import check_positive_int, fail

__all__ = ["ContextQKAttention", "StaticEmbQK", "RndEmbQK", "FixedSeqQK", "RandomTableQK"]

_TEST = {"num_heads": 2}


class ContextQKAttention(TokenMixer):
    """Softmax attention with Q, K from a context source (see the module docstring), V from x: (B, N, C) -> (B, N, C).

    Subclasses set ``source`` (the context kind Q and K are read from) and their capabilities.

    Args:
        dim: channel width C (divisible by ``num_heads``).
        num_heads: heads H.
        source_dim: width of the context the queries and keys come from (default C).
        qkv_bias: bias on the q/k and v projections.
        rope: rotary position embedding on q and k (False, True or a dict of options).
    """

    source: str = ""

    def __init__(self, dim: int, num_heads: int = 4, source_dim: int | None = None, qkv_bias: bool = False,
                 rope: bool | dict = False):
        super().__init__(dim)
        self.num_heads = check_num_heads(dim, num_heads)
        self.source_dim = dim if source_dim is None else check_positive_int("source_dim", source_dim)
        self.qk = nn.Linear(self.source_dim, 2 * dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rope = make_rope(rope, dim // num_heads)

    def source_states(self, context: dict) -> torch.Tensor:
        """The (1 or B, N, source_dim) tensor Q and K are computed from."""
        src = context[self.source]
        if src.shape[-1] != self.source_dim:
            fail(f"context[{self.source!r}]", f"width {self.source_dim} (source_dim)", tuple(src.shape))
        return src

    def mix(self, x, *, grid, causal, key_padding_mask, context):
        src = self.source_states(context).to(x.dtype)
        q, k = rearrange(self.qk(src), "b n (two h d) -> two b h n d", two=2, h=self.num_heads)
        if self.rope is not None:
            q, k = self.rope(q), self.rope(k)
        v = rearrange(self.v(x), "b n (h d) -> b h n d", h=self.num_heads)
        q, k = q.expand(x.shape[0], -1, -1, -1), k.expand(x.shape[0], -1, -1, -1)
        o = attention(q, k, v, causal=causal, key_padding_mask=key_padding_mask)
        return self.proj(rearrange(o, "b h n d -> b n (h d)"))


@register("static_emb_qk", test_kwargs=_TEST)
class StaticEmbQK(ContextQKAttention):
    """P08's StaticEmbQK: queries and keys from the layer-0 embeddings, values from the hidden state."""

    capabilities = Capabilities(causal=True, bidirectional=True, key_padding_mask=True, paper="P08",
                                context=("embeddings",))
    source = "embeddings"


@register("rnd_emb_qk", test_kwargs=_TEST)
class RndEmbQK(ContextQKAttention):
    """P08's RndEmbQK: queries and keys from a fixed random sequence run through the network (input-independent)."""

    capabilities = Capabilities(causal=True, bidirectional=True, key_padding_mask=True, paper="P08",
                                context=("random_stream",))
    source = "random_stream"


@register("fixed_seq_qk", test_kwargs=_TEST)
class FixedSeqQK(ContextQKAttention):
    """P08's FixedSeqQK: queries and keys from a fixed token sequence run through the network (input-independent)."""

    capabilities = Capabilities(causal=True, bidirectional=True, key_padding_mask=True, paper="P08",
                                context=("text_stream",))
    source = "text_stream"


@register("rnd_table_qk", test_kwargs={**_TEST, "vocab_size": 16})
class RandomTableQK(ContextQKAttention):
    """Queries and keys from a frozen random table indexed by the token ids (the notes' reading of P08's RndEmbQK).

    Args (besides those of :class:`ContextQKAttention`):
        vocab_size: number of token ids (rows of the table).
        table_std: standard deviation of the table's N(0, std^2) entries.
        seed: seed of the table (a buffer, saved in the state dict).
    """

    capabilities = Capabilities(causal=True, bidirectional=True, key_padding_mask=True, paper="P08",
                                context=("token_ids",))
    source = "token_ids"

    def __init__(self, dim: int, num_heads: int = 4, vocab_size: int | None = None, table_std: float = 1.0,
                 seed: int = 0, qkv_bias: bool = False, rope: bool | dict = False):
        if vocab_size is None:
            fail("vocab_size", "the number of token ids (rnd_table_qk holds one frozen row per id)", None)
        check_positive_int("vocab_size", vocab_size)
        super().__init__(dim, num_heads, None, qkv_bias, rope)
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("table", torch.randn(vocab_size, dim, generator=g) * float(table_std))

    def source_states(self, context: dict) -> torch.Tensor:
        ids = context["token_ids"]
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.table.shape[0]):
            fail("context['token_ids']", f"ids in [0, {self.table.shape[0]})",
                 f"ids in [{int(ids.min())}, {int(ids.max())}]")
        return self.table[ids]
