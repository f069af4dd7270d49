"""Learning-rate sensitivity (P02, Wortsman et al. 2023, sec. 2): how much loss an LR sweep loses.

``LR sensitivity = mean over the LR grid of [min(loss(lr), init_loss) - best]``,
where ``best`` is the lowest (capped) final loss on the grid and ``init_loss`` the
loss at initialisation (about ln V for a V-way softmax). A diverged run (NaN / inf
loss) counts as ``init_loss``. The grid is meant to be log-spaced, so the plain
mean over its points is the mean over log LR. 0 means every LR on the grid is as
good as the best one; larger means the model is more sensitive to the LR choice.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping

from attnlab.utils.checks import describe, fail

__all__ = ["lr_sensitivity", "capped_losses", "lr_sweep"]


def _finite_number(arg: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        fail(arg, "a number", describe(v), TypeError)
    return float(v)


def capped_losses(final_losses_by_lr: Mapping[float, float], init_loss: float) -> dict[float, float]:
    """``min(loss, init_loss)`` per LR, with NaN / inf (diverged) replaced by ``init_loss``; sorted by LR."""
    init = _finite_number("init_loss", init_loss)
    if not math.isfinite(init):
        fail("init_loss", "a finite number", init_loss)
    if not isinstance(final_losses_by_lr, Mapping) or not final_losses_by_lr:
        fail("final_losses_by_lr", "a non-empty dict {lr: final loss}", describe(final_losses_by_lr), TypeError)
    out = {}
    for lr, loss in sorted(final_losses_by_lr.items()):
        lr = _finite_number("final_losses_by_lr key (lr)", lr)
        if not (math.isfinite(lr) and lr > 0):
            fail("final_losses_by_lr key (lr)", "a positive finite learning rate", lr)
        loss = _finite_number(f"final_losses_by_lr[{lr}]", loss)
        out[lr] = min(loss, init) if math.isfinite(loss) else init
    return out


def lr_sensitivity(final_losses_by_lr: Mapping[float, float], init_loss: float) -> float:
    """P02's LR sensitivity of one configuration over a (log-spaced) LR grid.

    Args:
        final_losses_by_lr: ``{lr: final loss}``; NaN / inf marks a diverged run.
        init_loss: loss at initialisation (the cap; a diverged run counts as this).
    Returns:
        ``mean_lr [min(loss(lr), init_loss) - min_lr' min(loss(lr'), init_loss)]`` (>= 0).
    """
    capped = capped_losses(final_losses_by_lr, init_loss)
    best = min(capped.values())
    return sum(v - best for v in capped.values()) / len(capped)


def lr_sweep(
    lrs: Iterable[float],
    run: Callable[[float], float],
) -> dict[float, float]:
    """Final loss per LR: ``{lr: run(lr)}`` for each ``lr`` (a helper for sweeps).

    ``run(lr)`` trains a fresh model at peak LR ``lr`` and returns its final loss
    (NaN if it diverged), e.g. ``train(...).final_eval["loss"]``.
    """
    out = {}
    for lr in lrs:
        lr = _finite_number("lrs[]", lr)
        if not (math.isfinite(lr) and lr > 0):
            fail("lrs[]", "positive finite learning rates", lr)
        out[lr] = float(run(lr))
    return out
