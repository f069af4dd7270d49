"""Benchmarks of issue #3 (linear-time mixers): prints the markdown tables of benchmarks/linear.md.

    OMP_NUM_THREADS=1 python benchmarks/linear_bench.py [--only delta_rule,delta_threads,selective_scan,ssm_mixers,decode]

Each case runs through ``attnlab.bench.run_bench`` (one subprocess per N, implementations side by
side). Mixers run one per ``run_bench`` call so that every peak-memory figure comes from a fresh
process. The machine load (/proc/loadavg) is printed beside each table.
"""
from __future__ import annotations

import argparse
import os

from attnlab.bench.runner import run_bench, rows_to_markdown


def _load() -> str:
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "?"


def _table(title, rows, reference):
    print(f"\n### {title}\n\nload: {_load()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}\n")
    print(rows_to_markdown(rows, reference))


def delta_rule_threads(n: int = 8192, repeats: int = 3, recurrent_repeats: int = 2) -> None:
    """Delta rule at N=n in ONE process: chunkwise (C=64, C=32) and the recurrence, 1 and 2 threads interleaved.

    Prints a markdown table of the best wall and CPU ms per (impl, threads) after one warm-up call each, so
    that 1- and 2-thread ratios come from the same process and the same minutes of machine load.
    """
    import time

    import torch
    import torch.nn.functional as F

    from attnlab.ops.delta_rule import delta_rule_chunkwise, delta_rule_recurrent

    g = torch.Generator().manual_seed(0)
    q, v = (torch.randn(1, 4, n, 64, generator=g) for _ in range(2))
    k = F.normalize(torch.randn(1, 4, n, 64, generator=g), dim=-1)
    beta = torch.rand(1, 4, n, generator=g)
    xs = [t.requires_grad_() for t in (q, k, v, beta)]
    do = torch.randn(1, 4, n, 64, generator=g)
    impls = {"chunkwise C=64": lambda: delta_rule_chunkwise(*xs, chunk_size=64)[0],
             "chunkwise C=32": lambda: delta_rule_chunkwise(*xs, chunk_size=32)[0],
             "recurrent": lambda: delta_rule_recurrent(*xs)[0]}
    threads0 = torch.get_num_threads()
    res: dict = {}
    load0 = _load()
    for rep in range(1 + repeats):
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for name, fn in impls.items():
                if name == "recurrent" and rep > recurrent_repeats:
                    continue
                t0, c0 = time.perf_counter(), time.process_time()
                torch.autograd.grad(fn(), xs, do)
                if rep:  # rep 0 is the warm-up
                    res.setdefault((name, threads), []).append((time.perf_counter() - t0, time.process_time() - c0))
    torch.set_num_threads(threads0)
    rec = {t: min(w for w, _ in res[("recurrent", t)]) for t in (1, 2)}
    print(f"\n### delta rule N={n}, 1 vs 2 threads in one process (best of {repeats}; recurrence best of "
          f"{recurrent_repeats}); load {load0} -> {_load()}\n")
    print("| impl | threads | wall ms | CPU ms | recurrent(1 thread) / impl | recurrent(same threads) / impl |")
    print("|---|---|---|---|---|---|")
    for (name, threads), r in res.items():
        w, c = min(x[0] for x in r), min(x[1] for x in r)
        print(f"| {name} | {threads} | {w * 1e3:.0f} | {c * 1e3:.0f} | {rec[1] / w:.1f} | {rec[threads] / w:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="delta_rule,delta_threads,selective_scan,ssm_mixers,decode")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--max-fla-recurrent", type=int, default=8192,
                    help="skip fla's token recurrence above this N (its backward is super-linear: ~65 s at 8192)")
    args = ap.parse_args()
    only = set(args.only.split(","))
    if "delta_rule" in only:
        _table("delta rule op, B=1, H=4, D=64, fp32 fwd+bwd",
               run_bench("delta_rule", sizes=[2048, 8192], repeats=args.repeats, progress=False,
                         params={"max_fla_recurrent": args.max_fla_recurrent}), "recurrent")
    if "delta_threads" in only:
        delta_rule_threads()
    if "selective_scan" in only:
        _table("selective scan op, B=1, D=512, N=16, fp32 fwd+bwd",
               run_bench("selective_scan", sizes=[2048, 8192], repeats=args.repeats, progress=False), "reference")
    if "ssm_mixers" in only:
        rows = []
        for name in ("mamba", "s4d", "hyena", "softmax"):
            rows += run_bench("ssm_mixers", sizes=[4096, 16384], repeats=args.repeats, impls=[name], progress=False)
        _table("mixers at dim 256, causal, B=1, fp32 fwd+bwd", rows, "softmax")
    if "decode" in only:
        from attnlab.bench.linear import decode_step_seconds

        print(f"\n### decoding: one step after t tokens (dim 256), median of 50; load {_load()}\n")
        for name in ("mamba", "deltanet", "linear_attention"):
            res = decode_step_seconds(name, at=(100, 2000, 8000))
            print(f"- {name}: " + ", ".join(f"t={t}: {s * 1e6:.0f} us" for t, s in res.items()))


if __name__ == "__main__":
    main()
