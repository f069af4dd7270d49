"""Training-step throughput of image classifiers, measured round-robin (shared by benchmarks and reproductions).

Benchmarks (``attnlab.bench``) and reproductions (``attnlab.repro``) both report images/s of
models trained side by side; they time the same step, so the step lives here, below both.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from attnlab.utils.timing import interleaved_median_seconds

__all__ = ["classifier_step_seconds"]


def _step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()


def classifier_step_seconds(
    models: dict[str, nn.Module], img: int, batch: int = 32, repeats: int = 7, warmup: int = 2, in_chans: int = 3,
    num_classes: int = 10,
) -> dict[str, float]:
    """Median seconds per training step (forward + cross-entropy backward) of each model, interleaved repeat by repeat.

    Every model gets the same random images (batch, in_chans, img, img) and labels (batch,), fixed by seed 0.
    Returns {name: median seconds}; images/s is ``batch / seconds``.
    """
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, in_chans, img, img, generator=g)
    y = torch.randint(0, num_classes, (batch,), generator=g)
    for m in models.values():
        m.train()
    return interleaved_median_seconds({k: functools.partial(_step, m, x, y) for k, m in models.items()}, repeats, warmup)
