"""Scores of the video tasks: SSIM and the SSIM + Gaussian-L1 loss (P21), PSNR, J and F for segmentation (DAVIS),
frame-level AUROC and per-video score normalisation for anomaly detection.

- :func:`ssim` — structural similarity (Wang et al. 2004) with an 11 x 11 Gaussian window (sigma 1.5), over the
  valid window positions (no padding, as P21's code), constants K1 = 0.01, K2 = 0.03, per image;
- :func:`gaussian_l1` — the absolute error smoothed by the same window, mean over valid positions;
- :func:`ssim_l1_loss` — P21's loss: ``alpha * (1 - SSIM) + (1 - alpha) * Gaussian-L1`` (alpha = 0.5);
- :func:`psnr` — peak signal-to-noise ratio for [0, 1] images;
- :func:`jaccard` — J, region similarity: |pred & gt| / |pred | gt| per frame (1 when both are empty);
- :func:`boundary_f` — F, boundary accuracy: the F-measure of boundary precision and recall, a boundary
  pixel counting as matched when the other mask's boundary lies within ``tolerance`` px (a disc);
  the tolerance defaults to DAVIS's ``ceil(0.008 * image diagonal)``;
- :func:`normalize_per_video` — min-max normalisation of one video's frame scores (P21's anomaly score);
- :func:`frame_auroc` — area under the ROC curve of frame scores against frame labels (scikit-learn).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from attnlab.utils.checks import check_tensor, describe, fail

__all__ = ["gaussian_window", "ssim", "gaussian_l1", "ssim_l1_loss", "psnr", "jaccard", "mask_boundary",
           "boundary_f", "normalize_per_video", "frame_auroc", "WINDOW", "SIGMA"]

WINDOW, SIGMA = 11, 1.5
K1, K2 = 0.01, 0.03


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The normalised 1-D Gaussian window (size,) of the SSIM and of the Gaussian-L1."""
    coords = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-coords**2 / (2 * sigma**2))
    return (g / g.sum()).to(dtype)


def _images(pred: object, target: object, arg: str = "pred") -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, H, W) views of two image batches of one shape (any leading dims), checked."""
    check_tensor(arg, pred, floating=True)
    check_tensor("target", target, floating=True)
    if pred.shape != target.shape:
        fail(arg, f"the shape of target {tuple(target.shape)}", describe(pred))
    if pred.dim() < 3:
        fail(arg, "images of shape (..., C, H, W)", describe(pred))
    h, w = pred.shape[-2:]
    if min(h, w) < WINDOW:
        fail(arg, f"images of at least {WINDOW} x {WINDOW} px (the Gaussian window)", describe(pred))
    return pred.reshape(-1, *pred.shape[-3:]), target.reshape(-1, *target.shape[-3:])


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter over H and W of (N, C, H, W), valid positions only."""
    c = x.shape[1]
    g = gaussian_window(dtype=x.dtype).to(x.device)
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, WINDOW), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, WINDOW, 1), groups=c)


