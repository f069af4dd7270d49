"""Segmentation metrics: mean IoU of semantic labels and panoptic quality (PQ, Kirillov et al. 2019).

Both accumulate over any number of images: :class:`ConfusionMatrix` (pixels by ground-truth class x
predicted class) gives the per-class IoU ``TP / (TP + FP + FN)`` and their mean over the classes that
occur in the ground truth or the prediction; :class:`PanopticStats` holds, per class, the summed IoU of
matched segments and the counts of true positives, false positives and false negatives, from which

    PQ_c = sum IoU(matched) / (TP + FP / 2 + FN / 2) = SQ_c * RQ_c,   PQ = mean of PQ_c over classes seen.

A segment is a (class, instance id) pair of one image; a predicted and a ground-truth segment of the same
class match when their IoU exceeds 0.5 (such a match is unique). Pixels whose ground-truth label is
``ignore_index`` (void) count for nothing: they are removed from the predicted segments before the IoU, and
an unmatched predicted segment that lies more than half in void is not counted as a false positive, as in
the reference implementation of PQ (panopticapi). "Stuff" classes (e.g. the background) are segments like
any other, with one instance per image.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from attnlab.utils.checks import check_positive_int, describe, fail

__all__ = ["ConfusionMatrix", "PanopticStats", "mean_iou", "panoptic_quality", "MATCH_IOU"]

#: IoU above which a predicted segment matches a ground-truth segment of the same class
MATCH_IOU = 0.5


def _labels(arg: str, x: object, shape: tuple | None = None) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "iu":
        fail(arg, "an integer tensor or array of labels", describe(x), TypeError)
    if shape is not None and x.shape != shape:
        fail(arg, f"shape {shape} (as the ground truth)", f"shape {x.shape}")
    return x.astype(np.int64)


class ConfusionMatrix:
    """Pixel counts ``matrix[true, predicted]`` over ``num_classes`` classes, accumulated by :meth:`add`."""

    def __init__(self, num_classes: int, ignore_index: int = -100):
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    def add(self, pred, target) -> "ConfusionMatrix":
        """Count the pixels of ``pred`` against ``target`` (same shape, class ids; ``ignore_index`` skipped)."""
        target = _labels("target", target)
        pred = _labels("pred", pred, target.shape)
        keep = target != self.ignore_index
        t, p = target[keep], pred[keep]
        c = self.num_classes
        if t.size and (t.min() < 0 or t.max() >= c or p.min() < 0 or p.max() >= c):
            fail("pred, target", f"class ids in [0, {c}) outside ignore_index", f"ids in [{min(t.min(), p.min())}, "
                 f"{max(t.max(), p.max())}]")
        self.matrix += np.bincount(t * c + p, minlength=c * c).reshape(c, c)
        return self

    def iou(self) -> np.ndarray:
        """(num_classes,) IoU per class; NaN for a class absent from both ground truth and prediction."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / np.maximum(union, 1), np.nan)

    def mean_iou(self) -> float:
        """Mean IoU over the classes present (ground truth or prediction); NaN if no pixel was counted."""
        iou = self.iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    def pixel_accuracy(self) -> float:
        """Fraction of counted pixels labelled right."""
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")


def mean_iou(pred, target, num_classes: int, ignore_index: int = -100) -> float:
    """Mean IoU of one set of predictions (any shape, class ids) against ``target``; see :class:`ConfusionMatrix`."""
    return ConfusionMatrix(num_classes, ignore_index).add(pred, target).mean_iou()


@dataclass
class PanopticStats:
    """Per class: summed IoU of matches, true positives, false positives, false negatives (accumulated by :meth:`add`)."""

    num_classes: int
    ignore_index: int = -100
    iou_sum: np.ndarray = field(init=False)
    tp: np.ndarray = field(init=False)
    fp: np.ndarray = field(init=False)
    fn: np.ndarray = field(init=False)

    def __post_init__(self):
        check_positive_int("num_classes", self.num_classes)
        self.iou_sum = np.zeros(self.num_classes)
        self.tp, self.fp, self.fn = (np.zeros(self.num_classes, np.int64) for _ in range(3))

    def add(self, pred_sem, pred_inst, gt_sem, gt_inst) -> "PanopticStats":
        """Add a batch: (B, ...) predicted and ground-truth class ids and instance ids (per image; void pixels have
        ``gt_sem == ignore_index``)."""
        gt_sem = _labels("gt_sem", gt_sem)
        shape = gt_sem.shape
        gt_inst, pred_sem, pred_inst = (_labels(a, x, shape) for a, x in
                                        (("gt_inst", gt_inst), ("pred_sem", pred_sem), ("pred_inst", pred_inst)))
        if gt_sem.ndim < 2:
            fail("gt_sem", "a batch (B, ...) of label maps", f"shape {shape}")
        for i in range(shape[0]):
            self._add_image(*(a[i].reshape(-1) for a in (pred_sem, pred_inst, gt_sem, gt_inst)))
        return self

    def _segments(self, sem: np.ndarray, inst: np.ndarray, valid: np.ndarray) -> dict:
        keys = {}
        for c, k in set(zip(sem[valid].tolist(), inst[valid].tolist())):
            if not 0 <= c < self.num_classes:
                fail("pred_sem, gt_sem", f"class ids in [0, {self.num_classes})", c)
            keys[(c, k)] = valid & (sem == c) & (inst == k)
        return keys

    def _add_image(self, ps, pi, gs, gi) -> None:
        void = gs == self.ignore_index
        gt = self._segments(gs, gi, ~void)
        pred = self._segments(ps, pi, np.ones_like(void))
        matched_pred, matched_gt = set(), set()
        for gk, gm in gt.items():
            for pk, pm in pred.items():
                if pk[0] != gk[0] or pk in matched_pred:
                    continue
                inter = np.count_nonzero(gm & pm)
                union = np.count_nonzero(gm | (pm & ~void))
                if inter and inter / union > MATCH_IOU:
                    self.iou_sum[gk[0]] += inter / union
                    self.tp[gk[0]] += 1
                    matched_pred.add(pk)
                    matched_gt.add(gk)
                    break
        for gk in gt.keys() - matched_gt:
            self.fn[gk[0]] += 1
        for pk, pm in pred.items():
            if pk not in matched_pred and np.count_nonzero(pm & void) <= 0.5 * np.count_nonzero(pm):
                self.fp[pk[0]] += 1

    def per_class(self) -> dict[str, np.ndarray]:
        """PQ, SQ, RQ per class (NaN for a class with no segment at all)."""
        denom = self.tp + 0.5 * self.fp + 0.5 * self.fn
        seen = denom > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            sq = np.where(self.tp > 0, self.iou_sum / np.maximum(self.tp, 1), 0.0)
            rq = np.where(seen, self.tp / np.where(seen, denom, 1), np.nan)
        return {"pq": np.where(seen, sq * rq, np.nan), "sq": np.where(seen, sq, np.nan), "rq": rq}

    def summary(self) -> dict[str, float]:
        """``{"pq", "sq", "rq"}``: means over the classes with at least one segment (NaN if none)."""
        pc = self.per_class()
        return {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for k, v in pc.items()}


def panoptic_quality(pred_sem, pred_inst, gt_sem, gt_inst, num_classes: int, ignore_index: int = -100) -> dict:
    """PQ, SQ and RQ of one batch of panoptic predictions; see :class:`PanopticStats`."""
    return PanopticStats(num_classes, ignore_index).add(pred_sem, pred_inst, gt_sem, gt_inst).summary()
