"""``attnlab bench``: time and peak memory against sequence length.

Each size runs in its own subprocess (``python -m attnlab.bench.runner --worker``), with the
implementations side by side in that process. In the worker, each implementation first runs
once untimed (the warm-up, which also compiles what compiles); peak memory is the rise of the
process's resident set during that call (VmHWM, reset through ``/proc/self/clear_refs``) above
its level before the call. Then the implementations are timed round-robin, repeat by repeat,
so that the load of a shared machine hits all of them alike; a row reports the median.
Every row records the case params, dtype, mode and torch's intra-op thread count it ran with.

Precisions side by side: ``dtype`` may list several of ``float32``, ``bfloat16``, ``float64`` and
``autocast`` (fp32 inputs and weights, each call under ``torch.autocast("cpu", dtype=torch.bfloat16)``,
its backward outside it), comma-separated. The case is then set up once per entry in the same
worker and its implementations timed round-robin together; the first entry keeps the plain impl
names (so ratios against the case's reference stay as they were), the others are suffixed
``@bfloat16`` / ``@autocast``. ``attnlab bench attention --dtype float32,bfloat16`` gives the
bf16 / fp32 ratio of each implementation measured in one run.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
from dataclasses import asdict, dataclass, field

import torch

from attnlab.bench.registry import RUNNER_PARAMS, get_case, validate_sizes
from attnlab.bench.thunks import Impls, Thunk, autocast_thunk
from attnlab.utils.checks import check_positive_int, fail
from attnlab.utils.memory import PeakRSS
from attnlab.utils.timing import interleaved_median_seconds

__all__ = ["BenchRow", "run_bench", "DTYPES", "parse_dtypes"]

#: dtype names -> the dtype a case's setup builds its inputs (and modules) in; "autocast" builds fp32 and
#: runs each call under CPU autocast to bf16
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64, "autocast": torch.float32}


def parse_dtypes(dtype: str, arg: str = "dtype") -> list[str]:
    """``"float32,bfloat16"`` -> ``["float32", "bfloat16"]``; ValueError naming ``arg`` for an unknown or repeated name."""
    names = [d.strip() for d in str(dtype).split(",")]
    if not names or any(d not in DTYPES for d in names) or len(set(names)) != len(names):
        fail(arg, f"distinct names among {list(DTYPES)}, comma-separated", repr(dtype))
    return names


@dataclass
class BenchRow:
    """One measurement: case, impl, N, mode, dtype, median seconds, peak extra MiB (or error/skip), and the setting.

    ``threads`` is torch's intra-op thread count during the measurement (None when the worker did not
    report, e.g. it was killed); ``params`` the case params it ran with.
    """

    case: str
    impl: str
    n: int
    mode: str
    dtype: str
    seconds: float | None
    peak_mib: float | None
    status: str  # "ok", "skipped: ...", "error: ..."
    threads: int | None = None
    params: dict = field(default_factory=dict)


def _warm_up_peak_mib(thunk: Thunk) -> float:
    """Run ``thunk`` once (the untimed warm-up) and return its peak resident memory above the level before it."""
    gc.collect()
    peak = PeakRSS().start()
    thunk()
    return peak.rise_mib()


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:200]


def measure_impls(impls: Impls, wanted: list[str], repeats: int) -> dict[str, tuple[float | None, float | None, str]]:
    """{impl: (median seconds, peak extra MiB, status)} for each name in ``wanted``.

    Each available impl is warmed up alone (its memory is measured then), the survivors are timed
    round-robin over ``repeats`` rounds; an impl that is skipped, unknown or fails gets its status.
    """
    out: dict[str, tuple[float | None, float | None, str]] = {}
    peaks: dict[str, float] = {}
    for name in wanted:
        if name in impls.skipped:
            out[name] = (None, None, f"skipped: {impls.skipped[name]}")
        elif name not in impls.thunks:
            out[name] = (None, None, "skipped: not available here")
        else:
            try:
                peaks[name] = _warm_up_peak_mib(impls.thunks[name])
            except (RuntimeError, MemoryError, NotImplementedError, ValueError) as e:
                out[name] = (None, None, f"error: {_first_line(e)}")
    running: list[str] = []

    def tracked(name: str):
        def run() -> None:
            running[:] = [name]
            impls.thunks[name]()
        return run

    seconds: dict[str, float] = {}
    try:
        if peaks:
            seconds = interleaved_median_seconds({n: tracked(n) for n in peaks}, repeats, warmup=0)
    except (RuntimeError, MemoryError, NotImplementedError, ValueError) as e:
        culprit = running[0] if running else None
        for name in peaks:  # the round-robin stopped: nothing was timed to the end
            why = _first_line(e) if name in (culprit, None) else f"not timed: {culprit} failed in the timed rounds"
            out[name] = (None, None, f"error: {why}")
    for name in wanted:
        if name in seconds:
            out[name] = (seconds[name], peaks[name], "ok")
    return out


def _worker(args: argparse.Namespace) -> None:
    case = get_case(args.case)
    overrides = json.loads(args.params)
    threads = overrides.get("threads", case.params.get("threads"))
    if threads is not None:
        torch.set_num_threads(check_positive_int("threads", threads))
    params = {**case.params, **overrides}
    try:
        limit = int(args.mem_limit_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ValueError, OSError):
        pass
    torch.manual_seed(0)

    dtypes = parse_dtypes(args.dtype)
    dtype_of: dict[str, str] = {}

    def row(impl: str, seconds=None, peak=None, status="ok") -> dict:
        return asdict(BenchRow(case.name, impl, args.n, args.mode, dtype_of.get(impl, args.dtype), seconds, peak,
                               status, torch.get_num_threads(), params))

    try:
        impls = Impls(args.mode)
        for i, label in enumerate(dtypes):
            part = case.setup(args.n, DTYPES[label], args.mode, **case.setup_params(overrides))
            suffix = f"@{label}" if i else ""
            for name, thunk in part.thunks.items():
                impls.thunks[name + suffix] = autocast_thunk(thunk) if label == "autocast" else thunk
                dtype_of[name + suffix] = label
            impls.skipped.update({name + suffix: why for name, why in part.skipped.items()})
            dtype_of.update({name + suffix: label for name in part.skipped})
    except Exception as e:  # noqa: BLE001 - report, do not crash the whole sweep
        print(json.dumps([row("*", status=f"error: {_first_line(e)}")]))
        return
    # --impls names the case's implementations; with several dtypes each name brings its twins
    suffixes = [f"@{label}" if i else "" for i, label in enumerate(dtypes)]
    wanted = [n + s for s in suffixes for n in args.impls.split(",")] if args.impls else list(impls.thunks)
    results = measure_impls(impls, wanted, args.repeats)
    rows = [row(name, *results[name]) for name in wanted]
    rows += [row(name, status=f"skipped: {why}") for name, why in impls.skipped.items() if name not in wanted]
    print(json.dumps(rows))


def run_bench(
    case: str,
    *,
    sizes: list[int] | None = None,
    mode: str = "fwdbwd",
    dtype: str = "float32",
    repeats: int = 3,
    impls: list[str] | None = None,
    params: dict | None = None,
    threads: int | None = None,
    timeout: float = 900.0,
    mem_limit_gib: float = 20.0,
    progress: bool = True,
) -> list[BenchRow]:
    """Run ``case`` for each N in ``sizes`` (default: the case's; one subprocess per N); returns the rows.

    ``threads`` sets torch's intra-op threads in the worker (default: the case's ``threads`` param if it
    has one, else torch's default, which ``OMP_NUM_THREADS`` sets).
    """
    c = get_case(case)
    if mode not in c.modes:
        fail("mode", f"one of {c.modes}", repr(mode))
    parse_dtypes(dtype)
    check_positive_int("repeats", repeats)
    sizes = validate_sizes(c, c.sizes if sizes is None else sizes)
    params = dict(params or {})
    if threads is not None:
        params["threads"] = check_positive_int("threads", threads)
    c.setup_params(params)  # unknown keys fail here, before any subprocess
    rows: list[BenchRow] = []
    from tqdm import tqdm

    for n in tqdm(sizes, desc=f"bench {case} {mode}", disable=not progress):
        cmd = [sys.executable, "-m", "attnlab.bench.runner", "--worker", "--case", case, "--n", str(n), "--mode", mode,
               "--dtype", dtype, "--repeats", str(repeats), "--params", json.dumps(params),
               "--mem-limit-gib", str(mem_limit_gib)]
        if impls:
            cmd += ["--impls", ",".join(impls)]
        failed = dict(case=case, impl="*", n=n, mode=mode, dtype=dtype, seconds=None, peak_mib=None,
                      params={**c.params, **params})
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ})
        except subprocess.TimeoutExpired:
            rows.append(BenchRow(**failed, status=f"error: timed out after {timeout:.0f} s"))
            continue
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[")]
        if proc.returncode != 0 or not lines:
            err = (proc.stderr.strip().splitlines() or ["killed (out of memory?)"])[-1]
            rows.append(BenchRow(**failed, status=f"error: {err[:200]}"))
            continue
        rows.extend(BenchRow(**r) for r in json.loads(lines[-1]))
    return rows


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
