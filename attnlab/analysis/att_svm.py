"""Attention as max-margin token selection (P22, "Transformers as Support Vector Machines").

For sequences X_i (T, d), queries z_i (d,) and one selected token opt_i per sequence, the
attention SVM is

    min ||W||   subject to   (x_{i,opt_i} - x_{i,t})^T W z_i >= 1   for every i and t != opt_i

with the Frobenius norm for the W parametrisation (:func:`att_svm`, ``norm="fro"``) and the
nuclear norm for the (K, Q) parametrisation (``norm="nuc"``, needs cvxpy, an optional extra).
Each constraint is linear in W: ``<vec(W), vec((x_opt - x_t) z^T)> >= 1``, so the Frobenius problem
is a hard-margin linear SVM without bias on those vectors (:func:`max_margin`: scikit-learn's
LinearSVC for the start, then an active-set pass that makes it exact: the KKT conditions are
checked to 1e-9). An infeasible problem (no W separates the selected tokens) is a ValueError.

P22's token score is gamma_it = Y_i v^T x_it; the globally optimal tokens maximise it
(:func:`optimal_tokens`). Tokens alpha are *locally optimal* (the paper's definition) when, with
W_alpha the SVM solution for alpha, every support token t of sequence i (its constraint is tight)
scores below alpha_i: :func:`locally_optimal`. P22 proves that gradient descent on W converges in
direction to W_alpha for such alpha (globally: to W_opt); :func:`normalized_gd` runs the paper's
normalised gradient descent and :func:`correlation` measures <A, B> / (||A|| ||B||).

:func:`att_svm_problem` draws the paper's small synthetic problems (the official code's generator:
unit-norm tokens, queries and head, labels +-1).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np
import torch

from attnlab.models.att_svm import SVMAttention
from attnlab.utils.checks import check_choice, check_positive_int, check_tensor, fail

__all__ = ["AttSVMProblem", "att_svm_problem", "token_scores", "optimal_tokens", "svm_constraints", "max_margin",
           "att_svm", "support_tokens", "locally_optimal", "correlation", "normalized_gd", "GDResult",
           "cvxpy_available", "CVXPY_INSTALL"]

CVXPY_INSTALL = 'pip install -e ".[cvxpy]" -c constraints.txt'
#: KKT tolerance of the exact Frobenius solution; constraint tightness for support tokens
KKT_TOL, TIGHT_TOL = 1e-9, 1e-6


@dataclass
class AttSVMProblem:
    """n sequences of T tokens in d dimensions: X (n, T, d), labels Y (n,) in {-1, +1}, queries z (n, d), head v (d,)."""

    X: torch.Tensor
    Y: torch.Tensor
    z: torch.Tensor
    v: torch.Tensor


def att_svm_problem(n: int = 6, T: int = 8, d: int = 10, *, seed: int = 0) -> AttSVMProblem:
    """A random problem as in P22's experiments: tokens, queries and head uniform on the unit sphere, labels +-1 (fp64)."""
    for name, value in (("n", n), ("T", T), ("d", d)):
        check_positive_int(name, value)
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(d, generator=g, dtype=torch.float64)
    Y = torch.where(torch.randn(n, generator=g, dtype=torch.float64) > 0, 1.0, -1.0).double()
    X = torch.randn(n, T, d, generator=g, dtype=torch.float64)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    return AttSVMProblem(X / X.norm(dim=-1, keepdim=True), Y, z / z.norm(dim=-1, keepdim=True), v / v.norm())


def token_scores(problem: AttSVMProblem) -> torch.Tensor:
    """gamma (n, T): Y_i v^T x_it, how much token t helps classify sequence i."""
    return problem.Y[:, None] * (problem.X @ problem.v)


def optimal_tokens(problem: AttSVMProblem) -> torch.Tensor:
    """The globally optimal token of each sequence: argmax_t gamma_it, (n,) long."""
    return token_scores(problem).argmax(-1)


def _check_selection(X: torch.Tensor, z: torch.Tensor, opt: torch.Tensor) -> torch.Tensor:
    check_tensor("X", X, ndim=3, floating=True)
    check_tensor("z", z, ndim=2, floating=True)
    opt = torch.as_tensor(opt, dtype=torch.long)
    if opt.shape != (X.shape[0],) or int(opt.min()) < 0 or int(opt.max()) >= X.shape[1]:
        fail("opt", f"one token index in [0, {X.shape[1]}) per sequence, shape ({X.shape[0]},)", opt.tolist())
    return opt


