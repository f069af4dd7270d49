"""How similar the attention maps of a model's layers are (EchoAtt, P14: Rajabzadeh et al. 2024), and the groups of
consecutive layers that may share one map.

EchoAtt measures, on a probe set, the cosine similarity between the attention maps of every two layers
(each layer's map averaged over its heads and flattened), finds that inner consecutive layers attend
alike, and lets each group of such layers share the first one's map (``attnlab.models.echoatt``).

* :func:`attention_similarity_matrix` — the (L, L) matrix: for each probe sequence, the cosine between
  the head-averaged (N, N) maps of layers i and j; the mean over the probe sequences;
* :func:`plot_similarity_heatmap` — the matrix as a heatmap (matplotlib);
* :func:`consecutive_similarity` — the similarity of each layer with the next, and the mean of the inner
  and of the outer pairs (a pair is outer when it involves the first or the last layer);
* :func:`most_similar_window` — the run of ``size`` consecutive inner layers with the highest mean
  pairwise similarity (the shared block of a student);
* :func:`similar_groups` — consecutive inner layers grouped greedily while they stay above a threshold of
  similarity to the group's first layer.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from attnlab.ops.recording import recorded_eval_forward
from attnlab.utils.checks import check_positive_int, check_tensor, describe, fail

__all__ = ["attention_similarity_matrix", "plot_similarity_heatmap", "consecutive_similarity", "most_similar_window",
           "similar_groups"]


@torch.no_grad()
def attention_similarity_matrix(model: nn.Module, probes: Iterable[torch.Tensor]) -> tuple[torch.Tensor, list[str]]:
    """Cosine similarity of the layers' head-averaged attention maps, mean over the probe sequences.

    Args:
        model: any model whose token mixers record attention (``attnlab.record_attention``), run in eval mode.
        probes: input batches (each passed to ``model`` as is), e.g. validation batches' inputs.
    Returns:
        ``(sim, labels)``: sim (L, L) float64 with ones on the diagonal, in the order the layers ran; labels
        the mixers' module names.
    """
    if not isinstance(model, nn.Module):
        fail("model", "a torch.nn.Module", describe(model), TypeError)
    total, count, labels = None, 0, None
    for inputs in probes:
        rec = recorded_eval_forward(model, inputs)
        if not rec.maps:
            fail("model", "a model whose mixers record attention maps (softmax-family attention)", type(model).__name__)
        labels = labels or list(rec.maps)
        maps = torch.stack([rec.last(lab).double().mean(1).flatten(1) for lab in labels])  # (L, B, N*M)
        maps = maps / maps.norm(dim=-1, keepdim=True).clamp_min(1e-300)
        sim = torch.einsum("ibk,jbk->ijb", maps, maps)  # per sequence
        total = sim.sum(-1) if total is None else total + sim.sum(-1)
        count += maps.shape[1]
    if count == 0:
        fail("probes", "at least one batch of inputs", "none")
    return total / count, labels


def _check_sim(sim: object) -> torch.Tensor:
    sim = check_tensor("sim", sim, ndim=2, floating=True)
    if sim.shape[0] != sim.shape[1] or sim.shape[0] < 2:
        fail("sim", "a square (L, L) similarity matrix with L >= 2", describe(sim))
    return sim


def _inner_range(depth: int, skip_first: int, skip_last: int) -> range:
    for name, v in (("skip_first", skip_first), ("skip_last", skip_last)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            fail(name, "an int >= 0", describe(v))
    return range(skip_first, depth - skip_last)


def consecutive_similarity(sim: torch.Tensor, *, skip_first: int = 1, skip_last: int = 1) -> dict:
    """``{"pairs": [sim(i, i+1)], "inner": mean over pairs of inner layers, "outer": mean over pairs touching the
    first ``skip_first`` or last ``skip_last`` layers}`` (NaN when a side has no pair)."""
    sim = _check_sim(sim)
    inner = _inner_range(sim.shape[0], skip_first, skip_last)
    pairs = [float(sim[i, i + 1]) for i in range(sim.shape[0] - 1)]
    ins = [p for i, p in enumerate(pairs) if i in inner and i + 1 in inner]
    outs = [p for i, p in enumerate(pairs) if not (i in inner and i + 1 in inner)]
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    return {"pairs": pairs, "inner": mean(ins), "outer": mean(outs)}


def most_similar_window(sim: torch.Tensor, size: int, *, skip_first: int = 1, skip_last: int = 1) -> tuple[int, ...]:
    """The ``size`` consecutive inner layers (indices) with the highest mean pairwise similarity."""
    sim = _check_sim(sim)
    check_positive_int("size", size)
    inner = _inner_range(sim.shape[0], skip_first, skip_last)
    if size < 2 or size > len(inner):
        fail("size", f"2 <= size <= {len(inner)} (the inner layers {inner.start}..{inner.stop - 1})", size)
    best, best_score = None, -float("inf")
    for start in range(inner.start, inner.stop - size + 1):
        block = sim[start:start + size, start:start + size]
        score = (block.sum() - block.diagonal().sum()) / (size * (size - 1))
        if score > best_score:
            best, best_score = tuple(range(start, start + size)), float(score)
    return best


def similar_groups(sim: torch.Tensor, threshold: float, *, skip_first: int = 1, skip_last: int = 1,
                   max_size: int | None = None) -> list[tuple[int, ...]]:
    """Greedy groups of consecutive inner layers: a group starts at a layer and takes the next ones while their
    similarity to its first layer is >= ``threshold`` (and it has fewer than ``max_size`` layers). Groups of one
    layer are dropped."""
    sim = _check_sim(sim)
    inner = _inner_range(sim.shape[0], skip_first, skip_last)
    groups, i = [], inner.start
    while i < inner.stop:
        j = i + 1
        while j < inner.stop and float(sim[i, j]) >= threshold and (max_size is None or j - i < max_size):
            j += 1
        if j - i >= 2:
            groups.append(tuple(range(i, j)))
        i = j
    return groups


def plot_similarity_heatmap(sim: torch.Tensor, labels: list[str] | None = None, *, title: str = "", ax=None):
    """Draw the (L, L) matrix with its values; returns the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    sim = _check_sim(sim)
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.0 + 0.6 * sim.shape[0], 0.6 + 0.6 * sim.shape[0]))
    else:
        fig = ax.figure
    im = ax.imshow(sim.numpy(), vmin=min(0.0, float(sim.min())), vmax=1.0, cmap="viridis")
    names = labels or [str(i) for i in range(sim.shape[0])]
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    for i in range(sim.shape[0]):
        for j in range(sim.shape[1]):
            ax.text(j, i, f"{float(sim[i, j]):.2f}", ha="center", va="center", fontsize=7, color="w")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title or "attention-map cosine similarity")
    fig.tight_layout()
    return fig
