"""The Mamba arm's training step at ``attnlab repro mamba_ssm``'s size: the selective scan's hand-written token loop
(``method="auto"`` picks it there) against the autograd token loop (``selective_scan_reference``, what ``auto`` ran
there before 2026-12-05).

    python benchmarks/mamba_step.py [--repeats 8]

Two identical models (selective copying, dim 64, depth 2, batch 64, length 64), one with ``use_reference=True`` in
its Mamba blocks, take ``Trainer`` steps interleaved in one process, one thread; prints the median wall and CPU time
of a step and the CPU-time ratio.
"""
from __future__ import annotations

import argparse

import torch

from attnlab import tasks
from attnlab.bench.precision_tables import interleaved_wall_cpu
from attnlab.compare import build_model
from attnlab.suites import TaskRun
from attnlab.train import TrainConfig, Trainer


def main(argv: list[str] | None = None) -> None:
    """CLI (module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=8)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    run = TaskRun("selective_copying", {"vocab_size": 10, "seq_len": 64, "num_tokens": 8}, dim=64, depth=2,
                  batch_size=64, lr=3e-3)
    task = tasks.create(run.task, **run.task_kwargs)
    trainers = {}
    for name, reference in (("autograd loop (before)", True), ("hand-written loop", False)):
        torch.manual_seed(0)
        model = build_model("mamba", run, task.spec)
        for m in model.modules():
            if hasattr(m, "use_reference"):
                m.use_reference = reference
        trainers[name] = Trainer(model, task, TrainConfig(steps=10**6, batch_size=64, lr=3e-3, warmup_steps=30,
                                                          eval_every=0, log_every=10**6))
    res = interleaved_wall_cpu({k: tr.step for k, tr in trainers.items()}, a.repeats)
    for k, (w, c) in res.items():
        print(f"{k:24s} wall {w * 1e3:6.1f} ms  CPU {c * 1e3:6.1f} ms")
    (_, before), (_, after) = res.values()
    print(f"before / after, CPU time: {before / after:.2f}x")


if __name__ == "__main__":
    main()
