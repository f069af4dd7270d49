"""FOD's target correlations and the divergences it trains with (P16, Focus the Discrepancy, Yao et al. ICCV 2023).

Every intra- and inter-correlation attention of FOD predicts, per head and per query patch, two widths
``sigma = (sigma_y, sigma_x)`` (:func:`fod_sigma` maps the raw prediction ``s`` to ``3 ** (sigmoid(5 s) +
1e-5) - 1`` as the paper's code does, about (1.1e-5, 2)). They define the RBF-kernel *target correlation* of
query patch i over the patches j of the same (h, w) grid,

    T[i, j]  proportional to  exp(-(y_i - y_j)^2 / (2 sigma_y^2) - (x_i - x_j)^2 / (2 sigma_x^2)),

each row normalised to sum 1 (:func:`gaussian_target`). Training compares the attention maps A with T by
the symmetric KL divergence ``KL(T || A) + KL(A || T)`` (:func:`symmetric_kl`) and constrains the maps'
entropy (:func:`row_entropy`); both average over heads and keep one value per query patch, and both add
``eps = 1e-4`` inside the logarithms as the paper's code does (the symmetric sum
``sum_j (p - q)(log(p + eps) - log(q + eps))`` stays >= 0).

:func:`gaussian_target` normalises through a softmax of the Gaussian's exponent (no underflow to an all-zero
row for tiny sigma); :func:`gaussian_target_reference` evaluates the normalised 2-D Gaussian density
``exp(...) / (2 pi sigma_y sigma_x)`` pair by pair with Python loops over the grid and divides by the row sum.
"""
from __future__ import annotations

import math

import torch

from attnlab.utils.checks import check_positive_int, check_tensor, describe, fail

__all__ = ["fod_sigma", "gaussian_target", "gaussian_target_reference", "symmetric_kl", "row_entropy",
           "correlation_terms", "correlation_terms_reference", "EPS"]

#: the constant FOD adds inside its logarithms
EPS = 1e-4


def fod_sigma(s: torch.Tensor) -> torch.Tensor:
    """FOD's widths from raw predictions: ``3 ** (sigmoid(5 s) + 1e-5) - 1``, in about (1.1e-5, 2); same shape as ``s``."""
    check_tensor("s", s, floating=True)
    return torch.pow(3.0, torch.sigmoid(5.0 * s) + 1e-5) - 1.0


def _check_sigma(sigma: object, grid: object) -> tuple[int, int]:
    check_tensor("sigma", sigma, ndim=4, floating=True)
    if not (isinstance(grid, (tuple, list)) and len(grid) == 2):
        fail("grid", "(h, w) of the patch grid", describe(grid), TypeError)
    h, w = (check_positive_int("grid", g) for g in grid)
    if sigma.shape[2] != h * w or sigma.shape[3] != 2:
        fail("sigma", f"shape (B, H, L, 2) with L = h * w = {h * w} (sigma_y, sigma_x per query)", describe(sigma))
    return h, w


