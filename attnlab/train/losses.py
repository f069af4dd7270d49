"""Auxiliary losses: the output-logit z-loss of P02 (from PaLM)."""
from __future__ import annotations

import torch

from attnlab.utils.checks import check_tensor, fail

__all__ = ["log_partition", "z_loss"]


def log_partition(logits: torch.Tensor) -> torch.Tensor:
    """log Z = logsumexp over the class dimension (last): (..., V) -> (...), computed in fp32 or wider."""
    check_tensor("logits", logits, floating=True)
    if logits.dim() < 2:
        fail("logits", "a tensor of rank >= 2 (..., V)", f"shape {tuple(logits.shape)}")
    dtype = torch.promote_types(logits.dtype, torch.float32)
    return torch.logsumexp(logits.to(dtype), dim=-1)


def z_loss(logits: torch.Tensor, coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The z-loss ``coef * mean(log Z^2)`` over all predictions (P02, Wortsman et al. 2023, sec. 3.2).

    It pulls the softmax normaliser log Z towards 0, which keeps output logits from
    drifting to large magnitudes (output-logit divergence) at high LR.

    Args:
        logits: (B, N, V) per-position or (B, V) per-example logits.
        coef: the coefficient (P02: 1e-4).
    Returns:
        ``(loss, mean_log_z)``: the scalar z-loss (with gradient) and the detached
        mean log Z (for logging).
    """
    lz = log_partition(logits)
    return coef * lz.pow(2).mean(), lz.detach().mean()
