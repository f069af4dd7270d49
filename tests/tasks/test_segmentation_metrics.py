"""attnlab.tasks.segmentation_metrics: mIoU and PQ on hand-made label maps whose answers are worked out below."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attnlab.tasks.segmentation_metrics import ConfusionMatrix, PanopticStats, mean_iou, panoptic_quality

# A 4 x 4 image: background (class 0, stuff), one square of class 1 (instance 1), a bar of class 2 (instance 2).
GT_SEM = np.array([[1, 1, 0, 0],
                   [1, 1, 0, 0],
                   [0, 0, 0, 0],
                   [0, 0, 2, 2]])
GT_INST = np.array([[1, 1, 0, 0],
                    [1, 1, 0, 0],
                    [0, 0, 0, 0],
                    [0, 0, 2, 2]])
# The prediction: the square plus one pixel too many (IoU 4/5: matched), the bar in the wrong place (IoU 0:
# one false positive and one false negative for class 2), background elsewhere.
PRED_SEM = np.array([[1, 1, 1, 0],
                     [1, 1, 0, 0],
                     [0, 0, 0, 0],
                     [2, 2, 0, 0]])
PRED_INST = np.array([[7, 7, 7, 0],
                      [7, 7, 0, 0],
                      [0, 0, 0, 0],
                      [9, 9, 0, 0]])


def test_mean_iou_by_hand():
    # class 0: gt 10 px, pred 9 px, both 7 -> 7 / 12; class 1: 4 / 5; class 2: 0 / 4
    want = (7 / 12 + 4 / 5 + 0.0) / 3
    assert mean_iou(torch.from_numpy(PRED_SEM), torch.from_numpy(GT_SEM), 3) == pytest.approx(want, abs=1e-12)
    conf = ConfusionMatrix(3).add(PRED_SEM, GT_SEM)
    assert conf.matrix.tolist() == [[7, 1, 2], [0, 4, 0], [2, 0, 0]]
    assert conf.pixel_accuracy() == pytest.approx(11 / 16)


def test_mean_iou_skips_absent_classes_and_ignored_pixels():
    target = np.array([[0, 0], [-100, 1]])
    pred = np.array([[0, 0], [3, 1]])
    # class 3 is predicted only on an ignored pixel: counted nowhere, so only classes 0 and 1 (IoU 1) remain
    assert mean_iou(pred, target, 4) == 1.0
    assert math.isnan(ConfusionMatrix(2).mean_iou())


def test_panoptic_quality_by_hand():
    # class 0 (stuff): IoU 7/12 > 0.5, a TP; class 1: IoU 4/5, a TP; class 2: IoU 0, one FP and one FN
    stats = PanopticStats(3).add(PRED_SEM[None], PRED_INST[None], GT_SEM[None], GT_INST[None])
    assert stats.tp.tolist() == [1, 1, 0] and stats.fp.tolist() == [0, 0, 1] and stats.fn.tolist() == [0, 0, 1]
    got = panoptic_quality(PRED_SEM[None], PRED_INST[None], GT_SEM[None], GT_INST[None], 3)
    pq = (7 / 12 + 4 / 5 + 0.0) / 3          # PQ_c = IoU / (1 + 0 + 0) for the TPs; 0 / (0 + 1/2 + 1/2) for class 2
    assert got["pq"] == pytest.approx(pq, abs=1e-12)
    assert got["sq"] == pytest.approx((7 / 12 + 4 / 5 + 0.0) / 3, abs=1e-12)
    assert got["rq"] == pytest.approx((1 + 1 + 0) / 3, abs=1e-12)


def test_a_perfect_prediction_has_pq_one_whatever_its_instance_ids():
    got = panoptic_quality(GT_SEM[None], GT_INST[None] * 5 + 3, GT_SEM[None], GT_INST[None], 3)
    assert got == {"pq": 1.0, "sq": 1.0, "rq": 1.0}


def test_two_instances_merged_into_one_segment_is_one_tp_and_one_fn():
    gt_sem = np.array([[1, 1, 0, 1]])
    gt_inst = np.array([[1, 1, 0, 2]])
    pred_sem = np.array([[1, 1, 0, 1]])
    pred_inst = np.array([[5, 5, 0, 5]])  # both instances as one: IoU with instance 1 = 2/3 (match), with 2 = 1/3
    stats = PanopticStats(2).add(pred_sem[None], pred_inst[None], gt_sem[None], gt_inst[None])
    assert stats.tp.tolist() == [1, 1] and stats.fn.tolist() == [0, 1] and stats.fp.tolist() == [0, 0]
    assert stats.iou_sum[1] == pytest.approx(2 / 3)
    assert stats.summary()["pq"] == pytest.approx((1.0 + (2 / 3) / 1.5) / 2)


def test_void_pixels_are_removed_from_predictions_and_void_segments_are_not_false_positives():
    gt_sem = np.array([[1, 1, -100, -100]])
    gt_inst = np.array([[1, 1, 0, 0]])
    # the predicted segment covers the object and both void pixels: IoU computed without void = 2/2
    s = PanopticStats(3).add(np.array([[[1, 1, 1, 1]]]), np.array([[[4, 4, 4, 4]]]), gt_sem[None], gt_inst[None])
    assert s.tp[1] == 1 and s.iou_sum[1] == 1.0
    # a segment of class 2 lying wholly in void is no false positive
    s = PanopticStats(3).add(np.array([[[1, 1, 2, 2]]]), np.array([[[4, 4, 5, 5]]]), gt_sem[None], gt_inst[None])
    assert s.fp.tolist() == [0, 0, 0] and s.summary()["pq"] == 1.0


def test_accumulating_two_batches_equals_one_batch_of_both():
    one = PanopticStats(3).add(PRED_SEM[None], PRED_INST[None], GT_SEM[None], GT_INST[None])
    one.add(GT_SEM[None], GT_INST[None], GT_SEM[None], GT_INST[None])
    both = PanopticStats(3).add(np.stack([PRED_SEM, GT_SEM]), np.stack([PRED_INST, GT_INST]),
                                np.stack([GT_SEM, GT_SEM]), np.stack([GT_INST, GT_INST]))
    assert one.summary() == both.summary()


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"pred: expected shape \(4, 4\)"):
        mean_iou(np.zeros((4, 3), int), GT_SEM, 3)
    with pytest.raises(TypeError, match="target: expected an integer tensor or array"):
        mean_iou(PRED_SEM, GT_SEM.astype(float), 3)
    with pytest.raises(ValueError, match=r"pred, target: expected class ids in \[0, 2\)"):
        mean_iou(PRED_SEM, GT_SEM, 2)
    with pytest.raises(ValueError, match="gt_sem: expected a batch"):
        panoptic_quality(PRED_SEM[0], PRED_INST[0], GT_SEM[0], GT_INST[0], 3)
