"""Learning-rate sweeps: every arm trained at each LR of a grid from the same start (P02's tool).

P02 measures how sensitive a model's final loss is to its learning rate by training it at each LR
of a log-spaced grid; the same sweep gives each arm of a comparison its own best LR. A run that
diverges counts, as in P02, as the loss at initialisation: its final loss is recorded as NaN
(``attnlab.analysis.lr_sensitivity`` reads NaN that way).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from attnlab.repro.harness.arms import Arm

__all__ = ["lr_sweep"]


def lr_sweep(arms: list[Arm], task, lrs: Sequence[float], config: Callable[[str, float], object], *, seed: int = 0,
             progress: bool = False, probes: dict[str, Callable[[nn.Module], float]] | None = None) -> dict[str, dict]:
    """Train every arm at every LR; returns, per arm name, lists over ``lrs``.

    ``config(arm_name, lr)`` gives the ``TrainConfig`` of one run; every run of an arm starts from
    the same weights (``torch.manual_seed(seed)`` before the build). The lists: ``final_loss`` (the
    final validation loss, NaN if the run diverged), ``diverged``, and one per ``probes`` entry (a
    figure measured on the trained model).
    """
    from attnlab.train import train

    probes = probes or {}
    out: dict[str, dict] = {}
    for arm in arms:
        r: dict = {"final_loss": [], **{k: [] for k in probes}, "diverged": []}
        for lr in lrs:
            torch.manual_seed(seed)
            model = arm.build(task.spec)
            res = train(model, task, config(arm.name, lr), progress=progress)
            r["final_loss"].append(math.nan if res.diverged else float(res.final_eval["loss"]))
            for k, probe in probes.items():
                r[k].append(float(probe(model)))
            r["diverged"].append(bool(res.diverged))
        out[arm.name] = r
    return out
