"""Probes of P24 (in-context linear regression with multi-head softmax attention).

P24 reports that trained heads converge to
  - KQ_h ~ omega_h * diag(I_d, 0): diagonal, homogeneous over the d covariate entries, zero
    on the label row/column;
  - OV_h ~ mu_h * e_{d+1}: only the last (label) entry is non-zero, with sum_h mu_h ~ 0;
which makes the layer compute one step of *debiased* gradient descent:
  yhat ~ c * (1/L) sum_i (y_i - ybar) x_i^T x_q.
"""
from __future__ import annotations

import torch

from attnlab.utils.checks import check_tensor, describe, fail

__all__ = ["kq_pattern", "ov_pattern", "gd_prediction", "fit_scale_r2"]


def kq_pattern(kq: torch.Tensor) -> dict[str, float]:
    """Statistics of KQ matrices (H, d+1, d+1) (row: query feature, column: key feature).

    Returns ``offdiag_ratio`` (energy of the off-diagonal covariate block over its diagonal),
    ``label_ratio`` (energy of the key-label column, entries (i < d, d), over the diagonal),
    ``label_row_ratio`` (the query-label row, entries (d, :): it multiplies the query's label
    slot, which is always 0, so it receives no gradient and keeps its initial value; reported,
    not part of the pattern), ``diag_cv`` (mean over heads of std/|mean| of each head's d
    diagonal entries: 0 = homogeneous) and ``omega`` (per-head mean diagonal).
    """
    kq = check_tensor("kq", kq, ndim=3, floating=True).double()
    if kq.shape[1] != kq.shape[2] or kq.shape[1] < 2:
        fail("kq", "(H, d+1, d+1) with d >= 1", describe(kq))
    d = kq.shape[1] - 1
    cov = kq[:, :d, :d]
    diag = torch.diagonal(cov, dim1=1, dim2=2)
    off = cov - torch.diag_embed(diag)
    diag_e = diag.pow(2).sum().clamp_min(1e-30)
    cv = (diag.std(dim=1, unbiased=False) / diag.mean(dim=1).abs().clamp_min(1e-30)).mean()
    return {"offdiag_ratio": float(off.pow(2).sum() / diag_e),
            "label_ratio": float(kq[:, :d, d].pow(2).sum() / diag_e),
            "label_row_ratio": float(kq[:, d, :].pow(2).sum() / diag_e),
            "diag_cv": float(cv), "omega": [float(w) for w in diag.mean(dim=1)]}


def ov_pattern(ov: torch.Tensor) -> dict[str, float]:
    """Statistics of OV vectors (H, d+1): ``covariate_ratio`` (energy of the first d entries over
    the last entry's), ``zero_sum`` (|sum_h mu_h| / sum_h |mu_h|) and ``mu`` (the last entries)."""
    ov = check_tensor("ov", ov, ndim=2, floating=True).double()
    mu = ov[:, -1]
    return {"covariate_ratio": float(ov[:, :-1].pow(2).sum() / mu.pow(2).sum().clamp_min(1e-30)),
            "zero_sum": float(mu.sum().abs() / mu.abs().sum().clamp_min(1e-30)),
            "mu": [float(m) for m in mu]}


def gd_prediction(z: torch.Tensor, debiased: bool = True) -> torch.Tensor:
    """One step of GD from w = 0 on the context, unscaled: (1/L) sum_i (y_i - ybar) x_i^T x_q  -> (B,).

    ``debiased=False`` gives plain one-step GD, (1/L) sum_i y_i x_i^T x_q.
    z: (B, L + 1, d + 1) as produced by the icl_regression task.
    """
    z = check_tensor("z", z, ndim=3, floating=True)
    x, y, xq = z[:, :-1, :-1], z[:, :-1, -1], z[:, -1, :-1]
    if debiased:
        y = y - y.mean(dim=1, keepdim=True)
    return torch.einsum("bl,bld,bd->b", y, x, xq) / x.shape[1]


def fit_scale_r2(pred: torch.Tensor, basis: torch.Tensor) -> tuple[float, float]:
    """Least-squares scale c with pred ~ c * basis, and the R^2 of that fit: (c, r2)."""
    p, b = pred.double().flatten(), basis.double().flatten()
    c = float((p * b).sum() / (b * b).sum().clamp_min(1e-30))
    resid = (p - c * b).pow(2).sum()
    total = (p - p.mean()).pow(2).sum().clamp_min(1e-30)
    return c, float(1 - resid / total)