def gaussian_target(sigma: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Row-normalised RBF target correlations: sigma (B, H, L, 2) per query -> (B, H, L, L) over the (h, w) grid.

    Patches are in raster order (patch ``i`` at row ``i // w``, column ``i % w``). Differentiable in sigma.
    """
    h, w = _check_sigma(sigma, grid)
    ys = torch.arange(h, dtype=sigma.dtype, device=sigma.device).repeat_interleave(w)
    xs = torch.arange(w, dtype=sigma.dtype, device=sigma.device).repeat(h)
    dy2 = (ys[:, None] - ys[None, :]) ** 2
    dx2 = (xs[:, None] - xs[None, :]) ** 2
    sy, sx = sigma[..., 0:1], sigma[..., 1:2]
    return torch.softmax(torch.addcmul(dx2 * (-0.5 / sx**2), dy2, -0.5 / sy**2), dim=-1)


def gaussian_target_reference(sigma: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """:func:`gaussian_target` from the 2-D Gaussian density evaluated pair by pair, then divided by the row sum."""
    h, w = _check_sigma(sigma, grid)
    sy, sx = sigma[..., 0], sigma[..., 1]
    cols = []
    for j in range(h * w):
        col = []
        for i in range(h * w):
            dy, dx = i // w - j // w, i % w - j % w
            col.append(torch.exp(-dy**2 / (2 * sy[..., i] ** 2) - dx**2 / (2 * sx[..., i] ** 2))
                       / (2 * math.pi * sy[..., i] * sx[..., i]))
        cols.append(torch.stack(col, dim=-1))  # (B, H, L): density of key j for every query i
    dens = torch.stack(cols, dim=-1)  # (B, H, L_query, L_key)
    return dens / dens.sum(-1, keepdim=True)


def _check_maps(p: object, q: object) -> None:
    check_tensor("p", p, ndim=4, floating=True)
    check_tensor("q", q, ndim=4, floating=True)
    if p.shape != q.shape:
        fail("q", f"the shape of p {tuple(p.shape)} (B, H, L, S)", describe(q))


def symmetric_kl(p: torch.Tensor, q: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """``KL(p || q) + KL(q || p)`` of (B, H, L, S) row distributions, with ``eps`` in the logs; mean over heads -> (B, L).

    Always >= 0: it equals ``sum_s (p - q) (log(p + eps) - log(q + eps))``.
    """
    _check_maps(p, q)
    lp, lq = torch.log(p + eps), torch.log(q + eps)
    return ((p * (lp - lq)).sum(-1) + (q * (lq - lp)).sum(-1)).mean(dim=1)


def row_entropy(p: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Entropy ``-sum_s p log(p + eps)`` of (B, H, L, S) row distributions, mean over heads -> (B, L)."""
    check_tensor("p", p, ndim=4, floating=True)
    return -(p * torch.log(p + eps)).sum(-1).mean(dim=1)


class _CorrelationTerms(torch.autograd.Function):
    """The three training terms of one (attention, target) pair from one set of logarithms (forward and backward)."""

    @staticmethod
    def forward(ctx, p, t, eps):
        lp, lt = torch.log(p + eps), torch.log(t + eps)
        dl = lt - lp
        kl = ((t - p) * dl).sum(-1).mean(1)
        ent = -(p * lp).sum(-1).mean(1)
        ctx.save_for_backward(p, t, lp, dl)
        ctx.eps = eps
        return kl, kl.clone(), ent

    @staticmethod
    def backward(ctx, g_kl_t, g_kl_p, g_ent):  # unused outputs arrive as zeros (materialised grads)
        p, t, lp, dl = ctx.saved_tensors
        heads, eps = p.shape[1], ctx.eps
        grad_p = grad_t = None

        def per_row(g):  # (B, L) -> (B, 1, L, 1), with the mean over heads
            return (g / heads)[:, None, :, None]

        # a gradient that is zero everywhere (an output the loss does not use) is skipped, not multiplied out
        if ctx.needs_input_grad[1] and bool(g_kl_t.any()):  # d KL / d t = dl + (t - p) / (t + eps)
            grad_t = per_row(g_kl_t) * (dl + (t - p) / (t + eps))
        if ctx.needs_input_grad[0]:  # d KL / d p = (p - t) / (p + eps) - dl;  d H / d p = -(lp + p / (p + eps))
            if bool(g_kl_p.any()):
                grad_p = per_row(g_kl_p) * ((p - t) / (p + eps) - dl)
            if bool(g_ent.any()):
                d_ent = per_row(g_ent) * (lp + p / (p + eps))
                grad_p = -d_ent if grad_p is None else grad_p - d_ent
        return grad_p, grad_t, None


def correlation_terms(p: torch.Tensor, t: torch.Tensor, eps: float = EPS
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FOD's three terms of attention maps ``p`` and targets ``t`` (B, H, L, S), each (B, L) (mean over heads):

    ``(KL_sym(t, p.detach()), KL_sym(t.detach(), p), H(p))``: the same divergence twice, the first with its
    gradient to the targets only, the second to the attention only, and the attention's entropy. One set of
    logarithms serves all three, forward and backward (the training loop's dominant cost); equal to
    :func:`correlation_terms_reference` (three separate graphs).
    """
    _check_maps(p, t)
    if p.dtype != t.dtype:
        fail("p, q", "one dtype", f"{p.dtype}, {t.dtype}", TypeError)
    return _CorrelationTerms.apply(p, t, eps)


def correlation_terms_reference(p: torch.Tensor, t: torch.Tensor, eps: float = EPS
                                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`correlation_terms` from :func:`symmetric_kl` and :func:`row_entropy` with ``detach``."""
    return symmetric_kl(t, p.detach(), eps), symmetric_kl(t.detach(), p, eps), row_entropy(p, eps)
