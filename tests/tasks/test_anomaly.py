"""The anomaly task (built for P16): normal training data, defects where the masks say, AUROC scoring, errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attnlab.tasks import create
from attnlab.tasks.anomaly import DEFECTS, TEXTURES, auroc


def test_train_split_is_normal_and_test_split_has_every_defect_with_its_mask():
    t = create("anomaly", img_size=48)
    train = t.batch("train", 0, 64)
    assert train.targets.sum() == 0 and not train.extras["mask"].any() and (train.extras["defect"] == -1).all()
    test = torch.cat([t.batch("test", i, 64).extras["defect"] for i in range(2)])
    assert 0.35 < (test >= 0).float().mean() < 0.65
    assert set(test[test >= 0].tolist()) == set(range(len(DEFECTS)))
    b = t.batch("test", 0, 64)
    assert (b.targets.bool() == b.extras["mask"].flatten(1).any(1)).all()  # label 1 iff a defect mask exists
    fam = torch.cat([t.batch("train", i, 64).extras["family"] for i in range(2)])
    assert set(fam.tolist()) == set(range(len(TEXTURES)))


@pytest.mark.parametrize("kind", DEFECTS)
@pytest.mark.parametrize("family", TEXTURES)
def test_a_defect_changes_the_image_inside_its_mask_only(family, kind):
    t = create("anomaly", img_size=48)
    img, bg = t.texture(np.random.default_rng(3), family)
    damaged = img.copy()
    mask = t.add_defect(np.random.default_rng(4), damaged, bg, kind)
    assert 20 <= mask.sum() <= 0.25 * 48 * 48
    assert np.array_equal(damaged[:, ~mask], img[:, ~mask])
    assert np.abs(damaged[:, mask] - img[:, mask]).max(0).mean() > 0.05  # visibly changed, on average
    if kind == "missing":  # a missing piece is flat: the family's background colour
        assert np.abs(damaged[:, mask] - bg[:, None]).max() < 1e-6


def test_scores_use_scikit_learn_auroc_and_the_map_maximum():
    t = create("anomaly", img_size=32)
    b = t.batch("test", 0, 32)
    truth = b.extras["mask"].float()
    m = t.scores(truth, b)
    assert m["pixel_auroc"] == 1.0 and m["image_auroc"] == 1.0
    m = t.scores(-truth, b)
    assert m["pixel_auroc"] == 0.0
    noise = torch.rand(32, 32, 32, generator=torch.Generator().manual_seed(0))
    m = t.scores(noise, b)
    assert 0.4 < m["pixel_auroc"] < 0.6
    loss, metrics = t.loss(noise, b)
    assert loss.item() == pytest.approx(1 - metrics["pixel_auroc"])
    # a hand-made image-level case: scores 0.1, 0.4, 0.35, 0.8 for labels 0, 0, 1, 1 -> AUROC 3/4
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert math.isnan(auroc([0, 0], [0.3, 0.2]))


@pytest.mark.parametrize("kw, err, match", [
    ({"families": ("stripes", "plaid")}, ValueError, "families: expected distinct names"),
    ({"defects": "blob"}, TypeError, "defects: expected a non-empty tuple"),
    ({"anomaly_ratio": 0.0}, ValueError, "anomaly_ratio: expected a fraction in"),
    ({"defect_size": 0.9}, ValueError, "defect_size: expected a fraction of the image side"),
    ({"img_size": 8}, ValueError, r"img_size: expected an int in \[16, 256\]"),
])
def test_bad_options_are_named(kw, err, match):
    with pytest.raises(err, match=match):
        create("anomaly", **kw)


def test_bad_maps_are_named():
    t = create("anomaly", img_size=32)
    b = t.batch("test", 0, 4)
    with pytest.raises(ValueError, match=r"outputs: expected float anomaly maps of shape \(B, S, S\) = \(4, 32, 32\)"):
        t.loss(torch.zeros(4, 1, 32, 32), b)
