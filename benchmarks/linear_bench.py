"""Benchmarks of issue #3 (linear-time mixers): prints the markdown tables of benchmarks/linear.md.

    OMP_NUM_THREADS=1 python benchmarks/linear_bench.py [--only delta_rule,selective_scan,ssm_mixers,decode]

Each case runs through ``attnlab.bench.run_bench`` (one subprocess per N, implementations side by
side). Mixers run one per ``run_bench`` call so that every peak-memory figure comes from a fresh
process. The machine load (/proc/loadavg) is printed beside each table.
"""
from __future__ import annotations

import argparse
import os

from attnlab.bench import run_bench, rows_to_markdown


def _load() -> str:
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "?"


def _table(title, rows, reference):
    print(f"\n### {title}\n\nload: {_load()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}\n")
    print(rows_to_markdown(rows, reference))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="delta_rule,selective_scan,ssm_mixers,decode")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    only = set(args.only.split(","))
    if "delta_rule" in only:
        _table("delta rule op, B=1, H=4, D=64, fp32 fwd+bwd",
               run_bench("delta_rule", sizes=[2048, 8192], repeats=args.repeats, progress=False), "recurrent")
    if "selective_scan" in only:
        _table("selective scan op, B=1, D=512, N=16, fp32 fwd+bwd",
               run_bench("selective_scan", sizes=[2048, 8192], repeats=args.repeats, progress=False), "reference")
    if "ssm_mixers" in only:
        rows = []
        for name in ("mamba", "s4d", "hyena", "softmax"):
            rows += run_bench("ssm_mixers", sizes=[4096, 16384], repeats=args.repeats, impls=[name], progress=False)
        _table("mixers at dim 256, causal, B=1, fp32 fwd+bwd", rows, "softmax")
    if "decode" in only:
        from attnlab.bench_linear import decode_step_seconds

        print(f"\n### decoding: one step after t tokens (dim 256), median of 50; load {_load()}\n")
        for name in ("mamba", "deltanet", "linear_attention"):
            res = decode_step_seconds(name, at=(100, 2000, 8000))
            print(f"- {name}: " + ", ".join(f"t={t}: {s * 1e6:.0f} us" for t, s in res.items()))


if __name__ == "__main__":
    main()
