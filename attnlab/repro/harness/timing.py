"""Step timing of the reproductions: one training step of each arm on a real task batch, arms interleaved.

Timing the arms in turn, repeat by repeat (``attnlab.utils.timing``), exposes them to the same load
on a shared machine, so their ratio is what a reproduction quotes. Image classifiers on random
images are timed by ``attnlab.train.throughput.classifier_step_seconds``.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from attnlab.utils.timing import interleaved_median_seconds

__all__ = ["task_step_seconds"]


def _step(model: nn.Module, opt, task, batch) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    task.loss(model(batch.inputs), batch)[0].backward()
    if opt is not None:
        opt.step()


def task_step_seconds(models: dict[str, nn.Module], task, batch_size: int, repeats: int, *, batch_index: int = 0,
                      optimizer_lr: float | None = None) -> dict[str, float]:
    """Median seconds of one training step per model: forward and ``task.loss`` backward on training batch
    ``batch_index``, plus an AdamW update when ``optimizer_lr`` is given (it changes the weights: time last)."""
    batch = task.batch("train", batch_index, batch_size)
    opts = {k: torch.optim.AdamW(m.parameters(), lr=optimizer_lr) if optimizer_lr else None
            for k, m in models.items()}
    return interleaved_median_seconds({k: functools.partial(_step, m, opts[k], task, batch)
                                       for k, m in models.items()}, repeats)
