"""The bf16 tables of benchmarks/RESULTS.md (issue 16): each op or step in fp32 and in bf16, side by side.

    python -m attnlab.bench.precision_tables [--only attention,delta_rule,...] [--repeats 5] [--threads 1]

Every item runs its candidates interleaved in ONE process (round-robin, repeat by repeat, after one
warm-up call each), and reports for each the median wall time and the median CPU time of the process
(``time.process_time``; with one thread it is the time the candidate computed, which the other jobs of
a shared machine inflate far less than wall time), and the ratios to the item's fp32 candidate of the same
configuration and to its fastest fp32 candidate (:func:`ratio_rows`). The
machine load (/proc/loadavg) is printed before and after each item.

Items: ``attention`` (softmax attention N=4096, B=1, H=8, D=64, fwd+bwd), ``delta_rule`` (chunkwise,
N=8192, B=1, H=4, D=64, C=32 and 64), ``local`` (sliding window N=4096 w=256 causal; 2-D NA 64x64 k=7),
``scan`` (selective scan L=8192, D=512, N=16), ``sequence_step`` (an AdamW step of a 4-layer SequenceModel
LM, seq 256, batch 16, at widths 128 / 256 / 512, softmax mixers), ``layer`` (the softmax mixer against a
hand-written Linear qkv + SDPA + Linear out module, fp32, N=2048, B=4, dim 256).
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from attnlab.bench.inputs import create_mixer, random_qkv
from attnlab.bench.linear import delta_rule_inputs
from attnlab.bench.report import load_average
from attnlab.bench.training import HandwrittenAttention
from attnlab.ops.attention import attention
from attnlab.ops.delta_rule import delta_rule_chunkwise
from attnlab.ops.neighborhood import neighborhood_attention
from attnlab.ops.selective_scan import selective_scan
from attnlab.ops.sliding_window import sliding_window_attention
from attnlab.utils.precision import precision_context

__all__ = ["ITEMS", "interleaved_wall_cpu", "ratio_rows", "main"]


def interleaved_wall_cpu(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[float, float]]:
    """{name: (median wall s, median CPU s)} over ``repeats`` round-robin rounds after one warm-up round."""
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(1 + repeats):
        for name, fn in fns.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            if r:
                wall[name].append(time.perf_counter() - w0)
                cpu[name].append(time.process_time() - c0)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in fns}


def _fwd_bwd(fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor]) -> Callable[[], None]:
    """fn(*inputs) forward and backward of a fixed random cotangent; grads cleared first."""
    g = {}

    def run() -> None:
        for t in inputs:
            t.grad = None
        out = fn(*inputs)
        if "g" not in g:
            g["g"] = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out.dtype)
        out.backward(g["g"])

    return run


def _in(dtype, make):
    return [t.detach().to(dtype).requires_grad_(True) for t in make()]


def item_attention(n: int = 4096) -> dict[str, Callable]:
    qkv = lambda: random_qkv(n, torch.float32, "fwdbwd", batch=1, heads=8, head_dim=64)  # noqa: E731
    return {f"{p} attention": _fwd_bwd(attention, _in(dt, qkv)) for p, dt in (("fp32", torch.float32),
                                                                            ("bf16", torch.bfloat16))}


def item_delta_rule(n: int = 8192) -> dict[str, Callable]:
    make = lambda: delta_rule_inputs(n, torch.float32, batch=1, heads=4, head_dim=64, requires_grad=False)  # noqa: E731
    out = {}
    for p, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        for c in (32, 64):
            out[f"{p} chunkwise C={c}"] = _fwd_bwd(lambda q, k, v, b, c=c: delta_rule_chunkwise(q, k, v, b, chunk_size=c)[0],
                                                  _in(dt, make))
    return out


def item_local(n: int = 4096) -> dict[str, Callable]:
    sw = lambda q, k, v: sliding_window_attention(q, k, v, 256, causal=True, backend="tiled")  # noqa: E731
    na = lambda q, k, v: neighborhood_attention(q, k, v, 7, grid=(64, 64), backend="tiled")  # noqa: E731
    out = {}
    for p, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        out[f"{p} sliding window"] = _fwd_bwd(sw, _in(dt, lambda: random_qkv(n, torch.float32, "fwdbwd", batch=1,
                                                                          heads=8, head_dim=64)))
        out[f"{p} 2-D NA"] = _fwd_bwd(na, _in(dt, lambda: random_qkv(n, torch.float32, "fwdbwd", batch=1, heads=4,
                                                                    head_dim=32)))
    return out


def item_scan(length: int = 8192, d: int = 512, n: int = 16) -> dict[str, Callable]:
    def make():
        g = torch.Generator().manual_seed(0)
        return [torch.randn(1, d, length, generator=g), torch.rand(1, d, length, generator=g) * 0.1,
                -torch.rand(d, n, generator=g) - 0.5, torch.randn(1, n, length, generator=g),
                torch.randn(1, n, length, generator=g)]

    return {f"{p} selective scan": _fwd_bwd(selective_scan, _in(dt, make)) for p, dt in (("fp32", torch.float32),
                                                                                       ("bf16", torch.bfloat16))}


def _lm_step(dim: int, precision: str, seq: int = 256, batch: int = 16, vocab: int = 256) -> Callable[[], None]:
    from attnlab.models import SequenceModel

    torch.manual_seed(0)
    model = SequenceModel(vocab_size=vocab, dim=dim, depth=4, num_heads=4, mixer="softmax", max_len=seq, head="lm")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(0, vocab, (batch, seq + 1), generator=torch.Generator().manual_seed(0))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with precision_context(precision):
            logits = model(tokens[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, vocab), tokens[:, 1:].reshape(-1))
        loss.backward()
        opt.step()

    return step


def item_sequence_step() -> dict[str, Callable]:
    return {f"{p} dim {dim}": _lm_step(dim, p) for dim in (128, 256, 512) for p in ("fp32", "bf16")}


def item_layer(n: int = 2048, batch: int = 4, dim: int = 256, heads: int = 4) -> dict[str, Callable]:
    torch.manual_seed(0)
    mixer = create_mixer("softmax", dim, heads).train()
    bare = HandwrittenAttention(dim, heads).train()
    bare.load_state_dict(mixer.state_dict())
    x = torch.randn(batch, n, dim)
    return {"fp32 hand-written": _fwd_bwd(bare, _in(torch.float32, lambda: [x])),
            "fp32 softmax mixer": _fwd_bwd(mixer, _in(torch.float32, lambda: [x]))}


ITEMS: dict[str, Callable[[], dict[str, Callable]]] = {
    "attention": item_attention, "delta_rule": item_delta_rule, "local": item_local, "scan": item_scan,
    "sequence_step": item_sequence_step, "layer": item_layer,
}


def ratio_rows(name: str, res: dict[str, tuple[float, float]]) -> list[tuple[str, float, float, str, str]]:
    """The rows of an item's table: (candidate, wall s, CPU s, "fp32 wall / this | fp32 CPU / this" against the
    fp32 candidate of the same configuration, the same against the item's fastest fp32 candidate by CPU time).

    The second ratio is the one a target such as "bf16 >= 2x fp32" reads when each precision may use its best
    configuration (the delta rule: fp32 is fastest at C=32, bf16 at C=64); it is blank for fp32 candidates. In the
    ``layer`` item every candidate is compared with the hand-written module.
    """
    fp32 = {k: v for k, v in res.items() if k.startswith("fp32 ")}
    best = min(fp32.values(), key=lambda wc: wc[1]) if fp32 else None
    rows = []
    for key, (w, c) in res.items():
        label = key.split(" ", 1)[1]
        base = res.get("fp32 " + label) if key.startswith("bf16") else None
        if base is None and name == "layer":
            base = res["fp32 hand-written"]
        same = f"{base[0] / w:.2f} | {base[1] / c:.2f}" if base else "1 | 1"
        to_best = f"{best[0] / w:.2f} | {best[1] / c:.2f}" if best and key.startswith("bf16") else ""
        rows.append((key, w, c, same, to_best))
    return rows


def _report(name: str, res: dict[str, tuple[float, float]], load0: str) -> None:
    print(f"\n### {name} (load {load0} -> {load_average()}, torch threads {torch.get_num_threads()})\n")
    print("| candidate | wall ms | CPU ms | fp32 wall / this | fp32 CPU / this | best fp32 wall / this "
          "| best fp32 CPU / this |\n|---|---|---|---|---|---|---|")
    for key, w, c, same, to_best in ratio_rows(name, res):
        print(f"| {key} | {w * 1e3:.1f} | {c * 1e3:.1f} | {same} | {to_best or ' | '} |")


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m attnlab.bench.precision_tables [--only a,b] [--repeats 5] [--threads 1]``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(ITEMS), help=f"comma-separated items among {list(ITEMS)}")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    for name in a.only.split(","):
        if name not in ITEMS:
            raise SystemExit(f"--only: expected items among {list(ITEMS)}, received {name!r}")
        load0 = load_average()
        _report(name, interleaved_wall_cpu(ITEMS[name](), a.repeats), load0)


if __name__ == "__main__":
    main()
