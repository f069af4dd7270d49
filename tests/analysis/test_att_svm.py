"""P22's attention SVM: hand-solved 2-D cases, exactness against an interior-point solver, the nuclear norm,
locally optimal tokens by the paper's definition, normalised GD converging to the SVM direction; bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attnlab.analysis.att_svm import (
    AttSVMProblem, att_svm, att_svm_problem, correlation, cvxpy_available, locally_optimal, max_margin,
    normalized_gd, optimal_tokens, support_tokens, svm_constraints, token_scores,
)

needs_cvxpy = pytest.mark.skipif(not cvxpy_available(), reason='cvxpy not installed (pip install -e ".[cvxpy]" '
                                                               "-c constraints.txt)")


@pytest.mark.parametrize("A, w", [
    ([[1, 0], [0, 1]], [1, 1]),        # min-norm point of the hull (0.5, 0.5) -> w = u / |u|^2
    ([[2, 0], [1, 1]], [0.5, 0.5]),    # both tight
    ([[1, 0], [3, 1]], [1, 0]),        # the second constraint is slack (3 >= 1)
])
def test_max_margin_by_hand(A, w):
    np.testing.assert_allclose(max_margin(np.array(A, dtype=float)), w, atol=1e-9)


def test_two_token_attention_svm_by_hand():
    # x_opt = e1, x_other = e2, z = e1: the one constraint is W11 - W21 >= 1 -> W = [[.5, 0], [-.5, 0]]
    X = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    z = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    W = att_svm(X, z, torch.tensor([0]))
    torch.testing.assert_close(W, torch.tensor([[0.5, 0.0], [-0.5, 0.0]], dtype=torch.float64), atol=1e-9, rtol=0)
    assert support_tokens(X, z, torch.tensor([0]), W) == [[1]]
    A, index = svm_constraints(X, z, torch.tensor([0]))
    np.testing.assert_allclose(A, [[1.0, 0.0, -1.0, 0.0]])
    assert index == [(0, 1)]


def test_infeasible_problem_is_refused():
    X = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)  # token 1 duplicates token 0
    z = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"constraints: expected a separable attention-SVM problem .* received an "
                                         r"infeasible one \(2 constraints in 4 dimensions\)"):
        att_svm(X, z, torch.tensor([0]))
    with pytest.raises(ValueError, match=r"opt: expected one token index in \[0, 3\) per sequence"):
        att_svm(X, z, torch.tensor([3]))
    with pytest.raises(ValueError, match="norm: expected one of"):
        att_svm(X, z, torch.tensor([2]), norm="spectral")


@needs_cvxpy
@pytest.mark.parametrize("seed", [0, 1])
def test_exact_solution_agrees_with_an_interior_point_qp(seed):
    p = att_svm_problem(4, 5, 6, seed=seed)
    A, _ = svm_constraints(p.X, p.z, optimal_tokens(p))
    w = max_margin(A)
    assert (A @ w).min() >= 1 - 1e-9
    np.testing.assert_allclose(w, max_margin(A, method="cvxpy"), atol=1e-6)


@needs_cvxpy
def test_nuclear_norm_solution():
    X = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    z = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(att_svm(X, z, torch.tensor([0]), norm="nuc"),
                               torch.tensor([[0.5, 0.0], [-0.5, 0.0]], dtype=torch.float64), atol=1e-6, rtol=0)
    p = att_svm_problem(5, 4, 4, seed=3)
    opt = optimal_tokens(p)
    fro, nuc = att_svm(p.X, p.z, opt), att_svm(p.X, p.z, opt, norm="nuc")
    A, _ = svm_constraints(p.X, p.z, opt)
    assert (A @ nuc.reshape(-1).numpy()).min() >= 1 - 1e-6
    nuclear = lambda W: float(torch.linalg.svdvals(W).sum())  # noqa: E731
    assert nuclear(nuc) <= nuclear(fro) + 1e-6 and float(fro.norm()) <= float(nuc.norm()) + 1e-9


def test_locally_optimal_tokens_by_the_definition():
    # T = 2: the other token is always a support token, so only the higher-scoring selection is locally optimal
    X = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    p = AttSVMProblem(X, torch.tensor([1.0], dtype=torch.float64), torch.tensor([[0.6, 0.8]], dtype=torch.float64),
                      torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert token_scores(p).tolist() == [[1.0, 0.0]] and optimal_tokens(p).tolist() == [0]
    assert locally_optimal(p, torch.tensor([0])) and not locally_optimal(p, torch.tensor([1]))
    q = att_svm_problem(seed=2)
    assert locally_optimal(q, optimal_tokens(q))


def test_normalized_gd_converges_to_the_svm_direction():
    p = att_svm_problem(seed=0)
    res = normalized_gd(p, steps=1500, record_every=500)
    W = att_svm(p.X, p.z, res.selected)
    corr = [correlation(Wt, W) for _, Wt in res.path]
    assert corr[-1] > 0.99 and corr[0] < corr[-1] and res.top_prob > 0.99
    assert [s for s, _ in res.path] == [500, 1000, 1500]
    assert torch.equal(res.selected, optimal_tokens(p))


def test_correlation_by_hand():
    assert correlation(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]])) == pytest.approx(1 / math.sqrt(2))
    assert correlation(torch.eye(2), -2 * torch.eye(2)) == pytest.approx(-1.0)
