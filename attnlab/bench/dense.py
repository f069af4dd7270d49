"""Benchmark cases of the dense-prediction papers: kMaX-DeepLab's k-means cross-attention (P25), FIT's grouped
attention and block (P27).

* ``kmeans_cross_attention``: L cluster centres reading N pixels (B=2, one head, D=128, L=128): the k-means op
  (argmax over the centres, scatter-add of the values) against its one-hot reference (the oracle, while it
  fits) and against softmax cross-attention over the same pixels (SDPA, the ratio baseline), op level;
* ``kmax_cross_layers``: the decoder's whole cross-attention step (dim 128, L=128, B=2): k-means (the centres'
  and pixels' projections to mask logits, the update, norms, projection) against the Mask2Former-style
  multi-head softmax cross-attention module of the same widths;
* ``group_attention``: FIT's local attention (B=1, H=4, D=64, groups of 256 tokens) against dense SDPA over all
  N (the ratio baseline) and its dense-masked reference (the oracle, N <= 4096);
* ``fit_mixers``: the ``fit`` mixer (one FIT block: groups of 256, 2 latents per group, one global layer) and
  ``fit_local`` against the ``softmax`` mixer (dense SDPA), dim 64, 4 heads, B=1: the issue's target is
  fwd+bwd at N=16384 at least 5x faster than dense, with memory far below the N x N matrix.

Every case declares ``threads`` (default 1): on this shared 2-core machine one thread gives steadier ratios.
"""
from __future__ import annotations

import torch

from attnlab.bench.inputs import mixer_impls, random_qkv
from attnlab.bench.registry import register_case
from attnlab.bench.thunks import Impls
from attnlab.models.kmax_deeplab import KMeansCrossAttention, SoftmaxCrossAttention
from attnlab.ops.attention import attention
from attnlab.ops.grouped_attention import group_attention, group_attention_reference
from attnlab.ops.kmeans_attention import kmeans_cross_attention, kmeans_cross_attention_reference

#: largest N whose explicit (L or N) x N reference runs here with backward
REFERENCE_MAX_N = 4096


@register_case(
    "kmeans_cross_attention",
    description="k-means cross-attention op (B=2, 1 head, D=128, L=128 centres over N pixels) vs its one-hot "
    "reference and vs softmax cross-attention over the same pixels (SDPA)",
    sizes=(1024, 4096, 16384, 65536),
    reference="softmax_sdpa",
    ops=("attnlab.ops.kmeans_attention.kmeans_cross_attention",),
    tests=("tests/ops/test_kmeans_attention.py",),
    tiny=(37, {"centres": 5, "head_dim": 8}),
    oracle="reference",
    agree=("kmeans",),
    params={"batch": 2, "centres": 128, "head_dim": 128, "threads": 1},
)
def setup_kmeans_cross_attention(n, dtype, mode, *, batch, centres, head_dim) -> Impls:
    """Impls ``kmeans`` (scatter fast path), ``reference`` (explicit one-hot matmul), ``softmax_sdpa``."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(batch, 1, centres, head_dim, generator=g, dtype=dtype).requires_grad_(mode == "fwdbwd")
    k, v = random_qkv(n, dtype, mode, batch=batch, heads=1, head_dim=head_dim)[:2]
    impls = Impls(mode)
    impls.add("kmeans", lambda: kmeans_cross_attention(q, k, v), [v])
    impls.add_up_to("reference", n, REFERENCE_MAX_N, "the one-hot (L, N) matrix is skipped at large N",
                    lambda: kmeans_cross_attention_reference(q, k, v), [v])
    impls.add("softmax_sdpa", lambda: attention(q, k, v), [v])
    return impls


@register_case(
    "kmax_cross_layers",
    description="kMaX decoder cross-attention step (B=2, dim 128, L=128 queries over N pixels): k-means (mask "
    "logits from projections, update, norms) vs multi-head softmax cross-attention (4 heads) of the same widths",
    sizes=(1024, 4096, 16384),
    reference="softmax",
    ops=("attnlab.models.kmax_deeplab.KMeansCrossAttention", "attnlab.models.kmax_deeplab.SoftmaxCrossAttention"),
    tests=("tests/models/test_kmax_deeplab.py",),
    tiny=(37, {"dim": 16, "queries": 5}),
    params={"batch": 2, "dim": 128, "queries": 128, "threads": 1},
)
def setup_kmax_cross_layers(n, dtype, mode, *, batch, dim, queries) -> Impls:
    """Impls ``kmeans`` and ``softmax``: (queries (B, L, dim), pixels (B, N, dim)) -> the queries' update."""
    torch.manual_seed(0)
    qs = torch.randn(batch, queries, dim, dtype=dtype, requires_grad=mode == "fwdbwd")
    px = torch.randn(batch, n, dim, dtype=dtype, requires_grad=mode == "fwdbwd")
    kmeans = KMeansCrossAttention(dim, 2 * dim, dim).to(dtype)
    kernel, pixel_head = (torch.nn.Linear(dim, dim).to(dtype) for _ in range(2))  # mask-logit projections
    torch.nn.init.ones_(kmeans.out_norm.norm.weight)
    softmax = SoftmaxCrossAttention(dim, 2 * dim, dim, num_heads=4).to(dtype)
    torch.nn.init.ones_(softmax.out_norm.norm.weight)

    def run_kmeans():
        logits = torch.einsum("blc,bnc->bln", kernel(qs), pixel_head(px))
        return kmeans(qs, px, logits)

    impls = Impls(mode)
    impls.add("kmeans", run_kmeans, [px])  # no gradient reaches the queries through a k-means update
    impls.add("softmax", lambda: softmax(qs, px), [qs, px])
    return impls


