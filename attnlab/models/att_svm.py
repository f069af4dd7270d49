"""The one-layer attention model of P22 ("Transformers as Support Vector Machines"): f(X) = v^T X^T softmax(X W z).

Each example is a sequence X (T, d) and a query z (d,) (cross-attention; z = a token of X gives
self-attention). The attention logits are ``x_t^T W z`` with ``W`` trained directly (``param="W"``)
or as ``W = K Q^T`` (``param="KQ"``, K and Q (d, m)); the value/head is a fixed vector v (d,), so
the output is the attention-weighted mean of the tokens' scores v^T x_t. P22 shows that gradient
descent on W converges in direction to the solution of an SVM that separates the selected token
of each sequence from the others (``attnlab.analysis.att_svm``).

Initialisation follows the official code's ``nn.Linear`` default: U(-1/sqrt(d), 1/sqrt(d)).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from attnlab.utils.checks import check_choice, check_positive_int, check_tensor, describe, fail

__all__ = ["SVMAttention"]


class SVMAttention(nn.Module):
    """f_i = v^T X_i^T softmax(X_i W z_i): (X (n, T, d), z (n, d)) -> (outputs (n,), attention (n, T)). Paper P22.

    Args:
        v: (d,) the fixed head (a buffer, not trained).
        param: ``"W"`` (one d x d matrix) or ``"KQ"`` (W = K Q^T with K, Q of shape (d, hidden)).
        hidden: m, the width of K and Q (default d).
    """

    def __init__(self, v: torch.Tensor, *, param: str = "W", hidden: int | None = None):
        super().__init__()
        check_tensor("v", v, ndim=1, floating=True)
        check_choice("param", param, ("W", "KQ"))
        d = v.shape[0]
        hidden = check_positive_int("hidden", hidden if hidden is not None else d)
        self.param = param
        self.register_buffer("v", v.detach().clone())
        bound = 1.0 / math.sqrt(d)

        def init(*shape):
            return nn.Parameter(torch.empty(*shape, dtype=v.dtype).uniform_(-bound, bound))

        if param == "W":
            self.W = init(d, d)
        else:
            self.K, self.Q = init(d, hidden), init(d, hidden)

    def attention_matrix(self) -> torch.Tensor:
        """The d x d matrix of the logits ``x^T W z`` (``K Q^T`` in the KQ form)."""
        return self.W if self.param == "W" else self.K @ self.Q.T

    def forward(self, X: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(outputs (n,), attention probabilities (n, T))."""
        d = self.v.shape[0]
        check_tensor("X", X, ndim=3, floating=True)
        check_tensor("z", z, ndim=2, floating=True)
        if X.shape[-1] != d or tuple(z.shape) != (X.shape[0], d):
            fail("X, z", f"shapes (n, T, {d}) and (n, {d})", f"{describe(X)} and {describe(z)}")
        probs = torch.einsum("ntd,de,ne->nt", X, self.attention_matrix(), z).softmax(-1)
        return torch.einsum("nt,ntd,d->n", probs, X, self.v), probs
