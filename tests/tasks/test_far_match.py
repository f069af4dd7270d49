"""The far_match task (built for the DiNAT reproduction): geometry, labels, determinism, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from attnlab.tasks import create


def test_batches_are_deterministic_and_labels_balanced():
    t = create("far_match", seed=3)
    a, b = t.batch("train", 5, 64), t.batch("train", 5, 64)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, t.batch("val", 5, 64).inputs)
    labels = torch.cat([t.batch("train", i, 64).targets for i in range(8)]).float()
    assert 0.4 < labels.mean().item() < 0.6
    assert a.inputs.shape == (64, 3, 64, 64) and t.spec.num_classes == 2


def test_glyphs_are_far_apart_drawn_in_red_and_the_label_is_their_equality():
    t = create("far_match", noise=0.0)
    batch = t.batch("train", 0, 50)
    g = t.glyph
    for img, label, corners, glyphs in zip(batch.inputs.numpy(), batch.targets.tolist(), batch.extras["corners"].tolist(),
                                           batch.extras["glyphs"].tolist()):
        (ya, xa), (yb, xb) = corners
        assert abs(ya - yb) >= t.min_offset and abs(xa - xb) >= t.min_offset
        for (y, x), gi in zip(corners, glyphs):
            assert np.array_equal(img[0, y : y + g, x : x + g] > 0.5, t.bank[gi])
        red = np.zeros(img.shape[1:], bool)
        for (y, x), gi in zip(corners, glyphs):
            red[y : y + g, x : x + g] = t.bank[gi]
        assert np.array_equal(img[0] > 0.5, red)  # nothing else is red
        assert (glyphs[0] == glyphs[1]) == bool(label)


def test_bank_patterns_are_distinct():
    t = create("far_match", num_glyphs=6)
    flat = t.bank.reshape(6, -1)
    assert all((flat[i] != flat[j]).sum() >= t.glyph for i in range(6) for j in range(i))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"min_offset: expected at most img_size - glyph = 58"):
        create("far_match", min_offset=60)
    with pytest.raises(ValueError, match=r"num_glyphs: expected an int >= 2"):
        create("far_match", num_glyphs=1)
