"""The segmentation task (built for P25): labels mean what they claim, a perfect set prediction scores PQ 1, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from attnlab.tasks import create
from attnlab.tasks.panoptic import segments_of
from attnlab.tasks.segmentation import BACKGROUND, SEGMENT_KINDS
from attnlab.tasks.shapes import shape_mask


def _perfect(batch, num_classes, queries=8, margin=10.0):
    """Mask and class logits that put every segment on its own query (queries beyond the segments are void)."""
    b, n = batch.targets.shape
    ml = torch.full((b, queries, n), -margin)
    cl = torch.full((b, queries, num_classes + 1), -margin)
    cl[..., -1] = margin
    for i in range(b):
        classes, masks, _ = segments_of(batch.targets[i], batch.extras["instances"][i])
        for g in range(len(classes)):
            ml[i, g][masks[g]] = margin
            cl[i, g] = -margin
            cl[i, g, classes[g]] = margin
    return {"mask_logits": ml, "class_logits": cl, "aux": [{"mask_logits": ml, "class_logits": cl}]}


def test_instances_are_shapes_of_one_colour_and_their_class_is_the_kind():
    t = create("segmentation", img_size=40, num_kinds=4, noise=0.0, seed=2)
    batch = t.batch("train", 0, 24)
    s = 40
    kinds_seen = set()
    for img, sem, inst in zip(batch.inputs.numpy(), batch.targets.numpy(), batch.extras["instances"].numpy()):
        sem, inst = sem.reshape(s, s), inst.reshape(s, s)
        assert ((inst == 0) == (sem == BACKGROUND)).all()
        for k in np.unique(inst[inst > 0]):
            m = inst == k
            assert len(np.unique(sem[m])) == 1  # one class per instance
            colours = img[:, m].T
            assert np.abs(colours - colours[0]).max() < 1e-6  # one colour per instance
            kind = int(sem[m][0]) - 1
            kinds_seen.add(kind)
            ys, xs = np.nonzero(m)
            box = (ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
            stamp = shape_mask(SEGMENT_KINDS[kind], max(box))
            if box[0] == box[1] and m[ys.min():ys.max() + 1, xs.min():xs.max() + 1].sum() == stamp.sum():
                # an unoccluded shape is exactly its kind's stamp
                assert (m[ys.min():ys.max() + 1, xs.min():xs.max() + 1] == stamp).all()
    assert kinds_seen == {0, 1, 2, 3}


def test_occlusion_and_the_visibility_rule():
    t = create("segmentation", min_objects=4, max_objects=4, min_size=12, max_size=14, min_visible=0.5, seed=1)
    batch = t.batch("val", 0, 32)
    counts = [len(np.unique(i[i > 0])) for i in batch.extras["instances"].numpy()]
    assert max(counts) <= 4 and min(counts) >= 1 and np.mean(counts) < 4  # crowded images lose hidden shapes
    for sem, inst in zip(batch.targets, batch.extras["instances"]):
        for k in inst.unique()[1:]:
            # a kept shape shows at least half of the smallest stamp of sizes 12..14 (a 13 px ring: 52 px)
            assert (inst == k).sum() >= 0.5 * min(shape_mask(n, s).sum() for n in SEGMENT_KINDS[:3] for s in (12, 13, 14))


def test_a_perfect_set_prediction_scores_one_and_a_wrong_class_scores_zero():
    t = create("segmentation")
    batch = t.batch("val", 0, 16)
    good = _perfect(batch, t.num_classes)
    loss, metrics = t.loss(good, batch)
    assert metrics["pq"] == 1.0 and metrics["miou"] == 1.0 and metrics["pixel_accuracy"] == 1.0
    assert 0.0 <= loss.item() < 0.01
    bad = {k: v for k, v in good.items()}
    bad["class_logits"] = good["class_logits"].roll(1, dims=-1)  # every class shifted by one (void -> class 0)
    loss_bad, m_bad = t.loss(bad, batch)
    assert m_bad["pq"] < 0.2 and loss_bad.item() > 1.0


def test_spec_and_determinism():
    t = create("segmentation", img_size=48, num_kinds=2, seed=5)
    assert t.spec.output == "masks" and t.spec.seq_len == 48 * 48 and t.spec.num_classes == 3
    a, b = t.batch("test", 3, 4), create("segmentation", img_size=48, num_kinds=2, seed=5).batch("test", 3, 4)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.extras["instances"], b.extras["instances"])


@pytest.mark.parametrize("kw, match", [
    ({"img_size": 8}, r"img_size: expected an int in \[16, 128\]"),
    ({"num_kinds": 6}, r"num_kinds: expected an int in \[1, 5\]"),
    ({"min_objects": 3, "max_objects": 2}, r"max_objects: expected an int in \[max\(1, min_objects=3\), 8\]"),
    ({"min_size": 20, "max_size": 10}, "min_size, max_size: expected 3 <= min_size <= max_size"),
    ({"min_visible": 1.5}, "min_visible: expected a fraction"),
])
def test_bad_options_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        create("segmentation", **kw)


def test_bad_outputs_are_named():
    t = create("segmentation")
    batch = t.batch("val", 0, 2)
    with pytest.raises(TypeError, match='outputs: expected a dict with "mask_logits"'):
        t.loss(torch.zeros(2, 1024, 4), batch)
    with pytest.raises(ValueError, match=r"outputs\['class_logits'\]: expected float \(B, L, C \+ 1\) = \(2, 5, 5\)"):
        t.loss({"mask_logits": torch.zeros(2, 5, 1024), "class_logits": torch.zeros(2, 5, 4)}, batch)
