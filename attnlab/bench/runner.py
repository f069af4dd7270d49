"""``attnlab bench``: time and peak memory against sequence length.

Each size runs in its own subprocess (``python -m attnlab.bench.runner --worker``), with
the implementations side by side in that process; peak memory is the rise of
the process's resident set (VmHWM, reset before each implementation through
``/proc/self/clear_refs``) above its level before the call. Results: a table,
JSON, a Markdown table and a PNG plot (time and memory vs N, log-log).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from attnlab.bench.registry import available_cases, get_case

__all__ = ["BenchRow", "run_bench", "write_outputs"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}


@dataclass
class BenchRow:
    """One measurement: case, impl, N, mode, dtype, median seconds, peak extra MiB (or error/skip)."""

    case: str
    impl: str
    n: int
    mode: str
    dtype: str
    seconds: float | None
    peak_mib: float | None
    status: str  # "ok", "skipped: ...", "error: ..."


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _measure(thunk, repeats: int) -> tuple[float, float]:
    gc.collect()
    _reset_peak()
    base = _proc_status_kib("VmRSS")
    thunk()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        thunk()
        times.append(time.perf_counter() - t0)
    peak = _proc_status_kib("VmHWM")
    return statistics.median(times), max(peak - base, 0) / 1024


def _worker(args: argparse.Namespace) -> None:
    case = get_case(args.case)
    params = {**case.params, **json.loads(args.params)}
    try:
        limit = int(args.mem_limit_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ValueError, OSError):
        pass
    torch.manual_seed(0)
    rows = []
    try:
        setup = case.setup(args.n, DTYPES[args.dtype], args.mode, **params)
        impls, skipped = setup if isinstance(setup, tuple) else (setup, {})
    except Exception as e:  # report, do not crash the whole sweep
        print(json.dumps([asdict(BenchRow(case.name, "*", args.n, args.mode, args.dtype, None, None, f"error: {e}"))]))
        return
    wanted = args.impls.split(",") if args.impls else list(impls)
    for name in wanted:
        if name in skipped:
            rows.append(BenchRow(case.name, name, args.n, args.mode, args.dtype, None, None, f"skipped: {skipped[name]}"))
            continue
        if name not in impls:
            rows.append(BenchRow(case.name, name, args.n, args.mode, args.dtype, None, None, "skipped: not available here"))
            continue
        try:
            sec, mib = _measure(impls[name], args.repeats)
            rows.append(BenchRow(case.name, name, args.n, args.mode, args.dtype, sec, mib, "ok"))
        except (RuntimeError, MemoryError, NotImplementedError) as e:
            rows.append(BenchRow(case.name, name, args.n, args.mode, args.dtype, None, None, f"error: {str(e).splitlines()[0][:200]}"))
        gc.collect()
    for name, why in skipped.items():
        if name not in wanted:
            rows.append(BenchRow(case.name, name, args.n, args.mode, args.dtype, None, None, f"skipped: {why}"))
    print(json.dumps([asdict(r) for r in rows]))


def run_bench(
    case: str,
    *,
    sizes: list[int] | None = None,
    mode: str = "fwdbwd",
    dtype: str = "float32",
    repeats: int = 3,
    impls: list[str] | None = None,
    params: dict | None = None,
    timeout: float = 900.0,
    mem_limit_gib: float = 20.0,
    progress: bool = True,
) -> list[BenchRow]:
    """Run ``case`` for each N in ``sizes`` (one subprocess per N); returns the rows."""
    c = get_case(case)
    if mode not in c.modes:
        raise ValueError(f"mode: expected one of {c.modes}, received {mode!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {list(DTYPES)}, received {dtype!r}")
    rows: list[BenchRow] = []
    sizes = list(sizes or c.sizes)
    from tqdm import tqdm

    for n in tqdm(sizes, desc=f"bench {case} {mode}", disable=not progress):
        cmd = [sys.executable, "-m", "attnlab.bench.runner", "--worker", "--case", case, "--n", str(n), "--mode", mode,
               "--dtype", dtype, "--repeats", str(repeats), "--params", json.dumps(params or {}),
               "--mem-limit-gib", str(mem_limit_gib)]
        if impls:
            cmd += ["--impls", ",".join(impls)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ})
        except subprocess.TimeoutExpired:
            rows.append(BenchRow(case, "*", n, mode, dtype, None, None, f"error: timed out after {timeout:.0f} s"))
            continue
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[")]
        if proc.returncode != 0 or not lines:
            err = (proc.stderr.strip().splitlines() or ["killed (out of memory?)"])[-1]
            rows.append(BenchRow(case, "*", n, mode, dtype, None, None, f"error: {err[:200]}"))
            continue
        rows.extend(BenchRow(**r) for r in json.loads(lines[-1]))
    return rows


def rows_to_markdown(rows: list[BenchRow], reference: str) -> str:
    """Markdown table: per N and impl, time, peak memory and time ratio against ``reference``."""
    ref = {(r.n, r.mode): r.seconds for r in rows if r.impl == reference and r.seconds}
    out = ["| N | impl | mode | dtype | time (ms) | peak extra (MiB) | time / " + reference + " |", "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r.n, r.impl)):
        if r.seconds is None:
            out.append(f"| {r.n} | {r.impl} | {r.mode} | {r.dtype} | {r.status} | | |")
            continue
        base = ref.get((r.n, r.mode))
        ratio = f"{r.seconds / base:.3g}" if base else "—"
        out.append(f"| {r.n} | {r.impl} | {r.mode} | {r.dtype} | {r.seconds * 1e3:.2f} | {r.peak_mib:.1f} | {ratio} |")
    return "\n".join(out) + "\n"


def write_outputs(rows: list[BenchRow], out_dir: Path, case: str, reference: str) -> dict[str, Path]:
    """Write ``bench.json``, ``bench.md`` and ``bench.png`` (time and memory vs N) into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "bench.json", "md": out_dir / "bench.md", "png": out_dir / "bench.png"}
    paths["json"].write_text(json.dumps([asdict(r) for r in rows], indent=2))
    paths["md"].write_text(rows_to_markdown(rows, reference))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for impl in sorted({r.impl for r in rows if r.seconds is not None}):
        pts = sorted((r.n, r.seconds, r.peak_mib) for r in rows if r.impl == impl and r.seconds is not None)
        ns = [p[0] for p in pts]
        axes[0].plot(ns, [p[1] * 1e3 for p in pts], marker="o", label=impl)
        axes[1].plot(ns, [max(p[2], 0.1) for p in pts], marker="o", label=impl)
    for ax, ylabel in zip(axes, ["time (ms)", "peak extra memory (MiB)"]):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length N")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    mode = rows[0].mode if rows else ""
    fig.suptitle(f"attnlab bench {case} ({mode})")
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=110)
    plt.close(fig)
    return paths


def main(argv: list[str] | None = None) -> None:
    """Worker entry point: ``python -m attnlab.bench.runner --worker ...`` prints one JSON line of rows."""
    p = argparse.ArgumentParser(prog="python -m attnlab.bench.runner")
    p.add_argument("--worker", action="store_true", required=True)
    p.add_argument("--case", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--mode", default="fwdbwd")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--impls", default="")
    p.add_argument("--params", default="{}")
    p.add_argument("--mem-limit-gib", type=float, default=20.0)
    _worker(p.parse_args(argv))


if __name__ == "__main__":
    main()
