"""Scoring set predictions of masks (the ``"masks"`` output of a task): matching, the training loss, panoptic inference.

A mask-transformer (kMaX-DeepLab, P25, and its softmax cross-attention baseline) predicts, for L queries,
mask logits over the N pixels and class logits over ``num_classes + 1`` classes (the last is *void*, "no
segment"), at its last layer and at every earlier layer (``aux``), since the paper supervises the mask
logits of every layer. As a dict::

    {"mask_logits": (B, L, N), "class_logits": (B, L, C + 1), "aux": [{"mask_logits", "class_logits"}, ...]}

Loss of one layer's prediction (kMaX-DeepLab's, after MaX-DeepLab): each ground-truth segment (a class and
an instance id; stuff such as the background is one segment per image) is matched to one query by the
Hungarian algorithm on the PQ-style similarity ``p_query(class of the segment) x dice(query mask, segment)``,
with query masks the softmax over queries at every pixel (a pixel belongs to one query). The loss is the
sum of (1) cross-entropy of the class logits, matched queries against their segment's class and the
others against void (weight :data:`VOID_WEIGHT`), (2) the per-pixel cross-entropy over queries (mask-ID
cross-entropy, target: the query matched to the pixel's segment) and (3) the dice loss of matched masks.
The loss a task reports is the mean over the layers. Inference (:func:`panoptic_inference`): every pixel
goes to the non-void query with the largest mask logit; its class is that query's; stuff classes have one
instance per image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from attnlab.tasks.scoring import IGNORE
from attnlab.utils.checks import describe, fail

__all__ = ["check_mask_outputs", "match_segments", "mask_set_loss", "panoptic_inference", "segments_of",
           "VOID_WEIGHT"]

#: weight of the void class in the class cross-entropy (DETR's "no object" weight)
VOID_WEIGHT = 0.1


def check_mask_outputs(outputs: object, batch: int, n: int, num_classes: int) -> list[dict]:
    """The levels of a ``"masks"`` output (last layer first, then ``aux``), each checked; clear errors otherwise."""
    if not isinstance(outputs, dict) or "mask_logits" not in outputs or "class_logits" not in outputs:
        fail("outputs", 'a dict with "mask_logits" (B, L, N) and "class_logits" (B, L, C + 1) (and "aux")',
             describe(outputs), TypeError)
    levels = [outputs, *outputs.get("aux", [])]
    for lv in levels:
        m, c = lv["mask_logits"], lv["class_logits"]
        if not (isinstance(m, torch.Tensor) and m.is_floating_point() and m.dim() == 3 and m.shape[0] == batch
                and m.shape[2] == n):
            fail("outputs['mask_logits']", f"float (B, L, N) = ({batch}, L, {n})", describe(m))
        if not (isinstance(c, torch.Tensor) and c.is_floating_point() and c.shape == (batch, m.shape[1],
                                                                                       num_classes + 1)):
            fail("outputs['class_logits']", f"float (B, L, C + 1) = ({batch}, {m.shape[1]}, {num_classes + 1})",
                 describe(c))
    return levels


def segments_of(sem: torch.Tensor, inst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The segments of one image: (N,) class ids and instance ids (pixels labelled ``IGNORE`` are void) ->
    (G,) classes, (G, N) bool masks, (N,) segment index of every pixel (``IGNORE`` for void)."""
    valid = sem != IGNORE
    key = sem.clamp_min(0) * (int(inst.max()) + 1 if inst.numel() else 1) + inst
    keys, seg = torch.unique(torch.where(valid, key, key.new_full((), -1)), return_inverse=True)
    if keys.numel() and keys[0] == -1:  # void pixels got the first, -1 key
        keys, seg = keys[1:], seg - 1
    seg = torch.where(valid, seg, torch.full_like(seg, IGNORE))
    masks = seg[None, :] == torch.arange(len(keys))[:, None]
    classes = torch.stack([sem[m][0] for m in masks]) if len(keys) else sem.new_zeros(0)
    return classes, masks, seg


