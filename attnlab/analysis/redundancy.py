"""Module redundancy of a decoder from one calibration pass (P17, "What Matters in Transformers?", LLM-Drop).

The importance of a module is one minus the token-mean cosine similarity between the residual
stream before and after it (the paper's Eq. 1-2; the official code ranks by the similarity itself):

- attention of block i: ``1 - mean_t cos(h_t, h_t + A(norm1 h)_t)``, h the block's input;
- MLP of block i: ``1 - mean_t cos(h'_t, h'_t + M(norm2 h')_t)``, h' = h + A(norm1 h);
- block i: ``1 - mean_t cos(h_i, h_{i+1})`` (input vs output);
- n consecutive blocks from i: ``1 - mean_t cos(h_i, h_{i+n})`` (the consecutive block-drop variant).

The mean runs over every real token of every calibration batch (padding excluded). A module
with low importance changes the residual stream little, so the paper drops the n least
important ones (:func:`choose_drops`). The states are taken with forward hooks on the blocks and
on their attention and MLP sub-layers (no model code is touched), in one pass over the batches,
with the model in eval mode; the pass checks that every block's output is its input plus the two
sub-layer outputs (a sequential pre-norm residual block), else it refuses the model.

Works on attnlab language models (``SequenceModel``, LM head) and on Hugging Face decoders of the
families in ``attnlab.analysis.hf_models.HF_FAMILIES``; see ``attnlab.analysis.decoder_layout``.
Sub-layers already dropped (:class:`~attnlab.analysis.module_drop.DroppedSublayer`) score NaN and
are never chosen again.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attnlab.analysis.decoder_layout import DecoderLayout, find_layout
from attnlab.analysis.lm_eval import lm_logits, split_batch
from attnlab.analysis.module_drop import DropPlan, DroppedSublayer
from attnlab.utils.checks import check_choice, describe, fail

__all__ = ["RedundancyScores", "redundancy_scores", "choose_drops", "random_drops", "TARGETS"]

#: what choose_drops can drop
TARGETS = ("attn", "mlp", "block", "joint", "consecutive")
#: a block whose output differs from input + attention + MLP by more than this (relative) is refused
RESIDUAL_TOL = 1e-3


@dataclass
class RedundancyScores:
    """Importance (1 - token-mean cosine similarity) of every module of an L-block decoder.

    Attributes:
        attn: (L,) float64, attention modules (NaN: already dropped).
        mlp: (L,) float64, MLPs, or None when the blocks have none.
        block: (L,) float64, whole blocks.
        consecutive: (L, L) float64, ``[i, n-1]`` for blocks i .. i+n-1 together (NaN where i + n > L),
            or None when not computed.
        tokens: real tokens the means ran over.
        family: the layout's family (``"MixerBlock"``, ``"llama"``, ...).
        block_names: the blocks' module names.
    """

    attn: torch.Tensor
    mlp: torch.Tensor | None
    block: torch.Tensor
    consecutive: torch.Tensor | None
    tokens: int
    family: str
    block_names: tuple[str, ...]

    @property
    def depth(self) -> int:
        """Number of blocks L."""
        return int(self.attn.shape[0])

    def rows(self) -> list[tuple[int, str, float, float, float]]:
        """One row per block: (index, name, attention, MLP, block importance); NaN where absent."""
        mlp = self.mlp if self.mlp is not None else torch.full_like(self.attn, math.nan)
        return [(i, self.block_names[i], float(self.attn[i]), float(mlp[i]), float(self.block[i]))
                for i in range(self.depth)]


class _Pass:
    """Hooks that collect cosine sums for one calibration pass."""

    def __init__(self, layout: DecoderLayout, consecutive: bool):
        self.layout, self.consecutive = layout, consecutive
        n = layout.depth
        self.sums = {k: torch.zeros(n, dtype=torch.float64) for k in ("attn", "mlp", "block")}
        self.cons = torch.zeros(n, n, dtype=torch.float64)
        self.count = 0
        self.mask: torch.Tensor | None = None
        self.current: dict = {}
        self.states: list[torch.Tensor] = []
        self.worst_residual = 0.0

    def cos_sum(self, a: torch.Tensor, b: torch.Tensor) -> float:
        cos = F.cosine_similarity(a.float(), b.float(), dim=-1, eps=1e-12)
        return float(cos[self.mask].double().sum())

    def hooks(self) -> list:
        handles = []
        for i, blk in enumerate(self.layout.blocks):
            handles.append(blk.register_forward_pre_hook(self._pre(i), with_kwargs=True))
            handles.append(self.layout.attn_module(i).register_forward_hook(self._out(i, "a")))
            mlp = self.layout.mlp_module(i)
            if mlp is not None:
                handles.append(mlp.register_forward_hook(self._out(i, "m")))
            handles.append(blk.register_forward_hook(self._post(i)))
        return handles

    def _pre(self, i):
        def hook(_mod, args, kwargs):
            h = args[0] if args else kwargs.get("hidden_states", kwargs.get("x"))
            self.current = {"h": h.detach()}
            if self.consecutive:
                self.states.append(self.current["h"])
        return hook

    def _out(self, i, key):
        def hook(_mod, _args, out):
            self.current[key] = (out if isinstance(out, torch.Tensor) else out[0]).detach()
        return hook

    def _post(self, i):
        def hook(_mod, _args, out):
            out = (out if isinstance(out, torch.Tensor) else out[0]).detach()
            h, a, m = self.current["h"], self.current["a"], self.current.get("m")
            h1 = h + a
            expected = h1 + m if m is not None else h1
            self.worst_residual = max(self.worst_residual,
                                      float((out - expected).norm() / out.norm().clamp_min(1e-30)))
            self.sums["attn"][i] += self.cos_sum(h, h1)
            if m is not None:
                self.sums["mlp"][i] += self.cos_sum(h1, expected)
            self.sums["block"][i] += self.cos_sum(h, out)
            if self.consecutive and i == self.layout.depth - 1:
                self.states.append(out)
        return hook

    def end_batch(self) -> None:
        if self.consecutive:
            n = self.layout.depth
            for i in range(n):
                for gap in range(1, n - i + 1):
                    self.cons[i, gap - 1] += self.cos_sum(self.states[i], self.states[i + gap])
            self.states = []


@torch.no_grad()
def redundancy_scores(model: nn.Module, batches: Iterable[object], *, consecutive: bool = False,
                      layout: DecoderLayout | None = None) -> RedundancyScores:
    """Importance of every attention module, MLP and block of ``model`` over ``batches`` (one pass, eval mode).

    ``batches``: token batches (``(B, N)`` ids, or dicts with ``input_ids`` / ``attention_mask``; see
    ``attnlab.analysis.lm_eval``). ``consecutive``: also score runs of n consecutive blocks (keeps
    the L + 1 residual states of a batch in memory). ValueError if the model's blocks cannot be found
    or are not sequential pre-norm residual blocks, or if ``batches`` holds no real token.
    """
    layout = layout or find_layout(model)
    rec = _Pass(layout, consecutive)
    handles = rec.hooks()
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            ids, mask = split_batch(batch)
            rec.mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask
            lm_logits(model, batch)
            rec.end_batch()
            rec.count += int(rec.mask.sum())
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if rec.count == 0:
        fail("batches", "at least one batch with a real token", "none")
    if rec.worst_residual > RESIDUAL_TOL:
        fail("model", "sequential pre-norm residual blocks (output = input + attention + MLP)",
             f"{layout.family} blocks whose output differs from that sum by {rec.worst_residual:.2e} (relative)")
    imp = {k: 1.0 - v / rec.count for k, v in rec.sums.items()}
    for i in range(layout.depth):
        if isinstance(layout.attn_module(i), DroppedSublayer):
            imp["attn"][i] = math.nan
        if layout.mlp is not None and isinstance(layout.mlp_module(i), DroppedSublayer):
            imp["mlp"][i] = math.nan
    cons = None
    if consecutive:
        cons = 1.0 - rec.cons / rec.count
        gaps = torch.arange(1, layout.depth + 1)
        cons[torch.arange(layout.depth)[:, None] + gaps[None, :] > layout.depth] = math.nan
    return RedundancyScores(attn=imp["attn"], mlp=imp["mlp"] if layout.mlp is not None else None, block=imp["block"],
                            consecutive=cons, tokens=rec.count, family=layout.family, block_names=layout.block_names)


def _lowest(values: torch.Tensor, n: int) -> list[int]:
    """Indices of the n smallest finite values (ties: lower index first)."""
    order = sorted((float(v), i) for i, v in enumerate(values.tolist()) if not math.isnan(v))
    return [i for _, i in order[:n]]


def _check_n(n: object, available: int, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        fail("n", "an int", describe(n), TypeError)
    if not 0 <= n <= available:
        fail("n", f"0 <= n <= {available} (the {what} that can be dropped)", n)
    return n


def choose_drops(scores: RedundancyScores, n: int, target: str = "attn") -> DropPlan:
    """The paper's drop: the ``n`` least important modules of ``target`` as a :class:`DropPlan`.

    ``target``: ``"attn"``, ``"mlp"``, ``"block"`` (both sub-layers of the chosen blocks), ``"joint"``
    (attention and MLP ranked together, 2L candidates) or ``"consecutive"`` (the run of n blocks
    i .. i+n-1 whose input and output states are most similar; needs ``consecutive=True`` scores).
    ValueError when ``n`` exceeds what can be dropped (already dropped modules are not candidates).
    """
    check_choice("target", target, TARGETS)
    if target in ("mlp", "joint") and scores.mlp is None:
        fail("target", "attn, block or consecutive (these blocks have no MLP)", repr(target))
    if target == "attn":
        n = _check_n(n, int((~scores.attn.isnan()).sum()), "attention modules")
        return DropPlan(attn=tuple(_lowest(scores.attn, n)))
    if target == "mlp":
        n = _check_n(n, int((~scores.mlp.isnan()).sum()), "MLPs")
        return DropPlan(mlp=tuple(_lowest(scores.mlp, n)))
    if target == "block":
        n = _check_n(n, scores.depth, "blocks")
        chosen = tuple(_lowest(scores.block, n))
        return DropPlan(attn=chosen, mlp=chosen if scores.mlp is not None else ())
    if target == "joint":
        both = torch.cat([scores.attn, scores.mlp])
        n = _check_n(n, int((~both.isnan()).sum()), "attention modules and MLPs")
        picked = _lowest(both, n)
        return DropPlan(attn=tuple(i for i in picked if i < scores.depth),
                        mlp=tuple(i - scores.depth for i in picked if i >= scores.depth))
    if scores.consecutive is None:
        fail("scores", "scores computed with consecutive=True for target 'consecutive'", "consecutive=None")
    n = _check_n(n, scores.depth, "blocks")
    if n == 0:
        return DropPlan()
    start = _lowest(scores.consecutive[:, n - 1], 1)[0]
    run = tuple(range(start, start + n))
    return DropPlan(attn=run, mlp=run if scores.mlp is not None else ())


def random_drops(depth: int, n: int, target: str = "attn", *, generator: torch.Generator | None = None,
                 has_mlp: bool = True) -> DropPlan:
    """A uniformly random :class:`DropPlan` of ``n`` modules of ``target`` in a ``depth``-block decoder (a baseline).

    ``target``: ``"attn"``, ``"mlp"``, ``"block"`` or ``"joint"``; ``generator`` makes it reproducible.
    """
    check_choice("target", target, TARGETS[:4])
    pool = 2 * depth if target == "joint" else depth
    n = _check_n(n, pool, "modules")
    picked = torch.randperm(pool, generator=generator)[:n].tolist()
    if target == "attn":
        return DropPlan(attn=tuple(picked))
    if target == "mlp":
        return DropPlan(mlp=tuple(picked))
    if target == "block":
        return DropPlan(attn=tuple(picked), mlp=tuple(picked) if has_mlp else ())
    return DropPlan(attn=tuple(i for i in picked if i < depth), mlp=tuple(i - depth for i in picked if i >= depth))
