"""DeltaNet token mixer (P12: Yang et al., NeurIPS 2024), causal, with recurrent decoding."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from attnlab.layers import RMSNorm, ShortConv
from attnlab.utils.checks import check_positive_int
from attnlab.utils.precision import LOW_PRECISION, autocast_dtype
from attnlab.mixers.base import Capabilities, TokenMixer, check_num_heads
from attnlab.mixers.registry import register
from attnlab.ops.delta_rule import delta_rule_chunkwise, delta_rule_recurrent, delta_rule_step

__all__ = ["DeltaNet"]


# bf16_tol: at the test size (head dim 4) the per-head output RMSNorm rescales heads whose output is ~1e-3
# (a cancelling sum) to unit size, bf16's absolute rounding with them: 3-4 % output, 7-9 % gradient error over six
# seeds; 0.9 % / 1.2 % at C = 64, N = 256
@register("deltanet", test_kwargs={"num_heads": 2, "chunk_size": 4, "use_gate": True}, bf16_tol=(0.06, 0.12))
class DeltaNet(TokenMixer):
    """DeltaNet layer (P12), x (B, N, C) -> (B, N, C); causal only, O(N), recurrent decoding.

    As in the paper's layer: q, k, v = SiLU(ShortConv_4(Linear x)) (depthwise causal
    conv), q and k L2-normalised per head, beta_t = sigmoid(Linear x) per head, the
    delta rule S_t = (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T, o_t = S_t^T q_t / sqrt(d)
    (chunkwise WY form: :func:`attnlab.ops.delta_rule.delta_rule_chunkwise`), then a
    per-head RMSNorm (times SiLU(Linear x) when ``use_gate``) and the output projection.

    Bidirectional use is not offered: the paper's DeltaNet is causal and a
    bidirectional delta rule is not defined there (``capabilities.bidirectional=False``).
    Padded tokens (``key_padding_mask``) get zero input and beta = 0, so they change no state.

    Args:
        dim: channel width C (divisible by ``num_heads``).
        num_heads: heads H (paper/fla default 4), head dim C / H.
        use_short_conv: the width-``conv_size`` causal depthwise convs on q, k, v.
        conv_size: convolution width (4).
        use_gate: output gate (fla ``use_gate``); default off as in fla.
        chunk_size: chunk length of the chunkwise form; None (default): 32 in fp32 / fp64 (the whole layer
            measured 1.3-1.5x faster than with 64 at N = 128-8192, fwd+bwd, one thread) and 64 in bf16
            (module or autocast: the op measured 1.2x faster than with 32, its batched bf16 products
            being cheap next to the per-chunk state updates).
        norm_eps: epsilon of the output RMSNorm.
    """

    capabilities = Capabilities(
        causal=True, bidirectional=False, key_padding_mask=True, recurrent=True, complexity="O(N)", paper="P12"
    )

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        use_short_conv: bool = True,
        conv_size: int = 4,
        use_gate: bool = False,
        chunk_size: int | None = None,
        norm_eps: float = 1e-5,
    ):
        super().__init__(dim)
        check_num_heads(dim, num_heads)
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.chunk_size = None if chunk_size is None else check_positive_int("chunk_size", chunk_size)
        self.use_short_conv = use_short_conv
        self.use_gate = use_gate
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.b_proj = nn.Linear(dim, num_heads, bias=False)
        if use_short_conv:
            self.q_conv = ShortConv(dim, conv_size, "silu")
            self.k_conv = ShortConv(dim, conv_size, "silu")
            self.v_conv = ShortConv(dim, conv_size, "silu")
        if use_gate:
            self.g_proj = nn.Linear(dim, dim, bias=False)
        self.o_norm = RMSNorm(self.head_dim, norm_eps)
        self.o_proj = nn.Linear(dim, dim, bias=False)

    def _qkvb(self, q, k, v, x):
        """Head split, L2-normalise q and k, beta = sigmoid: (B, N, C) pieces -> (B, H, N, D) and (B, H, N)."""
        q, k, v = (rearrange(t, "... n (h d) -> ... h n d", h=self.num_heads) for t in (q, k, v))
        q, k = F.normalize(q, dim=-1, eps=1e-6), F.normalize(k, dim=-1, eps=1e-6)
        beta = rearrange(self.b_proj(x).sigmoid(), "... n h -> ... h n")
        return q, k, v, beta

    def _out(self, o, x):
        o = self.o_norm(rearrange(o, "... h n d -> ... n h d"))
        if self.use_gate:
            o = o * F.silu(rearrange(self.g_proj(x), "... n (h d) -> ... n h d", h=self.num_heads))
        return self.o_proj(rearrange(o, "... n h d -> ... n (h d)"))

    def mix(self, x, *, grid, causal, key_padding_mask, reference: bool = False):
        if key_padding_mask is not None:
            x = x * key_padding_mask.unsqueeze(-1).to(x.dtype)
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.use_short_conv:
            q, k, v = self.q_conv(q), self.k_conv(k), self.v_conv(v)
        else:
            q, k, v = F.silu(q), F.silu(k), F.silu(v)
        q, k, v, beta = self._qkvb(q, k, v, x)
        if key_padding_mask is not None:
            beta = beta * key_padding_mask.unsqueeze(1).to(beta.dtype)
        if reference:
            o, _ = delta_rule_recurrent(q, k, v, beta)
        else:
            o, _ = delta_rule_chunkwise(q, k, v, beta, chunk_size=self.chunk_for(x.dtype))
        return self._out(o, x)

    def chunk_for(self, dtype: torch.dtype) -> int:
        """The chunk length used for input of ``dtype`` (see ``chunk_size``; autocast counts as bf16)."""
        if self.chunk_size is not None:
            return self.chunk_size
        return 64 if (autocast_dtype() or dtype) in LOW_PRECISION else 32

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> dict:
        """Zero state: delta-rule memory S (B, H, D, D) and the conv buffers (B, K-1, C) each."""
        d = self.head_dim
        state = {"S": torch.zeros(batch_size, self.num_heads, d, d, device=device, dtype=dtype)}
        if self.use_short_conv:
            for name in ("q", "k", "v"):
                state[name] = getattr(self, f"{name}_conv").init_state(batch_size, device=device, dtype=dtype)
        return state

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """Causal decoding: x_t (B, C) -> (y_t (B, C), new state); O(C^2 / H) per token."""
        new = {}
        q, k, v = self.q_proj(x_t), self.k_proj(x_t), self.v_proj(x_t)
        if self.use_short_conv:
            q, new["q"] = self.q_conv.step(q, state["q"])
            k, new["k"] = self.k_conv.step(k, state["k"])
            v, new["v"] = self.v_conv.step(v, state["v"])
        else:
            q, k, v = F.silu(q), F.silu(k), F.silu(v)
        q, k, v = (rearrange(t, "b (h d) -> b h d", h=self.num_heads) for t in (q, k, v))
        q, k = F.normalize(q, dim=-1, eps=1e-6), F.normalize(k, dim=-1, eps=1e-6)
        beta = self.b_proj(x_t).sigmoid()
        o, new["S"] = delta_rule_step(q, k, v, beta, state["S"])
        o = self.o_norm(o)
        if self.use_gate:
            o = o * F.silu(rearrange(self.g_proj(x_t), "b (h d) -> b h d", h=self.num_heads))
        return self.o_proj(rearrange(o, "b h d -> b (h d)")), new
