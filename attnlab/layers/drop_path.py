"""Stochastic depth: DropPath and the linear per-block rates the backbones and designs use."""
from __future__ import annotations

import torch
from torch import nn

from attnlab.utils.checks import fail

__all__ = ["DropPath", "drop_path_rates"]


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): zero a residual branch per sample with probability ``drop_prob``.

    x (B, ...) -> (B, ...); kept samples are scaled by 1 / (1 - drop_prob) in training; identity in eval.
    """

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        if not 0.0 <= float(drop_prob) < 1.0:
            fail("drop_prob", "a number in [0, 1)", drop_prob)
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Drop whole samples of ``x`` in training."""
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Stochastic-depth rate of each of ``depth`` blocks: linear from 0 to ``rate`` (timm's ``dpr``)."""
    return [rate * i / max(depth - 1, 1) for i in range(depth)]
