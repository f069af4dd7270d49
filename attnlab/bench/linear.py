"""Benchmark cases for linear-time mixers (P12 DeltaNet, linear attention, P01 random features).

* ``delta_rule``: the delta-rule op (B=1, H=4, D=64): chunkwise WY form vs the token
  recurrence, and fla's pure-torch chunkwise reference when flash-linear-attention is
  installed (side by side in the same process).
* ``linear_mixers``: whole mixers at the same width/heads, causal: ``linear_attention``,
  ``deltanet``, ``random_features`` against ``softmax`` (SDPA).
* ``selective_scan``: Mamba's selective scan (B=1, D=512 inner channels = dim 256 x expand 2,
  N=16, input-dependent B and C): chunked fast path vs the token loop.
* ``ssm_mixers``: ``mamba``, ``s4d``, ``hyena`` against ``softmax`` (SDPA), causal, dim 256.

:func:`decode_step_seconds` times one recurrent decoding step after t tokens
(``python -m attnlab.bench.linear``), to show the O(1) per-token cost.
"""
from __future__ import annotations

import importlib.util
import pathlib
import time

import torch
import torch.nn.functional as F

from attnlab.bench.registry import make_thunk, register_case
from attnlab.ops.delta_rule import delta_rule_chunkwise, delta_rule_recurrent
from attnlab.ops.selective_scan import selective_scan, selective_scan_reference

__all__ = ["load_fla_delta_rule_naive", "decode_step_seconds"]


