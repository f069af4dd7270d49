"""The tables of benchmarks/linear.md (linear-time mixers): op and mixer sweeps, thread scaling, decoding.

    OMP_NUM_THREADS=1 python -m attnlab.bench.linear_tables [--only delta_rule,delta_threads,selective_scan,ssm_mixers,decode]

The sweeps run through :func:`attnlab.bench.runner.run_bench` (one subprocess per N, implementations
side by side); mixers run one per ``run_bench`` call so that every peak-memory figure comes from a
fresh process. ``delta_threads`` times the delta rule at 1 and 2 threads interleaved in one process;
``decode`` times one recurrent decoding step after t tokens (O(1) per token). The machine load
(/proc/loadavg) is printed beside each table.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from attnlab.bench.inputs import create_mixer
from attnlab.bench.linear import delta_rule_inputs
from attnlab.bench.report import load_average, rows_to_markdown
from attnlab.bench.runner import run_bench
from attnlab.ops.delta_rule import delta_rule_chunkwise, delta_rule_recurrent

__all__ = ["delta_rule_threads", "decode_step_seconds", "main"]


def _table(title, rows, reference):
    print(f"\n### {title}\n\nload: {load_average()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}\n")
    print(rows_to_markdown(rows, reference))


def delta_rule_threads(n: int = 8192, repeats: int = 3, recurrent_repeats: int = 2) -> None:
    """Delta rule at N=n in ONE process: chunkwise (C=64, C=32) and the recurrence, 1 and 2 threads interleaved.

    Prints a markdown table of the best wall and CPU ms per (impl, threads) after one warm-up call each, so
    that 1- and 2-thread ratios come from the same process and the same minutes of machine load.
    """
    xs = delta_rule_inputs(n, torch.float32, batch=1, heads=4, head_dim=64, requires_grad=True)
    do = torch.randn(1, 4, n, 64, generator=torch.Generator().manual_seed(1))
    impls = {"chunkwise C=64": lambda: delta_rule_chunkwise(*xs, chunk_size=64)[0],
             "chunkwise C=32": lambda: delta_rule_chunkwise(*xs, chunk_size=32)[0],
             "recurrent": lambda: delta_rule_recurrent(*xs)[0]}
    threads0 = torch.get_num_threads()
    res: dict = {}
    load0 = load_average()
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
    print(f"\n### delta rule N={n}, B=1, H=4, D=64, fp32 fwd+bwd, 1 vs 2 threads in one process (best of {repeats}; "
          f"recurrence best of {recurrent_repeats}); load {load0} -> {load_average()}\n")
    print("| impl | threads | wall ms | CPU ms | recurrent(1 thread) / impl | recurrent(same threads) / impl |")
    print("|---|---|---|---|---|---|")
    for (name, threads), r in res.items():
        w, c = min(x[0] for x in r), min(x[1] for x in r)
        print(f"| {name} | {threads} | {w * 1e3:.0f} | {c * 1e3:.0f} | {rec[1] / w:.1f} | {rec[threads] / w:.1f} |")


def decode_step_seconds(name: str, *, dim: int = 256, heads: int = 4, at: tuple[int, ...] = (100, 5000),
                        repeats: int = 50) -> dict[int, float]:
    """Median seconds of one ``step`` of mixer ``name`` (batch 1) after t decoded tokens, for each t in ``at``."""
    torch.manual_seed(0)
    m = create_mixer(name, dim, heads).eval()
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


def main(argv: list[str] | None = None) -> None:
    """CLI: print the tables named by ``--only``."""
    ap = argparse.ArgumentParser(prog="python -m attnlab.bench.linear_tables", description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="delta_rule,delta_threads,selective_scan,ssm_mixers,decode")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--max-fla-recurrent", type=int, default=8192,
                    help="skip fla's token recurrence above this N (its backward is super-linear: ~65 s at 8192)")
    args = ap.parse_args(argv)
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
        print(f"\n### decoding: one step after t tokens (dim 256), median of 50; load {load_average()}\n")
        for name in ("mamba", "deltanet", "linear_attention"):
            res = decode_step_seconds(name, at=(100, 2000, 8000))
            print(f"- {name}: " + ", ".join(f"t={t}: {s * 1e6:.0f} us" for t, s in res.items()))


if __name__ == "__main__":
    main()