def svm_constraints(X: torch.Tensor, z: torch.Tensor, opt: torch.Tensor) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The constraint vectors a_k = vec((x_{i,opt_i} - x_{i,t}) z_i^T) (row-major, (n (T-1), d^2)) and their (i, t)."""
    opt = _check_selection(X, z, opt)
    rows, index = [], []
    for i in range(X.shape[0]):
        for t in range(X.shape[1]):
            if t != int(opt[i]):
                rows.append(torch.outer(X[i, opt[i]] - X[i, t], z[i]).reshape(-1))
                index.append((i, t))
    return torch.stack(rows).double().numpy(), index


def _feasible(A: np.ndarray) -> bool:
    """Whether some w has A w >= 1 (a linear program, HiGHS)."""
    from scipy.optimize import linprog

    res = linprog(np.zeros(A.shape[1]), A_ub=-A, b_ub=-np.ones(A.shape[0]), bounds=(None, None), method="highs")
    return res.status == 0


def _active_set(A: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Polish a near-optimal w into the exact solution of min ||w|| s.t. A w >= 1 (primal active set on the KKT system)."""
    active = set(np.flatnonzero(A @ w <= 1 + 1e-3).tolist())
    for _ in range(20 * A.shape[0] + 20):
        idx = sorted(active)
        sub = A[idx]
        alpha = np.linalg.lstsq(sub @ sub.T, np.ones(len(idx)), rcond=None)[0] if idx else np.zeros(0)
        w = sub.T @ alpha if idx else np.zeros(A.shape[1])
        if idx and alpha.min() < -KKT_TOL:
            active.discard(idx[int(alpha.argmin())])
            continue
        slack = 1.0 - A @ w
        if slack.max() > KKT_TOL:
            active.add(int(slack.argmax()))
            continue
        return w
    raise RuntimeError("max_margin: the active-set pass did not converge (degenerate constraints)")


def max_margin(A: np.ndarray, *, method: str = "sklearn") -> np.ndarray:
    """The minimum-norm w with ``A w >= 1`` (a hard-margin linear SVM without bias), (p,) float64.

    ``method``: ``"sklearn"`` (LinearSVC with a large C on {(a_k, +1), (-a_k, -1)}, then the exact active-set
    pass) or ``"cvxpy"`` (an interior-point QP; needs cvxpy). ValueError naming ``constraints`` when no w
    satisfies them.
    """
    check_choice("method", method, ("sklearn", "cvxpy"))
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] == 0:
        fail("constraints", "a non-empty (m, p) matrix", getattr(A, "shape", A))
    if not _feasible(A):
        fail("constraints", "a separable attention-SVM problem (some W with (x_opt - x_t)^T W z >= 1 for all t)",
             f"an infeasible one ({A.shape[0]} constraints in {A.shape[1]} dimensions)")
    if method == "cvxpy":
        cp = _import_cvxpy()
        w = cp.Variable(A.shape[1])
        cp.Problem(cp.Minimize(cp.sum_squares(w)), [A @ w >= 1]).solve()
        return np.asarray(w.value)
    from sklearn.svm import LinearSVC

    scale = np.abs(A).max()
    svc = LinearSVC(loss="hinge", C=1e4, fit_intercept=False, tol=1e-8, max_iter=200_000, dual=True)
    svc.fit(np.vstack([A, -A]) / scale, np.r_[np.ones(len(A)), -np.ones(len(A))])
    return _active_set(A, svc.coef_[0] / scale)


def cvxpy_available() -> bool:
    """Whether cvxpy (the optional extra for the nuclear-norm SVM) is installed."""
    return importlib.util.find_spec("cvxpy") is not None


def _import_cvxpy():
    try:
        import cvxpy
    except ImportError as e:
        raise ImportError(f"cvxpy: expected an installed cvxpy for the nuclear-norm SVM, received {e}. "
                          f"Install it with: {CVXPY_INSTALL}") from e
    return cvxpy


