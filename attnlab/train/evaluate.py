"""Evaluation of a model on a task: ``evaluate(model, task)``, mean loss and metrics over fixed batches."""
from __future__ import annotations

import torch
from torch import nn

from attnlab.tasks.base import SPLITS, Task
from attnlab.utils.checks import describe, fail
from attnlab.utils.precision import check_precision, precision_context

__all__ = ["evaluate", "check_model_and_task", "metric_floats"]


def check_model_and_task(model, task) -> None:
    """TypeError unless ``model`` is an ``nn.Module`` and ``task`` an :class:`attnlab.tasks.Task`."""
    if not isinstance(model, nn.Module):
        fail("model", "a torch.nn.Module", describe(model), TypeError)
    if not isinstance(task, Task):
        fail("task", "an attnlab.tasks.Task", describe(task), TypeError)


def metric_floats(metrics: dict) -> dict[str, float]:
    """``{name: float}`` of a task's metrics, which may be Python numbers or 0-d tensors (detached)."""
    return {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in metrics.items()}


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, *, batches: int = 4, batch_size: int = 32, split: str = "val",
             precision: str = "fp32", parallel=None) -> dict:
    """Mean loss and task metrics over batches ``0 .. batches-1`` of ``split``, in eval mode.

    Returns ``{"loss": float, <task metric>: float, ...}``: per-batch values averaged
    with equal weight. The model's train/eval mode is restored afterwards. ``precision``
    ``"bf16"`` runs the forward passes and losses under CPU autocast (as a bf16 training run).
    ``parallel``: the run's strategy (:mod:`attnlab.train.parallel`); every rank of a distributed
    run calls this and gets the same figures.
    """
    check_model_and_task(model, task)
    for name, v in (("batches", batches), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            fail(name, "a positive int", describe(v), TypeError if not isinstance(v, int) else ValueError)
    if split not in SPLITS:
        fail("split", f"one of {list(SPLITS)}", repr(split))
    context = precision_context(check_precision("precision", precision))
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    try:
        for i in range(batches):
            batch = task.batch(split, i, batch_size)
            with context:
                outputs = parallel.forward(model, batch) if parallel is not None else model(batch.inputs)
                loss, metrics = task.loss(outputs, batch)
            for k, v in metric_floats({"loss": loss, **metrics}).items():
                sums[k] = sums.get(k, 0.0) + v
    finally:
        model.train(was_training)
    return {k: v / batches for k, v in sums.items()}
