"""Losses and metrics shared by the tasks (cross-entropy with ignored positions, accuracy, MSE)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnlab.utils.checks import describe, fail

__all__ = ["IGNORE", "check_outputs", "token_ce", "class_ce"]

#: target value of positions that are not scored
IGNORE = -100


def check_outputs(outputs: object, shape: tuple, what: str) -> torch.Tensor:
    """Raise a clear error unless ``outputs`` is a float tensor of ``shape`` (None = any size)."""
    if not isinstance(outputs, torch.Tensor) or not outputs.is_floating_point():
        fail("outputs", f"a float tensor of {what}", describe(outputs), TypeError)
    if outputs.dim() != len(shape) or any(s is not None and s != o for s, o in zip(shape, outputs.shape)):
        fail("outputs", f"{what} {tuple('*' if s is None else s for s in shape)}", describe(outputs))
    return outputs


def token_ce(logits: torch.Tensor, targets: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, dict]:
    """Mean cross-entropy over scored positions of (B, N, V) logits vs (B, N) targets (IGNORE skipped).

    Metrics: ``accuracy`` (argmax over scored positions), ``loss`` and ``bpc`` (loss in bits).
    """
    b, n = targets.shape
    check_outputs(logits, (b, n, num_classes), "logits of shape (B, N, V)")
    loss = F.cross_entropy(logits.reshape(-1, num_classes).float(), targets.reshape(-1), ignore_index=IGNORE)
    scored = targets != IGNORE
    with torch.no_grad():
        acc = (logits.argmax(-1)[scored] == targets[scored]).float().mean().item() if scored.any() else float("nan")
    value = loss.item()
    return loss, {"loss": value, "accuracy": acc, "bpc": value / math.log(2)}


def class_ce(logits: torch.Tensor, targets: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, dict]:
    """Cross-entropy of (B, K) logits vs (B,) labels; metrics ``loss`` and ``accuracy``."""
    check_outputs(logits, (targets.shape[0], num_classes), "logits of shape (B, num_classes)")
    loss = F.cross_entropy(logits.float(), targets)
    with torch.no_grad():
        acc = (logits.argmax(-1) == targets).float().mean().item()
    return loss, {"loss": loss.item(), "accuracy": acc}
