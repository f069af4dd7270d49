"""Benchmark cases for Combiner (P03) and SEA (P20) against SDPA and their dense references.

* ``combiner``: the op (causal, B=1, H=4, D=64, s = round(sqrt(N))): blocked Fixed and Axial
  fast paths, SDPA causal softmax (the full attention Combiner approximates), and the
  explicit N x N factorised reference (``fixed_reference``, up to ``max_reference`` tokens).
* ``sea``: the op (causal, B=1, H=4, D=64, k=64 keys per query, t_m=64, F=round(D ln D)):
  ``sea`` (estimate + top-k + gathered attention), ``sea_dense_masked`` (the same estimate
  and mask, then masked SDPA over the dense (N, N) mask: how the official code trains),
  and SDPA causal softmax.
* ``sparse_mixers``: whole causal mixers at dim 256, 4 heads: ``combiner_fixed``,
  ``combiner_axial``, ``sea`` against ``softmax`` (SDPA).

Each case declares ``threads`` (default 1: the machine is shared, and one thread gives
steadier ratios), which the worker applies.
"""
from __future__ import annotations

import math

import torch

from attnlab.bench.inputs import mixer_impls, random_qkv
from attnlab.bench.registry import register_case
from attnlab.bench.thunks import Impls
from attnlab.ops.attention import attention
from attnlab.ops.combiner import combiner_axial, combiner_fixed, combiner_fixed_reference
from attnlab.ops.sea import favor_projection, sea_attention, sea_estimate, sea_select, selection_to_mask


@register_case(
    "combiner",
    description="Combiner op, causal (B=1, H=4, D=64, s=round(sqrt N)): fixed / axial blocked vs SDPA causal vs "
    "the explicit N x N factorised reference",
    sizes=(1024, 4096, 16384),
    reference="sdpa",
    ops=("attnlab.ops.combiner.combiner_fixed", "attnlab.ops.combiner.combiner_axial"),
    tests=("tests/ops/test_combiner.py",),
    tiny=(70, {"heads": 2, "head_dim": 8}),
    oracle="fixed_reference",
    agree=("fixed",),
    params={"batch": 1, "heads": 4, "head_dim": 64, "max_reference": 4096, "threads": 1},
)
def setup_combiner(n, dtype, mode, *, batch, heads, head_dim, max_reference) -> Impls:
    """Impls ``fixed``, ``axial``, ``sdpa`` and ``fixed_reference`` (N <= max_reference)."""
    q, k, v = qkv = random_qkv(n, dtype, mode, batch=batch, heads=heads, head_dim=head_dim)
    s = max(1, round(math.sqrt(n)))
    impls = Impls(mode)
    impls.add("fixed", lambda: combiner_fixed(q, k, v, block_size=s), qkv)
    impls.add("axial", lambda: combiner_axial(q, k, v, block_size=s), qkv)
    impls.add("sdpa", lambda: attention(q, k, v, causal=True), qkv)
    impls.add_up_to("fixed_reference", n, max_reference, "several (N, N) matrices",
                    lambda: combiner_fixed_reference(q, k, v, block_size=s), qkv)
    return impls


def sea_dense_masked(q, k, v, proj, t_m, top_k, block):
    """SEA's estimate and mask, then SDPA over the dense (N, N) mask (the official training path).

    q, k, v: (B, H, N, D); returns (B, H, N, D); the selection is not differentiated (as in SEA).
    """
    with torch.no_grad():
        est = sea_estimate(q, k, proj, t_m=t_m, causal=True, block=block)
        idx, valid = sea_select(est, top_k=top_k, causal=True, block=block)
        mask = selection_to_mask(idx, valid, q.shape[2])
    return attention(q, k, v, attn_mask=mask)


@register_case(
    "sea",
    description="SEA op, causal (B=1, H=4, D=64, k=64, t_m=64, F=round(D ln D), block 64): gathered sparse "
    "attention vs the same mask through dense masked SDPA vs SDPA causal",
    sizes=(1024, 4096, 16384),
    reference="sdpa",
    ops=("attnlab.ops.sea.sea_attention",),
    tests=("tests/ops/test_sea.py",),
    tiny=(70, {"heads": 2, "head_dim": 8, "top_k": 8, "t_m": 16, "block": 16}),
    oracle="sea_dense_masked",
    agree=("sea",),
    params={"batch": 1, "heads": 4, "head_dim": 64, "top_k": 64, "t_m": 64, "block": 64, "max_dense": 8192,
            "threads": 1},
)
def setup_sea(n, dtype, mode, *, batch, heads, head_dim, top_k, t_m, block, max_dense) -> Impls:
    """Impls ``sea``, ``sea_dense_masked`` (N <= max_dense) and ``sdpa``."""
    q, k, v = qkv = random_qkv(n, dtype, mode, batch=batch, heads=heads, head_dim=head_dim)
    proj = favor_projection(round(head_dim * math.log(head_dim)), head_dim, dtype=dtype)
    impls = Impls(mode)
    impls.add("sea", lambda: sea_attention(q, k, v, proj, t_m=t_m, top_k=top_k, causal=True, block=block), qkv)
    impls.add("sdpa", lambda: attention(q, k, v, causal=True), qkv)
    impls.add_up_to("sea_dense_masked", n, max_dense, "the dense (N, N) mask and scores",
                    lambda: sea_dense_masked(q, k, v, proj, t_m, top_k, block), qkv)
    return impls


@register_case(
    "sparse_mixers",
    description="causal mixers at dim=256, 4 heads, B=1: combiner_fixed, combiner_axial, sea (k=64, t_m=64) vs "
    "softmax (SDPA)",
    sizes=(1024, 4096, 16384),
    reference="softmax",
    ops=("attnlab.mixers.combiner.Combiner", "attnlab.mixers.sea.SEA", "attnlab.mixers.softmax.MultiHeadAttention"),
    tests=("tests/mixers/test_combiner.py", "tests/mixers/test_sea.py", "tests/mixers/test_softmax.py", "tests/mixers/test_contract.py"),
    tiny=(70, {"dim": 16, "heads": 2}),
    params={"batch": 1, "dim": 256, "heads": 4, "mixers": "combiner_fixed,combiner_axial,sea,softmax", "threads": 1},
)
def setup_sparse_mixers(n, dtype, mode, *, batch, dim, heads, mixers) -> Impls:
    """One impl per mixer name (``sea`` with top_k=64, t_m=64), input (B, n, dim)."""
    specs = {name: (name, {"top_k": 64, "t_m": 64} if name == "sea" else {}) for name in mixers.split(",")}
    return mixer_impls(specs, n, dtype, mode, batch=batch, dim=dim, heads=heads, causal=True)
