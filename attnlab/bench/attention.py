"""Benchmark case ``attention``: softmax attention, SDPA path vs explicit reference."""
from __future__ import annotations

import torch

from attnlab.bench.inputs import random_qkv
from attnlab.bench.registry import register_case
from attnlab.bench.thunks import Impls
from attnlab.ops.attention import attention, attention_reference


@register_case(
    "attention",
    description="softmax attention (B=1, H=8, D=64): attnlab.ops.attention (SDPA) vs attention_reference (explicit softmax)",
    sizes=(512, 1024, 2048, 4096),
    reference="reference",
    ops=("attnlab.ops.attention.attention",),
    tests=("tests/ops/test_attention.py",),
    tiny=(37, {"heads": 2, "head_dim": 8}),
    oracle="reference",
    agree=("attnlab",),
    params={"batch": 1, "heads": 8, "head_dim": 64, "causal": False},
)
def setup_attention(n: int, dtype: torch.dtype, mode: str, *, batch: int, heads: int, head_dim: int,
                    causal: bool) -> Impls:
    """Inputs (B, H, n, D); impls: ``attnlab`` (SDPA) and ``reference`` (skipped past 8192 tokens: O(N^2) memory)."""
    q, k, v = qkv = random_qkv(n, dtype, mode, batch=batch, heads=heads, head_dim=head_dim)
    impls = Impls(mode)
    impls.add("attnlab", lambda: attention(q, k, v, causal=causal), qkv)
    impls.add_up_to("reference", n, 8192, "the explicit N x N matrix does not fit this machine with backward",
                    lambda: attention_reference(q, k, v, causal=causal), qkv)
    return impls
