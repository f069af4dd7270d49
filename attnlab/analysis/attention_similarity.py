"""Attention similarity: how close one attention map is to another (teacher vs student, dense vs sparse).

Maps are row-stochastic tensors (..., N, M): row i is query i's distribution over the M
keys (rows may be all zero for a query that sees nothing; such rows are skipped).
Used by SEA (P20) to judge and distil an estimated or sparse attention against a
teacher's, and usable on any two models whose attention ``attnlab.record_attention``
records.

- :func:`attention_kl` — KL(reference || other) per row, mean over rows (differentiable
  in ``other``: the distillation loss);
- :func:`attention_js` — Jensen-Shannon divergence (symmetric, bounded by ln 2);
- :func:`topk_overlap` — share of the reference's top-k keys that are among the other
  map's top-k keys;
- :func:`mass_recall` — share of the reference's mass on the keys the other map uses
  (for sparse maps: how much attention the mask keeps);
- :func:`compare_maps` — all four for two maps; :func:`compare_recordings` per label
  for two :class:`~attnlab.ops.recording.AttentionRecorder`; :func:`attention_maps`
  records a model's maps on one input.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from attnlab.utils.checks import check_positive_int, check_tensor, describe, fail
from attnlab.ops.recording import AttentionRecorder, recorded_eval_forward

__all__ = ["attention_kl", "attention_js", "topk_overlap", "mass_recall", "compare_maps", "compare_recordings",
           "attention_maps"]


def _pair(reference, other):
    check_tensor("reference", reference, floating=True)
    check_tensor("other", other, floating=True)
    if reference.dim() < 2:
        fail("reference", "an attention map of shape (..., N, M)", describe(reference))
    if reference.shape != other.shape:
        fail("other", f"shape {tuple(reference.shape)} (as reference)", describe(other))
    return reference, other.to(reference.dtype)


def _rows(reference):
    """Rows that carry mass in the reference (queries that see at least one key)."""
    return reference.sum(-1) > 0


def _mean_over(values, rows):
    if not bool(rows.any()):
        fail("reference", "at least one row with positive mass", "all rows zero")
    return values[rows].mean()


def attention_kl(reference: torch.Tensor, other: torch.Tensor, *, eps: float = 1e-6) -> torch.Tensor:
    """Mean over rows of KL(reference_i || other_i), in nats; a 0-dim tensor, differentiable in ``other``.

    ``other`` is smoothed as (other + eps) / (1 + M eps) per row so that a key the other
    map ignores costs a large but finite penalty (about -ln eps per unit of missed mass).
    """
    reference, other = _pair(reference, other)
    if not (eps > 0 and math.isfinite(eps)):
        fail("eps", "a positive float", eps)
    m = reference.shape[-1]
    smoothed = (other + eps) / (other.sum(-1, keepdim=True) + m * eps)
    terms = torch.where(reference > 0, reference * (torch.log(reference.clamp_min(1e-300)) - torch.log(smoothed)), 0.0)
    return _mean_over(terms.sum(-1), _rows(reference))


def attention_js(reference: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Mean over rows of the Jensen-Shannon divergence (nats, in [0, ln 2]); rows where either map is empty are skipped."""
    reference, other = _pair(reference, other)
    mid = 0.5 * (reference + other)

    def kl(p):
        return torch.where(p > 0, p * (torch.log(p.clamp_min(1e-300)) - torch.log(mid.clamp_min(1e-300))), 0.0).sum(-1)

    return _mean_over(0.5 * kl(reference) + 0.5 * kl(other), _rows(reference) & _rows(other))


def topk_overlap(reference: torch.Tensor, other: torch.Tensor, k: int) -> float:
    """Mean over rows of |top-k(reference) & top-k(other)| / k_i, k_i = min(k, keys with mass in the reference row).

    Only keys with positive weight count as chosen by ``other`` (a sparse map that keeps
    fewer than k keys is not credited for zeros). 1 = same top keys, k / M = chance level.
    """
    reference, other = _pair(reference, other)
    check_positive_int("k", k)
    kk = min(k, reference.shape[-1])
    k_row = (reference > 0).sum(-1).clamp(max=kk)
    rank_positions = torch.arange(kk, device=reference.device)
    ref_top = reference.topk(kk, dim=-1)
    oth_top = other.topk(kk, dim=-1)
    ref_sel = torch.zeros_like(reference, dtype=torch.bool).scatter_(-1, ref_top.indices, rank_positions < k_row[..., None])
    oth_ok = (rank_positions < k_row[..., None]) & (oth_top.values > 0)
    oth_sel = torch.zeros_like(reference, dtype=torch.bool).scatter_(-1, oth_top.indices, oth_ok)
    hits = (ref_sel & oth_sel).sum(-1).to(reference.dtype)
    rows = k_row > 0
    return float(_mean_over(hits / k_row.clamp_min(1).to(reference.dtype), rows))


def mass_recall(reference: torch.Tensor, other: torch.Tensor) -> float:
    """Mean over rows of the reference's mass on the keys where ``other`` is positive (1 = nothing missed)."""
    reference, other = _pair(reference, other)
    kept = (reference * (other > 0)).sum(-1) / reference.sum(-1).clamp_min(1e-300)
    return float(_mean_over(kept, _rows(reference)))


def compare_maps(reference: torch.Tensor, other: torch.Tensor, *, k: int = 8) -> dict[str, float]:
    """``{"kl", "js", "topk_overlap", "mass_recall"}`` of ``other`` against ``reference`` (see the functions)."""
    with torch.no_grad():
        return {
            "kl": float(attention_kl(reference, other)),
            "js": float(attention_js(reference, other)),
            "topk_overlap": topk_overlap(reference, other, k),
            "mass_recall": mass_recall(reference, other),
        }


def compare_recordings(reference: AttentionRecorder, other: AttentionRecorder, *, k: int = 8) -> dict[str, dict[str, float]]:
    """:func:`compare_maps` for every label recorded by both (their last maps), e.g. teacher vs student layers."""
    if not isinstance(reference, AttentionRecorder) or not isinstance(other, AttentionRecorder):
        fail("reference, other", "two AttentionRecorder objects", f"{type(reference).__name__}, {type(other).__name__}", TypeError)
    labels = [lab for lab in reference.maps if lab in other.maps]
    if not labels:
        fail("other", f"an AttentionRecorder sharing a label with {sorted(reference.maps)}", sorted(other.maps))
    return {lab: compare_maps(reference.last(lab), other.last(lab), k=k) for lab in labels}


@torch.no_grad()
def attention_maps(model: nn.Module, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """The attention maps ``model(inputs)`` records, by mixer label (last call per label), in eval mode.

    The model's train/eval mode is restored afterwards.
    """
    if not isinstance(model, nn.Module):
        fail("model", "a torch.nn.Module", describe(model), TypeError)
    rec = recorded_eval_forward(model, inputs)
    return {lab: rec.last(lab) for lab in rec.maps}
