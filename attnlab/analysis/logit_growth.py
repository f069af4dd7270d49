"""Probes of the two instabilities in P02 (Wortsman et al. 2023): attention-logit growth and
output-logit divergence.

- :func:`max_attention_logit`: the largest |q.k / sqrt(d_h)| an attention layer
  computes (P02 fig. 1/3: without qk-layernorm it grows by orders of magnitude at
  high LR, and the softmax collapses to one-hot).
- :func:`output_log_z`: the mean log-partition log Z = logsumexp of a model's
  output logits (P02 sec. 3.2: at high LR it drifts far from 0 and the loss
  diverges; the z-loss keeps it near 0).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from attnlab.utils.checks import describe, fail
from attnlab.ops.recording import recorded_eval_forward

__all__ = ["max_attention_logit", "output_log_z"]


def _check_model(model):
    if not isinstance(model, nn.Module):
        fail("model", "a torch.nn.Module", describe(model), TypeError)


@torch.no_grad()
def max_attention_logit(model: nn.Module, inputs: torch.Tensor, *, per_layer: bool = False) -> float | dict[str, float]:
    """Max |attention logit| (pre-softmax, after the 1/sqrt(d_h) scaling) over a forward pass.

    Runs ``model(inputs)`` in eval mode inside :func:`attnlab.record_attention`
    (softmax ops then take their reference path and report the max |logit| of each
    call); the train/eval mode is restored afterwards.

    Args:
        model: any module whose attention goes through attnlab's softmax ops.
        inputs: what ``model`` takes, e.g. (B, N) token ids.
        per_layer: return ``{mixer module name: max |logit|}`` instead of the overall max.
    Returns:
        The overall max (float) or the per-mixer dict.
    Raises:
        ValueError: if no attention op recorded a logit (the model has no softmax attention).
    """
    _check_model(model)
    rec = recorded_eval_forward(model, inputs)
    per = {k: max(v) for k, v in rec.max_logits.items() if v}
    if not per:
        fail("model", "a model with softmax attention (recorded attention logits)", f"{type(model).__name__} (none recorded)")
    if per_layer:
        return per
    finite = [v for v in per.values() if not math.isnan(v)]
    return max(finite) if finite else math.nan


@torch.no_grad()
def output_log_z(model: nn.Module, inputs: torch.Tensor) -> float:
    """Mean over predictions of log Z = logsumexp of ``model(inputs)`` over its last dim (classes).

    For (B, N, V) language-model logits or (B, V) class logits, in eval mode (mode
    restored afterwards). A well-behaved softmax model trained without z-loss has
    log Z of order ln V; P02's output-logit divergence shows as |log Z| running away.
    """
    _check_model(model)
    was_training = model.training
    model.eval()
    try:
        logits = model(inputs)
    finally:
        model.train(was_training)
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point() or logits.dim() < 2:
        fail("model(inputs)", "floating-point logits of shape (..., V)", describe(logits))
    return float(torch.logsumexp(logits.double(), dim=-1).mean())