def load_fla_delta_rule_naive():
    """fla's ``ops/delta_rule/naive.py`` loaded by file path (the package __init__ needs triton); None if absent."""
    spec = importlib.util.find_spec("fla")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "ops" / "delta_rule" / "naive.py"
    if not path.exists():
        return None
    mod_spec = importlib.util.spec_from_file_location("_fla_delta_rule_naive", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod


@register_case(
    "delta_rule",
    description="delta rule op (B=1, H=4, D=64, L2-normalised k, sigmoid-range beta): attnlab chunkwise (C=64 and "
    "C=32) vs token recurrence vs fla naive chunkwise (C=32) and recurrence (if installed)",
    sizes=(2048, 8192),
    reference="recurrent",
    params={"batch": 1, "heads": 4, "head_dim": 64, "chunk_size": 64, "max_recurrent": 8192, "max_fla_recurrent": 8192},
)
def setup_delta_rule(n, dtype, mode, *, batch, heads, head_dim, chunk_size, max_recurrent, max_fla_recurrent):
    """Impls ``chunkwise`` (attnlab, C=chunk_size), ``chunkwise_c32`` (C=32), ``recurrent`` (attnlab reference),
    ``fla_naive_chunkwise`` / ``fla_naive_recurrent`` (fla's recurrence is skipped above ``max_fla_recurrent``)."""
    g = torch.Generator().manual_seed(0)
    shape = (batch, heads, n, head_dim)
    q = torch.randn(*shape, generator=g, dtype=dtype)
    k = F.normalize(torch.randn(*shape, generator=g, dtype=dtype), dim=-1)
    v = torch.randn(*shape, generator=g, dtype=dtype)
    beta = torch.rand(batch, heads, n, generator=g, dtype=dtype)
    inputs = [t.requires_grad_(mode == "fwdbwd") for t in (q, k, v, beta)]
    impls = {"chunkwise": make_thunk(lambda: delta_rule_chunkwise(q, k, v, beta, chunk_size=chunk_size)[0], inputs, mode)}
    if chunk_size != 32:
        impls["chunkwise_c32"] = make_thunk(lambda: delta_rule_chunkwise(q, k, v, beta, chunk_size=32)[0], inputs, mode)
    skipped = {}
    if n <= max_recurrent:
        impls["recurrent"] = make_thunk(lambda: delta_rule_recurrent(q, k, v, beta)[0], inputs, mode)
    else:
        skipped["recurrent"] = f"N > max_recurrent={max_recurrent}"
    fla = load_fla_delta_rule_naive()
    if fla is None:
        skipped["fla_naive_chunkwise"] = "flash-linear-attention not installed"
    elif n % 32:
        skipped["fla_naive_chunkwise"] = "fla's naive chunkwise needs N % 32 == 0"
    else:
        impls["fla_naive_chunkwise"] = make_thunk(lambda: fla.delta_rule_chunkwise(q, k, v, beta, chunk_size=32)[0], inputs, mode)
    if fla is not None and n > max_fla_recurrent:
        skipped["fla_naive_recurrent"] = f"N > max_fla_recurrent={max_fla_recurrent}"
    elif fla is not None and n <= max_recurrent:
        # fla's token loop writes o[:, :, i] in place: its backward is super-linear (see machine-and-peers.md)
        impls["fla_naive_recurrent"] = make_thunk(lambda: fla.delta_rule_recurrence(q, k, v, beta)[0], inputs, mode)
    return impls, skipped


@register_case(
    "linear_mixers",
    description="causal mixers at dim=256, 4 heads (head dim 64), B=1: linear_attention, deltanet, "
    "random_features vs softmax (SDPA)",
    sizes=(4096, 16384),
    reference="softmax",
    params={"batch": 1, "dim": 256, "heads": 4, "causal": True, "mixers": "linear_attention,deltanet,random_features,softmax"},
)
def setup_linear_mixers(n, dtype, mode, *, batch, dim, heads, causal, mixers):
    """One impl per mixer name (built with ``num_heads=heads`` when it takes heads), input (B, n, dim)."""
    torch.manual_seed(0)
    x = torch.randn(batch, n, dim, dtype=dtype, requires_grad=mode == "fwdbwd")
    impls = {}
    for name in mixers.split(","):
        m = _create(name, dim, heads).to(dtype)
        impls[name] = make_thunk(lambda m=m: m(x, causal=causal), [x], mode)
    return impls, {}


def _create(name: str, dim: int, heads: int):
    """``attnlab.mixers.create``, passing ``num_heads`` only to mixers that accept it."""
    import inspect

    import attnlab.mixers as registry

    takes_heads = "num_heads" in inspect.signature(registry.get_info(name).cls.__init__).parameters
    return registry.create(name, dim, **({"num_heads": heads} if takes_heads else {}))


register_case(
    "ssm_mixers",
    description="causal mixers at dim=256 (mamba: expand 2, N=16; hyena: order 2), B=1: mamba, s4d, hyena "
    "vs softmax (SDPA, 4 heads)",
    sizes=(4096, 16384),
    reference="softmax",
    params={"batch": 1, "dim": 256, "heads": 4, "causal": True, "mixers": "mamba,s4d,hyena,softmax"},
)(setup_linear_mixers)


@register_case(
    "selective_scan",
    description="selective scan op (B=1, D=512, N=16, input-dependent B, C; delta softplus): attnlab chunked "
    "fast path vs the token loop (reference)",
    sizes=(2048, 8192),
    reference="reference",
    params={"batch": 1, "channels": 512, "d_state": 16, "max_reference": 8192},
)
def setup_selective_scan(n, dtype, mode, *, batch, channels, d_state, max_reference):
    """Impls ``chunked`` (attnlab.ops.selective_scan.selective_scan) and ``reference`` (the loop)."""
    g = torch.Generator().manual_seed(0)
    u = torch.randn(batch, channels, n, generator=g, dtype=dtype)
    delta = torch.randn(batch, channels, n, generator=g, dtype=dtype) - 2.0
    a = -torch.arange(1, d_state + 1, dtype=dtype).repeat(channels, 1)
    b = torch.randn(batch, d_state, n, generator=g, dtype=dtype)
    c = torch.randn(batch, d_state, n, generator=g, dtype=dtype)
    d = torch.ones(channels, dtype=dtype)
    inputs = [t.requires_grad_(mode == "fwdbwd") for t in (u, delta, a, b, c, d)]
    impls = {"chunked": make_thunk(lambda: selective_scan(u, delta, a, b, c, d, delta_softplus=True), inputs, mode)}
    skipped = {}
    if n <= max_reference:
        impls["reference"] = make_thunk(
            lambda: selective_scan_reference(u, delta, a, b, c, d, delta_softplus=True), inputs, mode)
    else:
        skipped["reference"] = f"N > max_reference={max_reference}"
    return impls, skipped


def decode_step_seconds(name: str, *, dim: int = 256, heads: int = 4, at: tuple[int, ...] = (100, 5000), repeats: int = 50) -> dict:
    """Median seconds of one ``step`` of mixer ``name`` after t decoded tokens, for each t in ``at``."""
    torch.manual_seed(0)
    m = _create(name, dim, heads).eval()
    out = {}
    with torch.no_grad():
        state = m.init_state(1)
        t = 0
        for target in sorted(at):
            while t < target:
                _, state = m.step(torch.randn(1, dim), state)
                t += 1
            times = []
            for _ in range(repeats):
                x = torch.randn(1, dim)
                t0 = time.perf_counter()
                m.step(x, state)  # state not advanced: the cost at position t
                times.append(time.perf_counter() - t0)
            out[target] = sorted(times)[len(times) // 2]
    return out


if __name__ == "__main__":
    for mixer in ("deltanet", "linear_attention", "mamba"):
        res = decode_step_seconds(mixer)
        print(mixer, {t: f"{s * 1e6:.0f} us" for t, s in res.items()})
