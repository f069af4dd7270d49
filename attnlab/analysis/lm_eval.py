"""Running a language model on token batches, whichever library built it: logits, next-token loss, perplexity.

A *token batch* is a (B, N) integer tensor of ids, or a dict with ``"input_ids"`` (B, N) and optionally
``"attention_mask"`` (B, N), 1 / True = real token (Hugging Face's convention). attnlab LMs get
the mask as ``key_padding_mask``; Hugging Face models as ``attention_mask``, with ``use_cache=False``.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from attnlab.analysis.hf_models import is_hf_model
from attnlab.utils.checks import describe, fail

__all__ = ["split_batch", "lm_logits", "next_token_nll", "perplexity"]


def split_batch(batch: object) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(input_ids (B, N) long, attention mask (B, N) bool or None) of a token batch; errors name ``batch``."""
    ids, mask = (batch.get("input_ids"), batch.get("attention_mask")) if isinstance(batch, dict) else (batch, None)
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.is_floating_point() or ids.dtype == torch.bool:
        fail("batch", "token ids of shape (B, N) (or a dict with 'input_ids')", describe(ids), TypeError)
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(ids.shape):
            fail("batch['attention_mask']", f"a tensor of shape {tuple(ids.shape)}", describe(mask))
        mask = mask.bool()
    return ids, mask


def lm_logits(model: nn.Module, batch: object) -> torch.Tensor:
    """Next-token logits (B, N, V) of an attnlab LM (``SequenceModel``, ``head="lm"``) or a Hugging Face causal LM."""
    ids, mask = split_batch(batch)
    if is_hf_model(model):
        return model(input_ids=ids, attention_mask=None if mask is None else mask.long(), use_cache=False).logits
    out = model(ids) if mask is None else model(ids, key_padding_mask=mask)
    if not isinstance(out, torch.Tensor) or out.dim() != 3 or out.shape[:2] != ids.shape:
        fail("model", "a language model returning logits of shape (B, N, V)", describe(out))
    return out


@torch.no_grad()
def next_token_nll(model: nn.Module, batches: Iterable[object]) -> tuple[float, int]:
    """(mean next-token negative log-likelihood in nats, number of predicted tokens) over ``batches``, eval mode.

    Position t predicts token t+1; a prediction counts when both tokens are real (attention mask).
    The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for batch in batches:
            ids, mask = split_batch(batch)
            logits = lm_logits(model, batch)[:, :-1].float()
            nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none")
            keep = torch.ones_like(nll, dtype=torch.bool) if mask is None else (mask[:, 1:] & mask[:, :-1]).reshape(-1)
            total += float(nll[keep].double().sum())
            count += int(keep.sum())
    finally:
        model.train(was_training)
    if count == 0:
        fail("batches", "at least one batch with two real tokens in a row", "none")
    return total / count, count


def perplexity(model: nn.Module, batches: Iterable[object]) -> float:
    """exp(mean next-token NLL) over ``batches`` (per token of the model's vocabulary: per character for char LMs)."""
    return math.exp(next_token_nll(model, batches)[0])
