"""Shared by the sequence-task reproductions (deltanet, mamba_ssm): train several mixers identically, plot curves."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from attnlab.repro.base import ReproContext

__all__ = ["ArmResults", "train_arms", "plot_curves"]


@dataclass
class ArmResults:
    """Per arm label: final metric, eval curve [(step, value)], parameters, wall and CPU seconds of training."""

    final: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    cpu_seconds: dict = field(default_factory=dict)


def train_arms(task, arms: dict, cfg, ctx: ReproContext, **model_kw) -> ArmResults:
    """Train ``build_for_task(task.spec, mixer=..., **model_kw)`` for each ``label -> (mixer, mixer_kwargs)``."""
    from attnlab.models import build_for_task
    from attnlab.train import train

    out = ArmResults()
    for label, (mixer, mixer_kwargs) in arms.items():
        torch.manual_seed(ctx.seed)
        model = build_for_task(task.spec, mixer=mixer, mixer_kwargs=mixer_kwargs or None, **model_kw)
        out.params[label] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        t0, c0 = time.perf_counter(), time.process_time()
        res = train(model, task, cfg, progress=ctx.progress)
        out.seconds[label] = round(time.perf_counter() - t0, 1)
        out.cpu_seconds[label] = round(time.process_time() - c0, 1)
        out.final[label] = float(res.final_eval[task.metric])
        out.curves[label] = [(int(ev.get("step", 0)), float(ev[task.metric]))
                             for ev in (res.evals or []) if isinstance(ev, dict) and task.metric in ev]
    return out


def plot_curves(ctx: ReproContext, res: ArmResults, *, ylabel: str, title: str, filename: str,
                chance: float | None = None) -> list[str]:
    """Validation curves of every arm (matplotlib Agg) into ``ctx.out_dir``; returns the plot paths."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, pts in res.curves.items():
        if pts:
            ax.plot(*zip(*pts), marker="o", label=f"{label} ({res.final[label]:.2f})")
    if chance is not None:
        ax.axhline(chance, color="grey", lw=0.8, ls="--", label="chance")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = ctx.path(filename)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [str(path)]
