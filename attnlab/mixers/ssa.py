"""Stochastically subsampled self-attention mixer (P28 SSA): sparse random pathways in training, dense at evaluation."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from einops import rearrange
from torch import nn

from attnlab.layers.heads import split_qkv
from attnlab.layers.kv_cache import attend_with_cache, cache_length, check_token, empty_kv_cache
from attnlab.layers.rotary import make_rope
from attnlab.utils.checks import check_choice, check_positive_int, describe, fail
from attnlab.mixers.base import Capabilities, TokenMixer, check_num_heads
from attnlab.mixers.registry import register
from attnlab.ops.attention import attention
from attnlab.ops.subsampled_attention import MODES, sample_keys, subsampled_attention

__all__ = ["SubsampledAttention", "subsampled_inference"]


@register("ssa", test_kwargs={"num_heads": 2, "rate": 2.0, "block": 4, "mode": "local"}, test_len=9)
class SubsampledAttention(TokenMixer):
    """Multi-head softmax attention whose keys are stochastically subsampled in training (SSA, P28).

    x (B, N, C) -> (B, N, C). In ``train()`` mode every forward draws new key sets
    (``attnlab.ops.subsampled_attention.sample_keys``, from torch's global RNG, so
    ``torch.manual_seed`` makes runs reproducible) and each query attends only to the
    keys sampled for its block: about 1/``rate`` of the attention cost, never an N x N
    matrix. In ``eval()`` mode it is ordinary dense attention (deterministic), unless

    * ``ensemble=k`` (k >= 2): the output is the mean of k subsampled passes drawn from
      a generator seeded with ``ensemble_seed`` on every call (deterministic; a
      per-layer ensemble), or
    * inside :func:`subsampled_inference`, which makes every SSA mixer of a model
      sample in eval too, so that whole-network passes can be averaged (P28's
      self-ensemble of sub-models).

    Causal and key-padding masks are supported in every mode. ``rope=True`` rotates queries and
    keys by their positions before the keys are sampled. :meth:`init_state` / :meth:`step` decode
    with a key-value cache and dense attention (the evaluation-mode model, which is what SSA
    serves after training).

    Args:
        dim: channel width C (divisible by ``num_heads``).
        num_heads: heads H.
        rate: subsampling factor rho >= 1 (P28 trains at 4-8x less attention cost).
        mode: ``"unstructured"`` (uniform key subsets) or ``"local"`` (locally biased:
            own block kept, other keys drawn with weight exp(-distance / locality)).
        block: query block size sharing one key set. Default: N (one subset for all
            queries) for bidirectional ``"unstructured"``, else 16.
        locality: length scale of ``"local"`` sampling in tokens (default 2 * block).
        ensemble: number of subsampled passes averaged in eval (0 or 1: dense).
        ensemble_seed: seed of the eval-time ensemble draws.
        qkv_bias: bias on the q/k/v projection.
        rope: rotary position embedding on q and k (False, True or a dict of options).
    """

    capabilities = Capabilities(causal=True, bidirectional=True, key_padding_mask=True, recurrent=True,
                                complexity="O(N^2/rate)", paper="P28")

    def __init__(self, dim: int, num_heads: int = 4, rate: float = 4.0, mode: str = "unstructured",
                 block: int | None = None, locality: float | None = None, ensemble: int = 0, ensemble_seed: int = 0,
                 qkv_bias: bool = False, rope: bool | dict = False):
        super().__init__(dim)
        check_num_heads(dim, num_heads)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate >= 1:
            fail("rate", "a number >= 1", describe(rate))
        check_choice("mode", mode, MODES)
        if block is not None:
            check_positive_int("block", block)
        if isinstance(ensemble, bool) or not isinstance(ensemble, int) or ensemble < 0:
            fail("ensemble", "an int >= 0", describe(ensemble))
        if isinstance(ensemble_seed, bool) or not isinstance(ensemble_seed, int):
            fail("ensemble_seed", "an int", describe(ensemble_seed), TypeError)
        self.num_heads, self.rate, self.mode, self.block, self.locality = num_heads, float(rate), mode, block, locality
        self.ensemble, self.ensemble_seed = ensemble, ensemble_seed
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self._eval_generator: torch.Generator | None = None  # set by subsampled_inference
        self.rope = make_rope(rope, dim // num_heads)

    def block_size(self, n: int, causal: bool) -> int:
        """Query block size used for a sequence of ``n`` tokens."""
        if self.block is not None:
            return min(self.block, n)
        return n if (self.mode == "unstructured" and not causal) else min(16, n)

    def _sampled(self, q, k, v, causal, key_padding_mask, generator):
        b, _, n, _ = q.shape
        block = self.block_size(n, causal)
        index, valid = sample_keys(b, n, rate=self.rate, block=block, mode=self.mode, causal=causal,
                                   locality=self.locality, generator=generator, device=q.device)
        return subsampled_attention(q, k, v, index, valid, block=block, causal=causal, key_padding_mask=key_padding_mask)

    def mix(self, x, *, grid, causal, key_padding_mask):
        q, k, v = split_qkv(self.qkv(x), self.num_heads, rope=self.rope)
        if self.training:
            o = self._sampled(q, k, v, causal, key_padding_mask, None)
        elif self._eval_generator is not None:
            o = self._sampled(q, k, v, causal, key_padding_mask, self._eval_generator)
        elif self.ensemble > 1:
            gen = torch.Generator(device=x.device).manual_seed(self.ensemble_seed)
            o = torch.stack([self._sampled(q, k, v, causal, key_padding_mask, gen) for _ in range(self.ensemble)]).mean(0)
        else:
            o = attention(q, k, v, causal=causal, key_padding_mask=key_padding_mask)
        return self.proj(rearrange(o, "b h n d -> b n (h d)"))

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> dict:
        """An empty key-value cache (decoding attends densely: the evaluation-mode model)."""
        return empty_kv_cache(batch_size, self.num_heads, self.dim // self.num_heads, device=device, dtype=dtype)

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """Causal decoding with dense attention over the cache: x_t (B, C) -> (y_t (B, C), new cache)."""
        q, k, v = split_qkv(self.qkv(check_token(x_t, self.dim)), self.num_heads, rope=self.rope,
                            offset=cache_length(state))
        o, state = attend_with_cache(q[:, :, 0], k[:, :, 0], v[:, :, 0], state)
        return self.proj(rearrange(o, "b h d -> b (h d)")), state

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, rate={self.rate}, mode={self.mode!r}, block={self.block}"


@contextlib.contextmanager
def subsampled_inference(model: nn.Module, seed: int = 0) -> Iterator[nn.Module]:
    """Make every :class:`SubsampledAttention` in ``model`` sample its keys in eval mode too.

    Each forward inside the block is then one random sub-network (P28's information
    pathways); averaging the predictions of several forwards gives the SSA
    self-ensemble. Draws come from per-mixer generators seeded from ``seed``, so the
    sequence of passes is reproducible. Yields the model.
    """
    mixers = [m for m in model.modules() if isinstance(m, SubsampledAttention)]
    if not mixers:
        fail("model", "a module containing SubsampledAttention ('ssa') mixers", type(model).__name__)
    for i, m in enumerate(mixers):
        m._eval_generator = torch.Generator().manual_seed(seed * 1_000_003 + i)
    try:
        yield model
    finally:
        for m in mixers:
            m._eval_generator = None