def att_svm(X: torch.Tensor, z: torch.Tensor, opt: torch.Tensor, *, norm: str = "fro") -> torch.Tensor:
    """The attention-SVM solution W (d, d) for the selected tokens ``opt`` (n,): Frobenius or nuclear norm.

    ``norm="fro"`` is exact (:func:`max_margin`); ``norm="nuc"`` solves min ||W||_* with cvxpy (ImportError
    with the install command when it is absent). ValueError when the problem is infeasible.
    """
    check_choice("norm", norm, ("fro", "nuc"))
    A, _ = svm_constraints(X, z, opt)
    d = X.shape[-1]
    if norm == "fro":
        return torch.from_numpy(max_margin(A).reshape(d, d))
    cp = _import_cvxpy()
    if not _feasible(A):
        fail("constraints", "a separable attention-SVM problem (some W with (x_opt - x_t)^T W z >= 1 for all t)",
             f"an infeasible one ({A.shape[0]} constraints in {A.shape[1]} dimensions)")
    W = cp.Variable((d, d))
    flat = cp.reshape(W, (d * d,), order="C")
    problem = cp.Problem(cp.Minimize(cp.normNuc(W)), [A @ flat >= 1])
    problem.solve()
    if problem.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"att_svm: cvxpy ended with status {problem.status!r}")
    return torch.from_numpy(np.asarray(W.value))


def support_tokens(X: torch.Tensor, z: torch.Tensor, opt: torch.Tensor, W: torch.Tensor) -> list[list[int]]:
    """Per sequence, the tokens whose SVM constraint is tight under W: (x_opt - x_t)^T W z <= 1 + TIGHT_TOL."""
    opt = _check_selection(X, z, opt)
    margins = torch.einsum("ntd,de,ne->nt", X[torch.arange(X.shape[0]), opt][:, None] - X, W.to(X.dtype), z)
    return [[t for t in range(X.shape[1]) if t != int(opt[i]) and float(margins[i, t]) <= 1 + TIGHT_TOL]
            for i in range(X.shape[0])]


def locally_optimal(problem: AttSVMProblem, opt: torch.Tensor) -> bool:
    """P22's definition: every support token of W_alpha^mm (Frobenius) scores strictly below the selected token."""
    opt = _check_selection(problem.X, problem.z, opt)
    W = att_svm(problem.X, problem.z, opt)
    gamma = token_scores(problem)
    return all(float(gamma[i, t]) < float(gamma[i, opt[i]])
               for i, ts in enumerate(support_tokens(problem.X, problem.z, opt, W)) for t in ts)


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """<a, b> / (||a|| ||b||) of two matrices (P22's correlation coefficient)."""
    a, b = a.double().reshape(-1), b.double().reshape(-1)
    return float(a @ b / (a.norm() * b.norm()))


@dataclass
class GDResult:
    """Normalised gradient descent on an :class:`SVMAttention`: the final W (or K Q^T), the tokens it attends
    to most, their mean attention probability, the final loss, and W / ||W|| every ``record_every`` steps."""

    W: torch.Tensor
    selected: torch.Tensor
    top_prob: float
    loss: float
    path: list[tuple[int, torch.Tensor]]


def normalized_gd(problem: AttSVMProblem, *, param: str = "W", steps: int = 2000, lr: float = 0.1, seed: int = 0,
                  record_every: int = 0) -> GDResult:
    """P22's training: logistic loss log(1 + exp(-Y f(X))), each parameter moved by ``lr * grad / ||grad||_F``.

    ``param="KQ"`` adds the official code's tiny penalty eps (||K||^2 + ||Q||^2) (eps = fp64 machine epsilon),
    which keeps K and Q bounded without changing the direction. fp64 throughout.
    """
    check_positive_int("steps", steps)
    torch.manual_seed(seed)
    model = SVMAttention(problem.v, param=param)
    eps = torch.finfo(torch.float64).eps
    params = list(model.parameters())
    path = []
    for step in range(steps):
        out, probs = model(problem.X, problem.z)
        loss = torch.nn.functional.softplus(-problem.Y * out).mean()
        if param == "KQ":
            loss = loss + eps * (model.K.pow(2).sum() + model.Q.pow(2).sum())
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= lr * g / (g.norm() + eps)
        if record_every and (step + 1) % record_every == 0:
            W = model.attention_matrix().detach()
            path.append((step + 1, W / W.norm()))
    with torch.no_grad():
        out, probs = model(problem.X, problem.z)
        final_loss = float(torch.nn.functional.softplus(-problem.Y * out).mean())
    top = probs.max(-1)
    return GDResult(model.attention_matrix().detach().clone(), top.indices, float(top.values.mean()), final_loss, path)
