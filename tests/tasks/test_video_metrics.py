"""Video scores on hand-made cases: J and F on small masks worked out by hand, SSIM against its closed form on
constant images and against a per-window loop written from the definition, AUROC, per-video normalisation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attnlab.tasks.video_metrics import (boundary_f, frame_auroc, gaussian_l1, gaussian_window, jaccard,
                                         mask_boundary, normalize_per_video, psnr, ssim, ssim_l1_loss)


def _square(n, top, left, side):
    m = torch.zeros(n, n, dtype=torch.bool)
    m[top: top + side, left: left + side] = True
    return m


def test_jaccard_by_hand():
    gt = _square(8, 2, 2, 4)
    assert jaccard(gt, gt).item() == 1.0
    assert jaccard(_square(8, 2, 3, 4), gt).item() == pytest.approx(12 / 20)  # shifted one column
    assert jaccard(torch.zeros(8, 8, dtype=torch.bool), gt).item() == 0.0
    empty = torch.zeros(2, 8, 8, dtype=torch.bool)
    assert jaccard(empty, empty).tolist() == [1.0, 1.0]  # nothing to find, nothing found: DAVIS counts 1


def test_boundary_is_the_ring_of_foreground_pixels_touching_background():
    ring = mask_boundary(_square(8, 2, 2, 4))
    assert ring.sum() == 12 and not ring[3:5, 3:5].any() and ring[2, 2] and ring[5, 5]
    edge = mask_boundary(_square(6, 0, 0, 3))  # the frame's border counts as background
    assert edge.sum() == 8 and edge[0, 1] and not edge[1, 1]


def test_boundary_f_by_hand():
    gt = _square(8, 2, 2, 4)
    inner = _square(8, 3, 3, 2)
    # tolerance 1 (a 3x3 cross): the 2x2 boundary pixels each touch the ring (P = 1); 8 of the 12 ring
    # pixels touch them, the four corners only diagonally (R = 2/3): F = 2 * 1 * (2/3) / (5/3) = 0.8
    assert boundary_f(inner, gt, tolerance=1).item() == pytest.approx(0.8)
    assert boundary_f(inner, gt, tolerance=0).item() == 0.0  # no boundary pixel in common
    assert boundary_f(gt, gt).item() == 1.0
    assert boundary_f(inner, gt).item() == pytest.approx(0.8)  # 8x8 frame: DAVIS tolerance ceil(0.008*11.3) = 1
    empty = torch.zeros(8, 8, dtype=torch.bool)
    assert boundary_f(empty, gt).item() == 0.0 and boundary_f(gt, empty).item() == 0.0
    assert boundary_f(empty, empty).item() == 1.0
    # tolerance 2 reaches the corners through the disc of radius 2 (they lie at distance sqrt 2): F = 1
    assert boundary_f(inner, gt, tolerance=2).item() == 1.0


def _ssim_by_loops(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM of two (C, H, W) images from the definition: Gaussian-weighted moments over every 11 x 11 window."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for c in range(x.shape[0]):
        for i in range(x.shape[1] - 10):
            for j in range(x.shape[2] - 10):
                a, b = x[c, i: i + 11, j: j + 11], y[c, i: i + 11, j: j + 11]
                ma, mb = (w * a).sum(), (w * b).sum()
                va, vb = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum()
                cov = (w * (a - ma) * (b - mb)).sum()
                values.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_ssim_of_constant_images_is_its_closed_form():
    a, b = 0.3, 0.7
    expected = (2 * a * b + 0.01**2) / (a**2 + b**2 + 0.01**2)  # no variance: the contrast term is C2 / C2
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-4)):  # fp32 loses digits in E[x^2] - E[x]^2
        x, y = torch.full((1, 3, 16, 16), a, dtype=dtype), torch.full((1, 3, 16, 16), b, dtype=dtype)
        assert ssim(x, y).item() == pytest.approx(expected, rel=tol)
        assert ssim(x, x).item() == pytest.approx(1.0, rel=tol)


@pytest.mark.parametrize("shape", [(1, 13, 15), (3, 17, 12)])
def test_ssim_matches_the_window_loop(shape):
    rng = np.random.default_rng(0)
    x = rng.random(shape)
    y = np.clip(x + 0.2 * rng.standard_normal(shape), 0, 1)
    got = ssim(torch.from_numpy(x)[None], torch.from_numpy(y)[None]).item()
    assert got == pytest.approx(_ssim_by_loops(x, y), abs=1e-10)
    assert got < 0.9  # the noise is visible to it


def test_gaussian_window_and_gaussian_l1_by_hand():
    g = gaussian_window()
    assert g.shape == (11,) and g.sum().item() == pytest.approx(1.0) and g[5] == g.max()
    assert g[4].item() / g[5].item() == pytest.approx(math.exp(-1 / (2 * 1.5**2)))
    x = torch.zeros(2, 3, 4, 12, 12)
    torch.testing.assert_close(gaussian_l1(x + 0.25, x), torch.full((2, 3), 0.25))
    assert gaussian_l1(x + 0.25, x).shape == (2, 3)


def test_ssim_l1_loss_combines_the_two_terms():
    torch.manual_seed(0)
    x, y = torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16)
    per = ssim_l1_loss(x, y, reduction="none")
    torch.testing.assert_close(per, 0.5 * (1 - ssim(x, y)) + 0.5 * gaussian_l1(x, y))
    torch.testing.assert_close(ssim_l1_loss(x, y, alpha=1.0), (1 - ssim(x, y)).mean())
    assert ssim_l1_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    x.requires_grad_(True)
    ssim_l1_loss(x, y).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_psnr_by_hand():
    x = torch.zeros(2, 3, 8, 8)
    assert psnr(x + 0.1, x).tolist() == pytest.approx([20.0, 20.0], rel=1e-5)  # mse 0.01 -> 20 dB
    assert psnr(x, x).tolist() == [100.0, 100.0]


def test_frame_auroc_and_per_video_normalisation():
    labels = np.array([False, False, True, True])
    assert frame_auroc([0.1, 0.2, 0.8, 0.9], labels) == 1.0
    assert frame_auroc([0.9, 0.8, 0.2, 0.1], labels) == 0.0
    assert frame_auroc([0.1, 0.5, 0.4, 0.9], labels) == 0.75  # 3 of the 4 (abnormal, normal) pairs ordered right
    np.testing.assert_allclose(normalize_per_video([2.0, 4.0, 3.0]), [0.0, 1.0, 0.5])
    assert normalize_per_video([1.0, 1.0]).tolist() == [0.0, 0.0]


def test_bad_inputs_are_refused_by_name():
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="pred: expected images of at least 11 x 11"):
        ssim(x[..., :8, :8], x[..., :8, :8])
    with pytest.raises(ValueError, match="pred: expected the shape of target"):
        ssim(x, x[:, :1])
    with pytest.raises(ValueError, match="alpha: expected a number in"):
        ssim_l1_loss(x, x, alpha=2)
    with pytest.raises(TypeError, match="pred: expected dtype torch.bool"):
        jaccard(x[0, 0], x[0, 0] > 0.5)
    with pytest.raises(ValueError, match="tolerance: expected an int >= 0"):
        boundary_f(x[0, 0] > 0.5, x[0, 0] > 0.5, tolerance=-1)
    with pytest.raises(ValueError, match="labels: expected both normal and abnormal frames"):
        frame_auroc([0.1, 0.2], np.array([False, False]))
    with pytest.raises(TypeError, match="labels: expected bool labels"):
        frame_auroc([0.1, 0.2], np.array([0, 1]))
    with pytest.raises(ValueError, match="errors: expected a non-empty 1-D sequence"):
        normalize_per_video([])