@register_case(
    "group_attention",
    description="FIT local attention (B=1, H=4, D=64, groups of 256 tokens) vs dense SDPA over all N and the "
    "dense-masked reference",
    sizes=(1024, 4096, 16384),
    reference="dense_sdpa",
    ops=("attnlab.ops.grouped_attention.group_attention",),
    tests=("tests/ops/test_grouped_attention.py",),
    tiny=(48, {"heads": 2, "head_dim": 8, "group_size": 12}),
    oracle="reference",
    agree=("group",),
    params={"batch": 1, "heads": 4, "head_dim": 64, "group_size": 256, "threads": 1},
)
def setup_group_attention(n, dtype, mode, *, batch, heads, head_dim, group_size) -> Impls:
    """Impls ``group`` (reshaped SDPA per group), ``reference`` (dense with the group mask), ``dense_sdpa``."""
    q, k, v = qkv = random_qkv(n, dtype, mode, batch=batch, heads=heads, head_dim=head_dim)
    t = max(1, n // group_size)
    impls = Impls(mode)
    if n % t:
        impls.skip("group", f"N={n} is not a multiple of the group size {group_size}")
    else:
        impls.add("group", lambda: group_attention(q, k, v, num_groups=t), qkv)
        impls.add_up_to("reference", n, REFERENCE_MAX_N, "the explicit N x N matrix with backward does not fit",
                        lambda: group_attention_reference(q, k, v, num_groups=t), qkv)
    impls.add("dense_sdpa", lambda: attention(q, k, v), qkv)
    return impls


@register_case(
    "fit_mixers",
    description="mixers at dim 64, 4 heads, B=1: fit (one FIT block: groups of 256, 2 latents each, 1 global "
    "layer) and fit_local vs softmax (dense SDPA)",
    sizes=(1024, 4096, 16384),
    reference="softmax",
    ops=("attnlab.mixers.fit.FITMixer", "attnlab.mixers.fit.FITLocalAttention",
         "attnlab.mixers.softmax.MultiHeadAttention"),
    tests=("tests/mixers/test_fit.py", "tests/mixers/test_softmax.py", "tests/mixers/test_contract.py"),
    tiny=(48, {"dim": 16, "group_size": 12}),
    params={"batch": 1, "dim": 64, "group_size": 256, "latents_per_group": 2, "threads": 1},
)
def setup_fit_mixers(n, dtype, mode, *, batch, dim, group_size, latents_per_group) -> Impls:
    """Impls ``fit``, ``fit_local`` and ``softmax``, each with its own weights, in train mode."""
    specs = {
        "softmax": ("softmax", {"num_heads": 4}),
        "fit_local": ("fit_local", {"num_heads": 4, "group_size": group_size}),
        "fit": ("fit", {"num_heads": 4, "group_size": group_size, "latents_per_group": latents_per_group}),
    }
    return mixer_impls(specs, n, dtype, mode, batch=batch, dim=dim)
