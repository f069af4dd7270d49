"""The far_cue task (built for the DiNAT reproduction): targets, cue geometry, determinism, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from attnlab.tasks import create
from attnlab.tasks.far_cue import CUE_COLORS


def test_batches_are_deterministic_and_targets_are_the_cue_class_everywhere():
    t = create("far_cue", seed=3)
    a, b = t.batch("train", 5, 16), t.batch("train", 5, 16)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, t.batch("val", 5, 16).inputs)
    assert a.inputs.shape == (16, 3, 64, 64) and a.targets.shape == (16, 256)
    assert (a.targets == a.targets[:, :1]).all()
    assert t.spec.output == "lm" and t.spec.seq_len == 256 and t.tokens_per_example() == 256
    labels = torch.cat([t.batch("train", i, 64).targets[:, 0] for i in range(4)])
    assert torch.bincount(labels, minlength=4).min() > 30  # all classes occur


def test_the_cue_is_the_only_coloured_square_and_its_colour_is_the_label():
    t = create("far_cue", noise=0.0)
    batch = t.batch("train", 0, 30)
    for img, target, cell in zip(batch.inputs.numpy(), batch.targets[:, 0].tolist(), batch.extras["cue_cell"].tolist()):
        coloured = img.max(0) - img.min(0) > 0.3  # grey distractors have equal channels
        ys, xs = np.nonzero(coloured)
        assert ys.max() - ys.min() == t.cue - 1 and xs.max() - xs.min() == t.cue - 1
        np.testing.assert_allclose(img[:, ys[0], xs[0]], CUE_COLORS[target], atol=1e-6)
        assert cell == [(ys.min() + t.cue // 2) // t.patch, (xs.min() + t.cue // 2) // t.patch]


def test_scoring_is_per_cell_accuracy():
    t = create("far_cue", num_classes=3)
    batch = t.batch("val", 0, 4)
    logits = torch.full((4, 256, 3), -5.0)
    logits[..., 0] = 5.0
    logits[0, :, :] = 0.0
    logits[0, :, int(batch.targets[0, 0])] = 5.0  # example 0 right everywhere
    _, metrics = t.loss(logits, batch)
    want = (1 + sum(int(batch.targets[i, 0]) == 0 for i in range(1, 4))) / 4
    assert metrics["accuracy"] == pytest.approx(want)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"patch: expected a divisor of img_size=64"):
        create("far_cue", patch=5)
    with pytest.raises(ValueError, match=r"num_classes: expected an int in \[2, 6\]"):
        create("far_cue", num_classes=7)