def ssim(pred: torch.Tensor, target: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """SSIM per image of (..., C, H, W) batches: the mean over channels and valid window positions; shape (...)."""
    x, y = _images(pred, target)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    mu_x, mu_y = _blur(x), _blur(y)
    var_x = _blur(x * x) - mu_x**2
    var_y = _blur(y * y) - mu_y**2
    cov = _blur(x * y) - mu_x * mu_y
    smap = (2 * mu_x * mu_y + c1) * (2 * cov + c2) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return smap.flatten(1).mean(1).reshape(pred.shape[:-3])


def gaussian_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Gaussian-smoothed absolute error per image of (..., C, H, W) batches (mean over valid positions); shape (...)."""
    x, y = _images(pred, target)
    return _blur((x - y).abs()).flatten(1).mean(1).reshape(pred.shape[:-3])


def ssim_l1_loss(pred: torch.Tensor, target: torch.Tensor, *, alpha: float = 0.5,
                 reduction: str = "mean") -> torch.Tensor:
    """P21's loss ``alpha * (1 - SSIM) + (1 - alpha) * Gaussian-L1`` of [0, 1] images (..., C, H, W).

    ``reduction="mean"``: a scalar; ``"none"``: one value per image, shape (...) (the per-frame anomaly error).
    """
    if not (isinstance(alpha, (int, float)) and 0 <= alpha <= 1):
        fail("alpha", "a number in [0, 1]", describe(alpha))
    if reduction not in ("mean", "none"):
        fail("reduction", "'mean' or 'none'", repr(reduction))
    per = alpha * (1 - ssim(pred, target)) + (1 - alpha) * gaussian_l1(pred, target)
    return per.mean() if reduction == "mean" else per


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image of [0, 1] images (..., C, H, W); shape (...); capped at 100 dB for identical images."""
    check_tensor("pred", pred, floating=True)
    if pred.shape != target.shape or pred.dim() < 3:
        fail("pred", f"images (..., C, H, W) of the shape of target {tuple(target.shape)}", describe(pred))
    mse = (pred - target).pow(2).flatten(-3).mean(-1)
    return (10 * torch.log10(1.0 / mse.clamp_min(1e-10))).clamp_max(100.0)


def _masks(pred: object, gt: object) -> tuple[torch.Tensor, torch.Tensor]:
    for arg, m in (("pred", pred), ("gt", gt)):
        check_tensor(arg, m, dtype=torch.bool)
        if m.dim() < 2:
            fail(arg, "bool masks of shape (..., H, W)", describe(m))
    if pred.shape != gt.shape:
        fail("pred", f"the shape of gt {tuple(gt.shape)}", describe(pred))
    return pred, gt


def jaccard(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """J per mask of bool (..., H, W) masks: intersection over union (1 where both are empty); float, shape (...)."""
    pred, gt = _masks(pred, gt)
    inter = (pred & gt).flatten(-2).sum(-1).double()
    union = (pred | gt).flatten(-2).sum(-1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def mask_boundary(mask: torch.Tensor) -> torch.Tensor:
    """Inner boundary of bool (..., H, W) masks: foreground pixels with a background 4-neighbour (outside = background)."""
    check_tensor("mask", mask, dtype=torch.bool)
    m = mask.reshape(-1, 1, *mask.shape[-2:]).float()
    # a foreground pixel is interior when its 4-neighbourhood (zero-padded) is all foreground
    cross = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    interior = F.conv2d(m, cross, padding=1) > 4.5
    return (mask.reshape(m.shape).bool() & ~interior).reshape(mask.shape)


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    if radius == 0:
        return mask
    r = torch.arange(-radius, radius + 1, dtype=torch.float32)
    disc = ((r[:, None] ** 2 + r[None, :] ** 2) <= radius**2).float().view(1, 1, 2 * radius + 1, 2 * radius + 1)
    m = mask.reshape(-1, 1, *mask.shape[-2:]).float()
    return (F.conv2d(m, disc, padding=radius) > 0.5).reshape(mask.shape)


def boundary_f(pred: torch.Tensor, gt: torch.Tensor, *, tolerance: int | None = None) -> torch.Tensor:
    """F per mask of bool (..., H, W) masks: 2PR / (P + R) of boundary precision P and recall R; shape (...).

    A boundary pixel of one mask is matched when the other mask's boundary lies within a disc of radius
    ``tolerance`` px (default ``ceil(0.008 * diagonal)``, DAVIS's rule: 1 px for 32-88 px frames). Both
    boundaries empty: F = 1; exactly one empty: F = 0.
    """
    pred, gt = _masks(pred, gt)
    h, w = pred.shape[-2:]
    if tolerance is None:
        tolerance = math.ceil(0.008 * math.hypot(h, w))
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance < 0:
        fail("tolerance", "an int >= 0 (px) or None", describe(tolerance))
    bp, bg = mask_boundary(pred), mask_boundary(gt)
    n_p = bp.flatten(-2).sum(-1).double()
    n_g = bg.flatten(-2).sum(-1).double()
    hit_p = (bp & _dilate(bg, tolerance)).flatten(-2).sum(-1).double()
    hit_g = (bg & _dilate(bp, tolerance)).flatten(-2).sum(-1).double()
    precision = torch.where(n_p > 0, hit_p / n_p.clamp_min(1), torch.ones_like(n_p))
    recall = torch.where(n_g > 0, hit_g / n_g.clamp_min(1), torch.ones_like(n_g))
    denom = precision + recall
    f = torch.where(denom > 0, 2 * precision * recall / denom.clamp_min(1e-12), torch.zeros_like(denom))
    both_empty = (n_p == 0) & (n_g == 0)
    return torch.where(both_empty, torch.ones_like(f), f)


def normalize_per_video(errors: object) -> np.ndarray:
    """One video's per-frame errors min-max normalised to [0, 1] (P21's score); zeros for a constant video."""
    e = np.asarray(errors, dtype=np.float64)
    if e.ndim != 1 or e.size == 0 or not np.isfinite(e).all():
        fail("errors", "a non-empty 1-D sequence of finite numbers (one per frame)", f"shape {e.shape}")
    span = e.max() - e.min()
    return (e - e.min()) / span if span > 0 else np.zeros_like(e)


def frame_auroc(scores: object, labels: object) -> float:
    """Frame-level AUROC of anomaly ``scores`` (higher = more abnormal) against bool ``labels`` (True = abnormal)."""
    from sklearn.metrics import roc_auc_score

    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape or s.size == 0:
        fail("labels", f"one label per score ({s.size} scores)", f"{y.size} labels")
    if y.dtype != bool:
        fail("labels", "bool labels (True = abnormal frame)", f"dtype {y.dtype}", TypeError)
    if y.all() or not y.any():
        fail("labels", "both normal and abnormal frames (AUROC is undefined otherwise)",
             f"{int(y.sum())} abnormal of {y.size}")
    return float(roc_auc_score(y, s))
