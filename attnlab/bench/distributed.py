"""Scale-out benchmarks (issue 15): sequence-parallel memory, data-parallel throughput, ``compare --workers``.

    python -m attnlab.bench.distributed sp --n 16384          # peak memory per rank, Ulysses / ring vs one process
    python -m attnlab.bench.distributed ddp --steps 30        # tokens/s per process, 2 ranks vs one process
    python -m attnlab.bench.distributed compare --steps-scale 0.3   # compare wall time, --workers 2 vs serial

Each prints a Markdown table. Every arm runs in fresh processes (:func:`attnlab.distributed.run_ranks`,
one torch thread each), with glibc told to map each block of 64 KiB or more on its own, so a process's
resident memory follows its live tensors and each peak is the measured computation's own. The
communication volume of the sequence-parallel attentions is computed, not measured
(:func:`sp_communication_bytes`). Results and their commands: benchmarks/distributed.md.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import time
from typing import Iterator

import torch

__all__ = ["sp_communication_bytes", "sp_memory", "ddp_throughput", "compare_wall", "main"]

SHAPE = dict(batch=1, heads=8, head_dim=64)


@contextlib.contextmanager
def clean_malloc() -> Iterator[None]:
    """Processes started inside map every allocation of 64 KiB or more on its own (freed memory leaves at once)."""
    before = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MALLOC_MMAP_THRESHOLD_")
        else:
            os.environ["MALLOC_MMAP_THRESHOLD_"] = before


def sp_communication_bytes(kind: str, n: int, world: int, *, batch: int = 1, heads: int = 8, head_dim: int = 64,
                           itemsize: int = 4) -> int:
    """Bytes one rank sends per forward + backward step of ``kind`` attention ("ulysses" or "ring").

    A rank's block of q, k, v, the output or a gradient holds ``E = B * H * N/W * D`` elements. Ulysses sends
    (W-1)/W of each tensor it exchanges: q, k, v and the output forward, then q, k, v, the output and its
    gradient to the head layout and dq, dk, dv back in the backward (which exchanges q, k, v again instead of
    keeping them): ``12 E (W-1)/W``. Ring: W-1 passes of (k, v) forward, W-1 of (k, v, dk, dv) and one of
    (dk, dv) backward: ``(6 (W-1) + 2) E``.
    """
    e = batch * heads * (n // world) * head_dim
    if kind == "ulysses":
        elements = 12 * e * (world - 1) / world
    elif kind == "ring":
        elements = (6 * (world - 1) + 2) * e
    else:
        raise ValueError(f"kind: expected 'ulysses' or 'ring', received {kind!r}")
    return int(elements * itemsize)


def _sp_rank(kind: str, n: int, seed: int = 0) -> tuple[float, float]:
    """On every rank: (peak memory rise in MiB, seconds) of a second forward + backward of ``kind`` attention (the
    first, untimed, pays one-off costs such as the autograd engine's and the kernels' first-use allocations)."""
    import torch.distributed as dist

    from attnlab.distributed import ring_attention, ulysses_attention
    from attnlab.ops.attention import attention
    from attnlab.utils.memory import PeakRSS

    world, rank = dist.get_world_size(), dist.get_rank()
    local = n // world
    g = torch.Generator().manual_seed(seed)
    full = [torch.randn(SHAPE["batch"], SHAPE["heads"], n, SHAPE["head_dim"], generator=g) for _ in range(4)]
    q, k, v, dout = (t[:, :, rank * local:(rank + 1) * local].clone() for t in full)
    del full
    for t in (q, k, v):
        t.requires_grad_(True)
    fn = {"single": attention, "ulysses": ulysses_attention, "ring": ring_attention}[kind]
    fn(q, k, v).backward(dout)  # a first step pays the one-off set-up; the peak is a training step's from then on
    for t in (q, k, v):
        t.grad = None
    dist.barrier()
    probe, t0 = PeakRSS().start(), time.perf_counter()
    fn(q, k, v).backward(dout)
    return probe.rise_mib(), time.perf_counter() - t0


def sp_memory(n: int = 16384, world: int = 2, repeats: int = 1) -> list[dict]:
    """Peak memory per rank and time of one fwd+bwd of Ulysses and ring attention (``world`` ranks) and of
    single-process attention (SDPA), at sequence length ``n`` (B=1, H=8, D=64, fp32, non-causal)."""
    from attnlab.distributed import run_ranks

    rows = []
    for rep in range(repeats):
        with clean_malloc():
            for kind, w in (("single", 1), ("ulysses", world), ("ring", world)):
                got = run_ranks(_sp_rank, kind, n, world_size=w, timeout=1800)
                rows.append({"kind": kind, "n": n, "world": w, "repeat": rep,
                             "peak_mib_per_rank": max(p for p, _ in got), "seconds": max(s for _, s in got),
                             "comm_mib_per_rank": 0.0 if kind == "single" else
                             sp_communication_bytes(kind, n, w, **SHAPE) / 2**20})
    return rows


def _ddp_rank(steps: int, batch: int, seq_len: int, dim: int, depth: int) -> dict:
    """On every rank: train a SequenceModel on char_lm under DataParallel; tokens/s of this process."""
    from attnlab.distributed import DataParallel
    from attnlab.models import build_for_task
    from attnlab.tasks import create
    from attnlab.train import TrainConfig, Trainer

    task = create("char_lm", seq_len=seq_len, seed=0)
    torch.manual_seed(0)
    model = build_for_task(task.spec, mixer="softmax", dim=dim, depth=depth, num_heads=4)
    config = TrainConfig(steps=steps + 3, batch_size=batch, lr=1e-3, warmup_steps=1, eval_every=0, log_every=1000)
    trainer = Trainer(model, task, config, parallel=DataParallel(batch_size=batch))
    for _ in range(3):  # warm-up steps, not timed
        trainer.step()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        trainer.step()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    tokens = steps * batch * seq_len / trainer.parallel.world_size  # this process's share
    return {"tokens_per_s_per_process": tokens / seconds, "tokens_per_cpu_s": tokens / cpu, "seconds": seconds}


def ddp_throughput(steps: int = 30, batch: int = 32, seq_len: int = 256, dim: int = 128, depth: int = 2,
                   world: int = 2, repeats: int = 1) -> list[dict]:
    """Tokens/s per process (wall clock, and per CPU second of the process): one process (1 thread) against
    ``world`` data-parallel ranks (1 thread each), the same global batch, alternating the arms repeat by repeat;
    ``load`` is the 1-minute load average after each arm."""
    from attnlab.distributed import run_ranks

    rows = []
    for rep in range(repeats):
        for w in (1, world):
            got = run_ranks(_ddp_rank, steps, batch, seq_len, dim, depth, world_size=w, timeout=1800)
            rows.append({"world": w, "repeat": rep, "tokens_per_s_per_process":
                         min(r["tokens_per_s_per_process"] for r in got),
                         "tokens_per_cpu_s": min(r["tokens_per_cpu_s"] for r in got),
                         "seconds": max(r["seconds"] for r in got), "load": os.getloadavg()[0]})
    return rows


def compare_wall(suite: str = "default", steps_scale: float = 0.3, workers: int = 2, repeats: int = 1,
                 out_dir: str = "runs/bench/compare-workers") -> list[dict]:
    """Wall time of ``attnlab compare`` on ``suite``: one worker (serial) against ``workers``, alternating.
    ``overhead_per_run_s``: (wall - training seconds / workers) / runs, what a run costs beyond its training
    steps (process start-up shared out, model build, evaluations, checkpoints, outputs)."""
    from attnlab.compare import run_compare
    from attnlab.suites import get_suite

    rows = []
    for rep in range(repeats):
        for w in (1, workers):
            t0 = time.perf_counter()
            res = run_compare(get_suite(suite), out_dir=f"{out_dir}/{w}-{rep}", progress=False,
                              steps_scale=steps_scale, workers=w)
            wall, train = time.perf_counter() - t0, sum(r.train_seconds for r in res.records)
            rows.append({"workers": w, "repeat": rep, "wall_seconds": wall, "train_seconds": train,
                         "runs": len(res.records), "overhead_per_run_s": (wall - train / w) / len(res.records),
                         "load": os.getloadavg()[0], "qualities": [r.quality for r in res.records]})
    return rows


def _markdown(rows: list[dict]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``python -m attnlab.bench.distributed {sp,ddp,compare}``: run one benchmark, print its Markdown table."""
    p = argparse.ArgumentParser(prog="python -m attnlab.bench.distributed", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("sp")
    s.add_argument("--n", type=int, default=16384)
    s.add_argument("--repeats", type=int, default=1)
    s = sub.add_parser("ddp")
    s.add_argument("--steps", type=int, default=30)
    s.add_argument("--batch", type=int, default=32)
    s.add_argument("--seq-len", type=int, default=256)
    s.add_argument("--dim", type=int, default=128)
    s.add_argument("--repeats", type=int, default=1)
    s = sub.add_parser("compare")
    s.add_argument("--suite", default="default")
    s.add_argument("--steps-scale", type=float, default=0.3)
    s.add_argument("--repeats", type=int, default=1)
    args = p.parse_args(argv)
    if args.what == "sp":
        rows = sp_memory(args.n, repeats=args.repeats)
    elif args.what == "ddp":
        rows = ddp_throughput(args.steps, args.batch, args.seq_len, args.dim, repeats=args.repeats)
    else:
        rows = compare_wall(args.suite, args.steps_scale, repeats=args.repeats)
    print(_markdown(rows))


if __name__ == "__main__":
    main()