def _dice(probs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(L, N) soft masks x (G, N) binary masks -> (L, G) dice coefficients."""
    m = masks.to(probs.dtype)
    inter = probs @ m.T
    return 2 * inter / (probs.sum(-1, keepdim=True) + m.sum(-1)[None, :]).clamp_min(1e-6)


@torch.no_grad()
def match_segments(mask_logits: torch.Tensor, class_logits: torch.Tensor, classes: torch.Tensor,
                   masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hungarian matching of one image's L queries to its G segments on ``p(class) x dice`` (kMaX's similarity).

    Args: mask_logits (L, N), class_logits (L, C + 1), classes (G,), masks (G, N) bool.
    Returns: (query indices, segment indices), each (min(L, G),) long.
    """
    probs = mask_logits.float().softmax(0) * masks.any(0)  # void pixels (in no segment) take no part
    sim = class_logits.float().softmax(-1)[:, classes] * _dice(probs, masks)
    from scipy.optimize import linear_sum_assignment  # lazy: scipy.optimize costs ~0.2 s at `attnlab list`

    rows, cols = linear_sum_assignment(-sim.cpu().numpy())
    return torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)


def _level_loss(mask_logits, class_logits, segments) -> torch.Tensor:
    b, l, _ = mask_logits.shape
    void = class_logits.shape[-1] - 1
    class_target = torch.full((b, l), void, dtype=torch.long)
    pixel_target = torch.full(mask_logits.shape[::2], IGNORE, dtype=torch.long)
    dice_terms = []
    for i, (classes, masks, seg) in enumerate(segments):
        if not len(classes):
            continue
        q, g = match_segments(mask_logits[i].detach(), class_logits[i].detach(), classes, masks)
        class_target[i, q] = classes[g]
        query_of_segment = torch.full((len(classes),), IGNORE, dtype=torch.long)
        query_of_segment[g] = q
        pixel_target[i] = torch.where(seg >= 0, query_of_segment[seg.clamp_min(0)], seg)
        probs = mask_logits[i].float().softmax(0)[q] * (seg >= 0)  # (matched, N), void pixels left out
        dice_terms.append(1 - _dice_pairs(probs, masks[g]))
    weight = torch.ones(void + 1)
    weight[void] = VOID_WEIGHT
    loss_class = F.cross_entropy(class_logits.float().reshape(b * l, -1), class_target.reshape(-1), weight=weight)
    loss_mask = (F.cross_entropy(mask_logits.float(), pixel_target, ignore_index=IGNORE)
                 if (pixel_target != IGNORE).any() else mask_logits.sum() * 0.0)
    loss_dice = torch.cat(dice_terms).mean() if dice_terms else mask_logits.sum() * 0.0
    return loss_class + loss_mask + loss_dice


def _dice_pairs(probs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Dice of matched pairs: (P, N) soft masks and (P, N) binary masks -> (P,)."""
    m = masks.to(probs.dtype)
    return 2 * (probs * m).sum(-1) / (probs.sum(-1) + m.sum(-1)).clamp_min(1e-6)


def mask_set_loss(levels: list[dict], sem: torch.Tensor, inst: torch.Tensor) -> torch.Tensor:
    """Mean over the prediction levels of the matched set loss (module docstring); sem, inst (B, N) long."""
    segments = [segments_of(s, k) for s, k in zip(sem, inst)]
    return torch.stack([_level_loss(lv["mask_logits"], lv["class_logits"], segments) for lv in levels]).mean()


@torch.no_grad()
def panoptic_inference(mask_logits: torch.Tensor, class_logits: torch.Tensor,
                       stuff_classes: tuple[int, ...] = (0,)) -> tuple[torch.Tensor, torch.Tensor]:
    """Panoptic label maps from one level's prediction: (B, N) class ids and (B, N) instance ids.

    Each pixel goes to the non-void query with the largest mask logit (an image with no non-void query is
    all class ``stuff_classes[0]``); the pixel's class is that query's most likely non-void class and its
    instance id the query index + 1, except for stuff classes (instance 0: one segment per image).
    """
    void = class_logits.shape[-1] - 1
    keep = class_logits.argmax(-1) != void  # (B, L)
    cls = class_logits[..., :void].argmax(-1)  # (B, L)
    logits = mask_logits.masked_fill(~keep[..., None], float("-inf"))
    query = logits.argmax(1)  # (B, N); all -inf columns give 0
    sem = torch.gather(cls, 1, query)
    inst = query + 1
    none = ~keep.any(1)
    sem[none] = stuff_classes[0]
    stuff = torch.zeros_like(sem, dtype=torch.bool)
    for c in stuff_classes:
        stuff |= sem == c
    return sem, torch.where(stuff, torch.zeros_like(inst), inst)

