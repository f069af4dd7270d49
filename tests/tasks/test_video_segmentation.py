"""The ZVOS task: inputs are the frame and its exact flow, targets the moving objects; J / F of perfect and
wrong predictions; the appearance-only ablation; bad options refused by name."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from attnlab import tasks


def test_inputs_hold_the_frame_and_the_flow_and_targets_the_moving_pixels():
    t = tasks.create("moving_shapes_zvos", max_speed=3, pan_speed=0, noise=0.0, flow_noise=0.0, flow_blur=0, seed=1)
    b = t.batch("train", 0, 8)
    assert b.inputs.shape == (8, 5, 32, 32) and b.targets.shape == (8, 32 * 32)
    flow = b.extras["flow"]
    torch.testing.assert_close(b.inputs[:, 3:], flow / 3.0)
    moving = (flow.abs().sum(1) > 0).reshape(8, -1)
    assert torch.equal(moving.long(), b.targets)  # static camera: foreground == pixels that move
    assert 0.02 < b.targets.float().mean() < 0.3
    assert 0.0 <= b.inputs[:, :3].min() and b.inputs[:, :3].max() <= 1.0


def test_observed_flow_is_the_blurred_exact_flow_plus_noise():
    t = tasks.create("moving_shapes_zvos", flow_noise=0.0, flow_blur=1, seed=3)
    flow = np.zeros((1, 2, 8, 8), np.float32)
    flow[0, 0, 3, 3] = 9.0
    seen = t.observed_flow(flow, np.random.default_rng(0))
    assert seen[0, 0, 2:5, 2:5].tolist() == [[1.0] * 3] * 3 and seen.sum() == 9.0  # a 3x3 box spreads it
    noisy = tasks.create("moving_shapes_zvos", flow_noise=0.5, flow_blur=0).observed_flow(
        np.zeros((64, 2, 32, 32), np.float32), np.random.default_rng(0))
    assert abs(noisy.std() - 0.5) < 0.01 and abs(noisy.mean()) < 0.01
    b = tasks.create("moving_shapes_zvos", seed=3).batch("train", 0, 16)  # the default: pan, blur and noise
    residual = b.inputs[:, 3:] * t.flow_scale - b.extras["flow"]
    assert 0.3 < residual.std() < 1.5 and (b.extras["flow"][:, :, 0, 0] != 0).any()  # the camera pans


def test_perfect_logits_score_j_and_f_one_and_an_empty_prediction_zero():
    t = tasks.create("moving_shapes_zvos")
    b = t.batch("val", 0, 6)
    good = torch.nn.functional.one_hot(b.targets, 2).float() * 20
    _, m = t.loss(good, b)
    assert m["J"] == 1.0 and m["F"] == 1.0 and m["accuracy"] == 1.0
    background = torch.zeros_like(good)
    background[..., 0] = 20
    _, m = t.loss(background, b)
    assert m["J"] == 0.0 and m["F"] == 0.0
    _, m = t.loss(-good, b)  # the inverted mask: no overlap, but its boundary lies next to the true one
    assert m["J"] == 0.0 and 0.0 < m["F"] < 1.0
    assert t.spec.output == "lm" and t.spec.in_chans == 5 and t.spec.num_classes == 2


def test_flow_none_zeroes_the_flow_channels_only():
    a = tasks.create("moving_shapes_zvos", seed=2).batch("train", 3, 4)
    b = tasks.create("moving_shapes_zvos", seed=2, flow="none").batch("train", 3, 4)
    assert torch.equal(a.inputs[:, :3], b.inputs[:, :3]) and torch.equal(a.targets, b.targets)
    assert (b.inputs[:, 3:] == 0).all() and (a.inputs[:, 3:] != 0).any()


@pytest.mark.parametrize("kw, match", [({"flow": "estimated"}, "flow"), ({"max_speed": 0}, "speed"),
                                       ({"flow_noise": -1.0}, "flow_noise"), ({"flow_blur": 5}, "flow_blur"),
                                       ({"img_size": 200}, "img_size"), ({"num_objects": 9}, "num_objects")])
def test_bad_options_are_refused_by_name(kw, match):
    with pytest.raises(ValueError, match=f"^{match}: expected"):
        tasks.create("moving_shapes_zvos", **kw)
