"""Benchmark cases for linear-time mixers (P12 DeltaNet, linear attention, P01 random features, P23 Mamba).

* ``delta_rule``: the delta-rule op (B=1, H=4, D=64): chunkwise WY form vs the token
  recurrence, and fla's pure-torch chunkwise reference when flash-linear-attention is
  installed (side by side in the same process).
* ``linear_mixers``: whole mixers at the same width/heads, causal: ``linear_attention``,
  ``deltanet``, ``random_features`` against ``softmax`` (SDPA).
* ``selective_scan``: Mamba's selective scan (B=1, D=512 inner channels = dim 256 x expand 2,
  N=16, input-dependent B and C): chunked fast path vs the token loop.
* ``ssm_mixers``: ``mamba``, ``s4d``, ``hyena`` against ``softmax`` (SDPA), causal, dim 256.

The tables of benchmarks/linear.md (thread scaling, decoding) come from
``python -m attnlab.bench.linear_tables``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from attnlab.bench.inputs import mixer_impls
from attnlab.bench.registry import register_case
from attnlab.bench.thunks import Impls
from attnlab.utils.peers import load_fla_delta_rule_naive
from attnlab.ops.delta_rule import delta_rule_chunkwise, delta_rule_recurrent
from attnlab.ops.selective_scan import selective_scan, selective_scan_reference

__all__ = ["delta_rule_inputs"]


def delta_rule_inputs(n: int, dtype: torch.dtype, *, batch: int, heads: int, head_dim: int,
                      requires_grad: bool) -> list[torch.Tensor]:
    """[q, k, v, beta] of the delta-rule benchmarks (seed 0): q, v normal, k L2-normalised, beta in (0, 1).

    q, k, v: (batch, heads, n, head_dim); beta: (batch, heads, n).
    """
    g = torch.Generator().manual_seed(0)
    shape = (batch, heads, n, head_dim)
    q = torch.randn(*shape, generator=g, dtype=dtype)
    k = F.normalize(torch.randn(*shape, generator=g, dtype=dtype), dim=-1)
    v = torch.randn(*shape, generator=g, dtype=dtype)
    beta = torch.rand(batch, heads, n, generator=g, dtype=dtype)
    return [t.requires_grad_(requires_grad) for t in (q, k, v, beta)]


@register_case(
    "delta_rule",
    description="delta rule op (B=1, H=4, D=64, L2-normalised k, sigmoid-range beta): attnlab chunkwise (C=64 and "
    "C=32) vs token recurrence vs fla naive chunkwise (C=32) and recurrence (if installed)",
    sizes=(2048, 8192),
    reference="recurrent",
    ops=("attnlab.ops.delta_rule.delta_rule_chunkwise",),
    tests=("tests/ops/test_delta_rule.py",),
    tiny=(64, {"heads": 2, "head_dim": 8, "chunk_size": 16}),
    oracle="recurrent",
    agree=("chunkwise", "chunkwise_c32", "fla_naive_chunkwise", "fla_naive_recurrent"),
    params={"batch": 1, "heads": 4, "head_dim": 64, "chunk_size": 64, "max_recurrent": 8192, "max_fla_recurrent": 8192},
)
def setup_delta_rule(n, dtype, mode, *, batch, heads, head_dim, chunk_size, max_recurrent, max_fla_recurrent) -> Impls:
    """Impls ``chunkwise`` (attnlab, C=chunk_size), ``chunkwise_c32`` (C=32), ``recurrent`` (attnlab reference),
    ``fla_naive_chunkwise`` / ``fla_naive_recurrent`` (fla's recurrence is skipped above ``max_fla_recurrent``)."""
    q, k, v, beta = inputs = delta_rule_inputs(n, dtype, batch=batch, heads=heads, head_dim=head_dim,
                                               requires_grad=mode == "fwdbwd")
    impls = Impls(mode)
    impls.add("chunkwise", lambda: delta_rule_chunkwise(q, k, v, beta, chunk_size=chunk_size)[0], inputs)
    if chunk_size != 32:
        impls.add("chunkwise_c32", lambda: delta_rule_chunkwise(q, k, v, beta, chunk_size=32)[0], inputs)
    impls.add_up_to("recurrent", n, max_recurrent, "the param max_recurrent",
                    lambda: delta_rule_recurrent(q, k, v, beta)[0], inputs)
    fla = load_fla_delta_rule_naive()
    if fla is None:
        impls.skip("fla_naive_chunkwise", "flash-linear-attention not installed")
    elif n % 32:
        impls.skip("fla_naive_chunkwise", "fla's naive chunkwise needs N % 32 == 0")
    else:
        impls.add("fla_naive_chunkwise", lambda: fla.delta_rule_chunkwise(q, k, v, beta, chunk_size=32)[0], inputs)
    if fla is not None and n <= max_recurrent:
        # fla's token loop writes o[:, :, i] in place: its backward is super-linear (see machine-and-peers.md)
        impls.add_up_to("fla_naive_recurrent", n, max_fla_recurrent,
                        "the param max_fla_recurrent (its backward is super-linear)",
                        lambda: fla.delta_rule_recurrence(q, k, v, beta)[0], inputs)
    return impls


def _setup_mixers(n, dtype, mode, *, batch, dim, heads, causal, mixers) -> Impls:
    """One impl per mixer name (built with ``num_heads=heads`` when it takes heads), input (B, n, dim)."""
    return mixer_impls({name: (name, {}) for name in mixers.split(",")}, n, dtype, mode, batch=batch, dim=dim,
                       heads=heads, causal=causal)


register_case(
    "linear_mixers",
    description="causal mixers at dim=256, 4 heads (head dim 64), B=1: linear_attention, deltanet, "
    "random_features vs softmax (SDPA)",
    sizes=(4096, 16384),
    reference="softmax",
    ops=("attnlab.mixers.linear_attention.LinearAttention", "attnlab.mixers.deltanet.DeltaNet",
         "attnlab.mixers.random_features.RandomFeatureAttention", "attnlab.mixers.softmax.MultiHeadAttention"),
    tests=("tests/mixers/test_linear_attention.py", "tests/mixers/test_deltanet.py", "tests/mixers/test_random_features.py", "tests/mixers/test_softmax.py", "tests/mixers/test_contract.py"),
    tiny=(37, {"dim": 16, "heads": 2}),
    params={"batch": 1, "dim": 256, "heads": 4, "causal": True, "mixers": "linear_attention,deltanet,random_features,softmax"},
)(_setup_mixers)

register_case(
    "ssm_mixers",
    description="causal mixers at dim=256 (mamba: expand 2, N=16; hyena: order 2), B=1: mamba, s4d, hyena "
    "vs softmax (SDPA, 4 heads)",
    sizes=(4096, 16384),
    reference="softmax",
    ops=("attnlab.mixers.mamba.Mamba", "attnlab.mixers.s4d.S4D", "attnlab.mixers.hyena.Hyena",
         "attnlab.mixers.softmax.MultiHeadAttention"),
    tests=("tests/mixers/test_mamba.py", "tests/mixers/test_s4d.py", "tests/mixers/test_hyena.py", "tests/mixers/test_softmax.py", "tests/mixers/test_contract.py"),
    tiny=(37, {"dim": 16, "heads": 2}),
    params={"batch": 1, "dim": 256, "heads": 4, "causal": True, "mixers": "mamba,s4d,hyena,softmax"},
)(_setup_mixers)


@register_case(
    "selective_scan",
    description="selective scan op (B=1, D=512, N=16, input-dependent B, C; delta softplus): attnlab chunked "
    "path and hand-written token loop vs the autograd token loop (reference)",
    sizes=(2048, 8192),
    reference="reference",
    ops=("attnlab.ops.selective_scan.selective_scan",),
    tests=("tests/ops/test_selective_scan.py",),
    tiny=(37, {"channels": 6, "d_state": 4}),
    oracle="reference",
    agree=("chunked", "loop"),
    params={"batch": 1, "channels": 512, "d_state": 16, "max_reference": 8192},
)
def setup_selective_scan(n, dtype, mode, *, batch, channels, d_state, max_reference) -> Impls:
    """Impls ``chunked`` and ``loop`` (attnlab.ops.selective_scan.selective_scan with that ``method``) and
    ``reference`` (selective_scan_reference, differentiated by autograd)."""
    g = torch.Generator().manual_seed(0)
    u = torch.randn(batch, channels, n, generator=g, dtype=dtype)
    delta = torch.randn(batch, channels, n, generator=g, dtype=dtype) - 2.0
    a = -torch.arange(1, d_state + 1, dtype=dtype).repeat(channels, 1)
    b = torch.randn(batch, d_state, n, generator=g, dtype=dtype)
    c = torch.randn(batch, d_state, n, generator=g, dtype=dtype)
    d = torch.ones(channels, dtype=dtype)
    inputs = [t.requires_grad_(mode == "fwdbwd") for t in (u, delta, a, b, c, d)]
    impls = Impls(mode)
    for method in ("chunked", "loop"):
        impls.add(method, lambda method=method: selective_scan(u, delta, a, b, c, d, delta_softplus=True, method=method),
                  inputs)
    impls.add_up_to("reference", n, max_reference, "the param max_reference",
                    lambda: selective_scan_reference(u, delta, a, b, c, d, delta_softplus=True), inputs)
    return impls


register_case(
    "selective_scan_train",
    description="selective scan op at Mamba's training sizes in the reproductions (B=64, D=128 = expand 2 x dim 64, "
    "N=16): attnlab chunked path and hand-written token loop vs the autograd token loop (reference)",
    sizes=(64, 256),
    reference="reference",
    ops=("attnlab.ops.selective_scan.selective_scan",),
    tests=("tests/ops/test_selective_scan.py",),
    tiny=(9, {"batch": 2, "channels": 6, "d_state": 4}),
    oracle="reference",
    agree=("chunked", "loop"),
    params={"batch": 64, "channels": 128, "d_state": 16, "max_reference": 1024},
)(setup_selective_scan)
