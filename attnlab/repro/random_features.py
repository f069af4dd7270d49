"""Reproduction ``random_features`` (P01: Fu, Guo, Bai, Mei, NeurIPS 2023).

Setup (the research notes' CPU version of the paper's experiment): query x0 and N keys
x_i, uniform on the sphere of radius sqrt(d), d = N = 16. Target from the paper's class
of key-permutation-invariant functions,

    y = (1/N) sum_i <x0, x_i>^3 / d^{3/2}.

Three random-feature models with the same number of features P and a linear readout
fitted by ridge regression (lambda chosen on a validation set from a fixed grid, the
same for every model):

* RFA, zero-mean: M heads with W_m entries N(0, 1/d), sigma = ReLU, P = M d
  features phi_m = (1/N) sum_i relu(x0^T W_m x_i) x_i (:func:`rfa_features`).
* RFA, biased: W_m = b I + the same Gaussian, b = 1 (makes the b <x0, x_i> part
  of the logit as large as the Gaussian part for inputs of norm sqrt(d)).
* RF-MLP: relu(G z) on the concatenation z = [x0; x_1; ...; x_N] (d (N+1) inputs),
  G Gaussian N(0, 1/dim z), P features.

Measured: normalised test MSE (MSE / Var y) against the number of training samples n.

Verdict rule (from the notes, at the largest n common to all runs, n = 2048 in the full
run): holds if biased RFA < zero-mean RFA and the RF-MLP error is at least 2x the
biased RFA error; does not hold if biased >= zero-mean or RF-MLP <= biased RFA;
inconclusive otherwise.
"""
from __future__ import annotations

import math

import torch

from attnlab.mixers.random_features import rfa_features, sample_qk_matrices
from attnlab.repro.base import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, ReproContext, ReproOutcome

PAPER = "P01"
CLAIM = (
    "Random-feature attention (frozen random QK heads, trained values) learns key-permutation-invariant "
    "targets with better sample complexity than a standard random-feature network, and non-zero-mean "
    "QK sampling improves it further on targets like (1/N) sum_i <x0, x_i>^p."
)

LAMBDAS = tuple(10.0**e for e in range(-6, 3))


def _sphere(n, k, d, g):
    x = torch.randn(n, k, d, generator=g)
    return x / x.norm(dim=-1, keepdim=True) * math.sqrt(d)


def make_data(n: int, d: int, num_keys: int, g: torch.Generator):
    """(x0 (n, d), keys (n, N, d), y (n,)) with y = (1/N) sum_i <x0, x_i>^3 / d^1.5."""
    x0 = _sphere(n, 1, d, g)[:, 0]
    keys = _sphere(n, num_keys, d, g)
    y = (torch.einsum("bd,bnd->bn", x0, keys) ** 3).mean(-1) / d**1.5
    return x0, keys, y


def ridge_path(f_tr, y_tr, f_va, y_va, f_te, y_te, lambdas=LAMBDAS) -> tuple[float, float]:
    """Fit ridge (with intercept) for each lambda, pick lambda on val; returns (test nmse, lambda)."""
    # centre features and targets on the training set (an unpenalised intercept), unit mean-square scale
    mu, y_mu = f_tr.double().mean(0), y_tr.double().mean()
    scale = (f_tr.double() - mu).pow(2).mean().sqrt().clamp_min(1e-12)
    a, b, c = ((t.double() - mu) / scale for t in (f_tr, f_va, f_te))
    y = y_tr.double() - y_mu
    n, p = a.shape
    dual = p > n
    gram = a @ a.T / n if dual else a.T @ a / n
    rhs = y / n if dual else a.T @ y / n
    best = (math.inf, math.nan, math.nan)
    for lam in lambdas:
        sol = torch.linalg.solve(gram + lam * torch.eye(gram.shape[0], dtype=gram.dtype), rhs)
        w = a.T @ sol if dual else sol
        val = ((b @ w + y_mu - y_va.double()) ** 2).mean().item() / y_va.double().var().item()
        if val < best[0]:
            test = ((c @ w + y_mu - y_te.double()) ** 2).mean().item() / y_te.double().var().item()
            best = (val, test, lam)
    return best[1], best[2]


