"""Auxiliary losses: the output-logit z-loss of P02 (from PaLM) and knowledge distillation (EchoAtt, P14)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from attnlab.utils.checks import check_tensor, describe, fail

__all__ = ["log_partition", "z_loss", "pseudo_labels", "distillation_loss"]

IGNORE = -100


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


def pseudo_labels(teacher_logits: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
    """The teacher's predictions as hard labels: argmax over the last dim, (..., V) -> (...) long.

    Positions where ``targets`` is -100 (unscored) stay -100, so a pseudo-label loss scores what the task scores.
    """
    check_tensor("teacher_logits", teacher_logits, floating=True)
    labels = teacher_logits.argmax(-1)
    if targets is not None:
        if targets.shape != labels.shape:
            fail("targets", f"shape {tuple(labels.shape)} (the logits without V)", describe(targets))
        labels = torch.where(targets == IGNORE, targets, labels)
    return labels


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, *,
                      ce_weight: float, kl_weight: float, temperature: float = 1.0) -> torch.Tensor:
    """``ce_weight * CE(student, targets) + kl_weight * T^2 KL(teacher_T || student_T)``, mean over scored positions.

    Logits (..., V); ``targets`` (...) long with -100 on unscored positions (also skipped in the KL term);
    T the softmax temperature of both distributions (Hinton et al. 2015). With pseudo-labels as ``targets``
    (:func:`pseudo_labels`) and ``kl_weight = 0`` this is EchoAtt's first distillation stage.
    """
    check_tensor("student_logits", student_logits, floating=True)
    if teacher_logits.shape != student_logits.shape:
        fail("teacher_logits", f"shape {tuple(student_logits.shape)} (as student_logits)", describe(teacher_logits))
    if not temperature > 0:
        fail("temperature", "a positive float", temperature)
    v = student_logits.shape[-1]
    s, t, y = student_logits.reshape(-1, v).float(), teacher_logits.reshape(-1, v).float(), targets.reshape(-1)
    scored = y != IGNORE
    loss = s.new_zeros(())
    if ce_weight:
        loss = loss + ce_weight * F.cross_entropy(s, y, ignore_index=IGNORE)
    if kl_weight:
        log_p_s = F.log_softmax(s[scored] / temperature, -1)
        log_p_t = F.log_softmax(t[scored].detach() / temperature, -1)
        kl = F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean")
        loss = loss + kl_weight * temperature ** 2 * kl
    return loss
