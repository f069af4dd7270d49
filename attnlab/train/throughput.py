"""Training-step throughput of image classifiers, measured round-robin (shared by benchmarks and reproductions).

Benchmarks (``attnlab.bench``) and reproductions (``attnlab.repro``) both report images/s of
models trained side by side; they time the same step, so the step lives here, below both.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from attnlab.utils.precision import check_precision, precision_context
from attnlab.utils.timing import interleaved_median_seconds

__all__ = ["classifier_step_seconds"]


def _step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str) -> None:
    model.zero_grad(set_to_none=True)
    with precision_context(precision):  # forward and loss as a training step at this precision
        loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()


def classifier_step_seconds(
    models: dict[str, nn.Module], img: int, batch: int = 32, repeats: int = 7, warmup: int = 2, in_chans: int = 3,
    num_classes: int = 10, precision: str | dict[str, str] = "fp32",
) -> dict[str, float]:
    """Median seconds per training step (forward + cross-entropy backward) of each model, interleaved repeat by repeat.

    Every model gets the same random images (batch, in_chans, img, img) and labels (batch,), fixed by seed 0.
    ``precision``: ``"fp32"`` / ``"bf16"`` (forward and loss under CPU autocast, as ``TrainConfig.precision``), for
    all models or per model name (one module may appear under two names, e.g. to time it at both precisions).
    Returns {name: median seconds}; images/s is ``batch / seconds``.
    """
    precisions = {k: precision if isinstance(precision, str) else precision.get(k, "fp32") for k in models}
    for p in precisions.values():
        check_precision("precision", p)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, in_chans, img, img, generator=g)
    y = torch.randint(0, num_classes, (batch,), generator=g)
    for m in models.values():
        m.train()
    steps = {k: functools.partial(_step, m, x, y, precisions[k]) for k, m in models.items()}
    return interleaved_median_seconds(steps, repeats, warmup)