def run(ctx: ReproContext) -> ReproOutcome:
    """Test error vs sample size for biased RFA, zero-mean RFA and the RF-MLP; writes ``random_features.png``."""
    d = num_keys = 16
    if ctx.quick:
        heads, sizes, n_val, n_test = 32, (128, 256, 512), 256, 512
    else:
        heads, sizes, n_val, n_test = 256, (256, 512, 1024, 2048, 4096), 1024, 2048
    p = heads * (d + 1)
    g = torch.Generator().manual_seed(ctx.seed)
    n_max = max(sizes)
    tr, va, te = (make_data(n, d, num_keys, g) for n in (n_max, n_val, n_test))
    gauss = sample_qk_matrices(heads, d, generator=g)
    w_by_model = {"rfa_zero_mean": gauss, "rfa_biased": gauss + 1.0 * torch.eye(d)}
    mlp_w = torch.randn(d * (num_keys + 1), p, generator=g) / math.sqrt(d * (num_keys + 1))

    def feats(name, data):
        x0, keys, _ = data
        if name == "rf_mlp":
            return torch.relu(torch.cat([x0, keys.flatten(1)], dim=1) @ mlp_w)
        return rfa_features(x0, keys, w_by_model[name], sigma="relu", constant=True).flatten(1)

    models = ("rfa_biased", "rfa_zero_mean", "rf_mlp")
    curves: dict[str, dict[int, float]] = {m: {} for m in models}
    lams: dict[str, dict[int, float]] = {m: {} for m in models}
    for name in models:
        f_tr, f_va, f_te = feats(name, tr), feats(name, va), feats(name, te)
        for n in sizes:
            err, lam = ridge_path(f_tr[:n], tr[2][:n], f_va, va[2], f_te, te[2])
            curves[name][n], lams[name][n] = err, lam

    n_judge = 2048 if 2048 in sizes else max(sizes)
    b, z, m = (curves[k][n_judge] for k in models)
    if b < z and m >= 2 * b:
        verdict = HOLDS
    elif b >= z or m <= b:
        verdict = DOES_NOT_HOLD
    else:
        verdict = INCONCLUSIVE

    plots = []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        for name in models:
            ax.plot(list(curves[name]), list(curves[name].values()), marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("training samples n")
        ax.set_ylabel("normalised test MSE")
        ax.set_title(f"P01: d=N={d}, {p} features, y = mean_i <x0,xi>^3", fontsize=9)
        ax.legend()
        fig.tight_layout()
        path = ctx.path("random_features.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        plots.append(str(path))
    except ImportError:
        pass

    measured = {
        "d": d,
        "num_keys": num_keys,
        "heads": heads,
        "features": p,
        "qk_bias": 1.0,
        "test_nmse": {k: {str(n): round(v, 5) for n, v in c.items()} for k, c in curves.items()},
        "ridge_lambda": {k: {str(n): v for n, v in c.items()} for k, c in lams.items()},
        "judged_at_n": n_judge,
    }
    summary = (
        f"Ridge-fitted readouts with {p} random features each, d=N={d}. At n={n_judge}: normalised test MSE "
        f"biased RFA {b:.3f}, zero-mean RFA {z:.3f}, RF-MLP {m:.3f} (MLP / biased = {m / max(b, 1e-12):.1f}x). "
        f"Rule: holds if biased < zero-mean and MLP >= 2x biased. Value input [x_i; 1] (a constant coordinate). M={heads} heads: far below the paper's scale."
    )
    return ReproOutcome(measured=measured, verdict=verdict, summary=summary, plots=plots)
