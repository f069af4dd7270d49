"""The ViT-style initialisation shared by the vision designs (timm's ``_init_weights``)."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

__all__ = ["trunc_normal_init_"]


@torch.no_grad()
def trunc_normal_init_(model: nn.Module, params: Iterable[torch.Tensor] = (), std: float = 0.02) -> nn.Module:
    """Truncated-normal init of ``params`` (position embeddings, class tokens) in the order given, then of
    every ``nn.Linear`` weight of ``model`` in module order, with zero biases. Returns ``model``.

    Std ``std``, cut at torch's absolute bounds [-2, 2] (as timm's init). The order is part of the
    result: the draws come from torch's global RNG one tensor after the other, as in timm's ViT,
    ConViT, CrossViT and TNT (seeded runs depend on it).
    """
    for p in params:
        nn.init.trunc_normal_(p, std=std)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model
