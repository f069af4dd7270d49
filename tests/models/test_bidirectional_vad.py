"""P21's bi-directional hybrid: a middle frame's prediction never reads that frame (and the forward-only ablation
reads no later middle frame), the merge by its formula, learning a fixed batch, gradients everywhere, bad input."""
from __future__ import annotations

import pytest
import torch

from attnlab import models, tasks
from attnlab.models.bidirectional_vad import BiDirectionalVAD

TINY = dict(img_size=16, widths=(4, 8, 8), num_heads=2, depth=1, lstm_kernel=3)


def _clip(seed=0, batch=2):
    return torch.rand(batch, 9, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("directions", ["both", "forward"])
def test_prediction_of_middle_frame_i_never_reads_frame_i(directions):
    """Perturbing input frame 3 + i leaves prediction i unchanged (to 1e-6) and moves the predictions that may
    read it by more than 1e-3: later ones through the forward pipeline, earlier ones only through the backward
    pipeline (so never in the forward-only ablation)."""
    torch.manual_seed(0)
    m = BiDirectionalVAD(directions=directions, **TINY).eval()
    clip = _clip()
    base = m(clip)
    assert base.shape == (2, 3, 3, 16, 16) and 0 <= base.min() and base.max() <= 1
    for i in range(3):
        moved = clip.clone()
        moved[:, 3 + i] = torch.rand_like(moved[:, 3 + i])
        delta = (m(moved) - base).abs().amax(dim=(0, 2, 3, 4))
        assert delta[i] <= 1e-6, (i, delta)
        for j in range(3):
            if j > i:
                assert delta[j] > 1e-3, (i, j, delta)
            elif j < i:
                assert (delta[j] > 1e-3) == (directions == "both"), (i, j, delta)


def test_merge_weights_the_two_directions():
    """merge = 1 keeps the forward pipeline only: the forward-only model with the same weights gives the same
    output; merge = 0 keeps the backward one (its output no longer depends on the forward decoder)."""
    torch.manual_seed(0)
    bi = BiDirectionalVAD(merge=1.0, **TINY).eval()
    fwd = BiDirectionalVAD(directions="forward", **TINY).eval()
    missing, unexpected = fwd.load_state_dict(bi.state_dict(), strict=False)
    assert not missing and unexpected and all(".bwd." in k for k in unexpected)
    clip = _clip(1)
    torch.testing.assert_close(bi(clip), fwd(clip), atol=0, rtol=0)
    back = BiDirectionalVAD(merge=0.0, **TINY).eval()
    back.load_state_dict(bi.state_dict())
    before = back(clip)
    with torch.no_grad():
        for p in back.decoders["fwd"].parameters():
            p.add_(1.0)
    torch.testing.assert_close(back(clip), before, atol=0, rtol=0)
    mid = BiDirectionalVAD(merge=0.85, **TINY).eval()
    mid.load_state_dict(bi.state_dict())
    assert (mid(clip) - bi(clip)).abs().max() > 1e-4


@pytest.mark.parametrize("name", ["bidirectional_vad_tiny", "forward_vad_tiny"])
def test_learns_a_fixed_batch_and_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    m = models.create(name, **TINY)
    task = tasks.create("moving_shapes_prediction", img_size=16, object_size=(3, 5), num_distractors=1)
    clip = task.batch("train", 0, 2).inputs
    target = clip[:, 3:6]
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    losses = []
    for step in range(15):
        loss = (m(clip) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        if step == 0:
            missing = [n for n, p in m.named_parameters() if p.grad is None]
            assert not missing, missing
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.65 * losses[0], losses


def test_bad_input_is_named():
    m = BiDirectionalVAD(**TINY)
    with pytest.raises(ValueError, match=r"clip: expected shape \(B, 9, 3, 16, 16\)"):
        m(torch.rand(1, 8, 3, 16, 16))
    with pytest.raises(ValueError, match="img_size: expected a multiple of 4"):
        BiDirectionalVAD(img_size=18)
    with pytest.raises(ValueError, match="directions: expected one of"):
        BiDirectionalVAD(directions="backward")
    with pytest.raises(ValueError, match="merge: expected a number in"):
        BiDirectionalVAD(merge=1.5)
