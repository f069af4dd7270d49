"""Benchmark case ``attention``: softmax attention, SDPA path vs explicit reference."""
from __future__ import annotations

import torch

from attnlab.bench.registry import make_thunk, register_case
from attnlab.ops.attention import attention, attention_reference


@register_case(
    "attention",
    description="softmax attention (B=1, H=8, D=64): attnlab.ops.attention (SDPA) vs attention_reference (explicit softmax)",
    sizes=(512, 1024, 2048, 4096),
    reference="reference",
    params={"batch": 1, "heads": 8, "head_dim": 64, "causal": False},
)
def setup_attention(n: int, dtype: torch.dtype, mode: str, *, batch: int, heads: int, head_dim: int, causal: bool):
    """Inputs (B, H, n, D); impls: ``attnlab`` (SDPA) and ``reference`` (skipped past 8192 tokens: O(N^2) memory)."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (
        torch.randn(batch, heads, n, head_dim, generator=g, dtype=dtype).requires_grad_(mode == "fwdbwd") for _ in range(3)
    )
    impls = {"attnlab": make_thunk(lambda: attention(q, k, v, causal=causal), [q, k, v], mode)}
    skipped = {}
    if n <= 8192:
        impls["reference"] = make_thunk(lambda: attention_reference(q, k, v, causal=causal), [q, k, v], mode)
    else:
        skipped["reference"] = "N > 8192: the explicit N x N matrix does not fit this machine with backward"
    return impls, skipped
