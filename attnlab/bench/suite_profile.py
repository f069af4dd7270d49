"""Where a compare suite's training steps spend their CPU time, fp32 against bf16 autocast (issue 16).

    python -m attnlab.bench.suite_profile [--suite linear] [--repeats 5] [--profile-steps 3] [--threads 1]

For every (task, mixer) run of the suite, a :class:`~attnlab.train.Trainer` at the suite's model size, batch
and LR takes steps in fp32 and in bf16 (autocast, fp32 master weights), interleaved in one process; reported
per run: the median CPU time of one step (after a warm-up step) and, from torch.profiler's self CPU time over
``profile_steps`` fp32 steps, the share of the matrix-unit work (:data:`PRODUCT_OPS`: products, SDPA's fused
kernels, FFTs, convolutions: everything bf16 can speed up on this CPU's AMX units) and of copies and casts.

The suite's training time is the sum over its runs of steps x step time. Amdahl's bound
(:func:`amdahl_bound`) says what bf16 can reach at best: if every product took no time at all, the suite
would still take ``1 - product share`` (step-weighted) of its fp32 time. Evaluation, data and process
start-up are not counted (they only add fp32 time that bf16 does not remove).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Iterable

import torch

from attnlab.bench.precision_tables import interleaved_wall_cpu
from attnlab.bench.report import load_average

__all__ = ["PRODUCT_OPS", "CAST_OPS", "RunProfile", "op_shares", "amdahl_bound", "profile_run", "main"]

#: Profiler op names counted as matrix-unit work (what bf16 can make faster here).
PRODUCT_OPS = frozenset({
    "aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::addbmm",
    "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
    "aten::_fft_r2c", "aten::_fft_c2r", "aten::_fft_c2c", "aten::mkldnn_convolution", "aten::convolution_backward",
})
#: Profiler op names counted as copies and dtype casts.
CAST_OPS = frozenset({"aten::copy_", "aten::_to_copy"})


@dataclass(frozen=True)
class RunProfile:
    """One (task, mixer) run of a suite: steps, median step CPU seconds in fp32 / bf16, fp32 shares."""

    task: str
    mixer: str
    steps: int
    fp32_step: float
    bf16_step: float
    product_share: float
    cast_share: float


def op_shares(events: Iterable, groups: dict[str, frozenset[str]]) -> dict[str, float]:
    """{group: share of the total self CPU time} of profiler ``events`` (objects with ``key`` and
    ``self_cpu_time_total``, e.g. ``prof.key_averages()``); 0 for every group if the total is 0."""
    events = list(events)
    total = sum(e.self_cpu_time_total for e in events)
    if total <= 0:
        return {g: 0.0 for g in groups}
    return {g: sum(e.self_cpu_time_total for e in events if e.key in names) / total for g, names in groups.items()}


def amdahl_bound(runs: Iterable[RunProfile]) -> float:
    """The lowest bf16 / fp32 time ratio of the runs' training (sum of steps x step time) if products were free:
    sum(steps x fp32 step x (1 - product share)) / sum(steps x fp32 step)."""
    runs = list(runs)
    total = sum(r.steps * r.fp32_step for r in runs)
    if total <= 0:
        raise ValueError(f"runs: expected runs with positive fp32 step time, received total {total}")
    return sum(r.steps * r.fp32_step * (1.0 - r.product_share) for r in runs) / total


def _trainer(mixer: str, run, task, precision: str):
    from attnlab.compare import build_model
    from attnlab.train import TrainConfig, Trainer

    torch.manual_seed(0)
    model = build_model(mixer, run, task.spec)
    cfg = TrainConfig(steps=10**6, batch_size=run.batch_size, lr=run.lr, warmup_steps=run.warmup_steps,
                      eval_every=0, log_every=10**6, precision=precision)
    return Trainer(model, task, cfg)


def profile_run(task_name: str, run, mixer: str, *, repeats: int = 5, profile_steps: int = 3) -> RunProfile:
    """Time and profile one suite run (``run`` a :class:`~attnlab.suites.TaskRun`) for ``mixer``."""
    from torch.profiler import ProfilerActivity, profile

    from attnlab import tasks

    task = tasks.create(task_name, **run.task_kwargs)
    trainers = {p: _trainer(mixer, run, task, p) for p in ("fp32", "bf16")}
    cpu = {p: c for p, (_, c) in interleaved_wall_cpu({p: tr.step for p, tr in trainers.items()}, repeats).items()}
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(profile_steps):
            trainers["fp32"].step()
    shares = op_shares(prof.key_averages(), {"products": PRODUCT_OPS, "casts": CAST_OPS})
    for tr in trainers.values():
        tr.close()
    return RunProfile(task_name, mixer, run.steps, cpu["fp32"], cpu["bf16"], shares["products"], shares["casts"])


def main(argv: list[str] | None = None) -> list[RunProfile]:
    """CLI: one table row per (task, mixer) run of the suite, then the suite's totals and Amdahl's bound."""
    from attnlab.compare import incompatibility
    from attnlab import tasks
    from attnlab.suites import get_suite

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", default="linear")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--profile-steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if a.repeats < 1 or a.profile_steps < 1:
        raise SystemExit(f"--repeats / --profile-steps: expected ints >= 1, received {a.repeats} / {a.profile_steps}")
    torch.set_num_threads(a.threads)
    suite = get_suite(a.suite)
    print(f"suite {suite.name}, {a.threads} thread(s), load {load_average()}")
    print("| task | mixer | steps | fp32 step ms CPU | bf16 step ms CPU | bf16 / fp32 | products (fp32) | copies, casts "
          "(fp32) | bound if products were free |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for run in suite.tasks:
        spec = tasks.create(run.task, **run.task_kwargs).spec
        for mixer in suite.mixers:
            if incompatibility(mixer, spec):
                continue
            r = profile_run(run.task, run, mixer, repeats=a.repeats, profile_steps=a.profile_steps)
            rows.append(r)
            print(f"| {r.task} | {r.mixer} | {r.steps} | {r.fp32_step * 1e3:.1f} | {r.bf16_step * 1e3:.1f} | "
                  f"{r.bf16_step / r.fp32_step:.2f} | {r.product_share:.0%} | {r.cast_share:.0%} | "
                  f"{1 - r.product_share:.2f} |", flush=True)
    fp32 = sum(r.steps * r.fp32_step for r in rows)
    bf16 = sum(r.steps * r.bf16_step for r in rows)
    print(f"suite training: fp32 {fp32:.0f} s CPU, bf16 {bf16:.0f} s CPU (ratio {bf16 / fp32:.2f}); "
          f"Amdahl's bound with free products {amdahl_bound(rows):.2f}; load {load_average()}")
    return rows


if __name__ == "__main__":
    main()
