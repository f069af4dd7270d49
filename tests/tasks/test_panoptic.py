"""attnlab.tasks.panoptic: segments, the Hungarian matching, inference and the set loss on hand-made predictions."""
from __future__ import annotations

import torch

from attnlab.tasks.panoptic import mask_set_loss, match_segments, panoptic_inference, segments_of
from attnlab.tasks.scoring import IGNORE

# 6 pixels: background (class 0), an object of class 2 (instance 1) on pixels 1-2, one of class 1 (instance 2)
# on pixels 4-5; pixel 3 is void
SEM = torch.tensor([0, 2, 2, IGNORE, 1, 1])
INST = torch.tensor([0, 1, 1, 0, 2, 2])


def test_segments_of_one_image():
    classes, masks, seg = segments_of(SEM, INST)
    assert classes.tolist() == [0, 1, 2]  # ordered by key: class * (max instance + 1) + instance
    assert masks.int().tolist() == [[1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1], [0, 1, 1, 0, 0, 0]]
    assert seg.tolist() == [0, 2, 2, IGNORE, 1, 1]


def test_matching_follows_class_probability_times_dice():
    classes, masks, _ = segments_of(SEM, INST)
    big = 8.0
    # query 0 covers pixels 4-5 and says class 1; query 1 covers pixel 0 and says class 0; query 2 covers 1-2 and
    # says class 2; query 3 is void
    ml = torch.full((4, 6), -big)
    ml[0, 4:6] = big
    ml[1, 0] = big
    ml[2, 1:3] = big
    cl = torch.full((4, 4), -big)
    cl[0, 1] = cl[1, 0] = cl[2, 2] = cl[3, 3] = big
    q, g = match_segments(ml, cl, classes, masks)
    assert dict(zip(g.tolist(), q.tolist())) == {0: 1, 1: 0, 2: 2}


def test_inference_skips_void_queries_and_gives_stuff_one_instance():
    ml = torch.tensor([[[5.0, 0.0, 0.0, 0.0], [0.0, 5.0, 5.0, 0.0], [9.0, 9.0, 9.0, 9.0]]])  # query 2 is void
    cl = torch.tensor([[[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]]])  # classes 0, 1, void
    sem, inst = panoptic_inference(ml, cl, stuff_classes=(0,))
    # pixel 3: both non-void queries have logit 0 -> the first (query 0, class 0)
    assert sem.tolist() == [[0, 1, 1, 0]] and inst.tolist() == [[0, 2, 2, 0]]
    sem, inst = panoptic_inference(ml, torch.tensor([[[0.0, 0.0, 5.0]] * 3]))  # all void: all background
    assert sem.tolist() == [[0, 0, 0, 0]] and inst.tolist() == [[0, 0, 0, 0]]


def test_set_loss_is_small_for_the_right_prediction_large_otherwise_and_reaches_both_heads():
    classes, masks, _ = segments_of(SEM, INST)
    big = 12.0
    ml = torch.full((1, 4, 6), -big)
    cl = torch.full((1, 4, 4), -big)
    cl[0, :, 3] = big
    for gi in range(3):
        ml[0, gi][masks[gi]] = big
        cl[0, gi] = -big
        cl[0, gi, classes[gi]] = big
    good = mask_set_loss([{"mask_logits": ml, "class_logits": cl}], SEM[None], INST[None])
    assert good.item() < 1e-3
    ml2, cl2 = ml.clone().requires_grad_(True), cl.roll(1, dims=1).clone().requires_grad_(True)  # classes moved
    bad = mask_set_loss([{"mask_logits": ml2, "class_logits": cl2}], SEM[None], INST[None])
    assert bad.item() > 1.0
    bad.backward()
    assert ml2.grad.abs().sum() > 0 and cl2.grad.abs().sum() > 0
    assert ml2.grad[0, :, 3].abs().max() == 0  # the void pixel takes no part in the mask loss
    # two levels: the mean of the two levels' losses
    both = mask_set_loss([{"mask_logits": ml, "class_logits": cl}, {"mask_logits": ml2, "class_logits": cl2}],
                         SEM[None], INST[None])
    torch.testing.assert_close(both, (good + bad) / 2)
