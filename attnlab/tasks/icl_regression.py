"""In-context linear regression (P24: Zhang, He et al. 2025; after Garg et al. 2022)."""
from __future__ import annotations

import torch

from attnlab.utils.checks import check_positive_int, describe, fail
from attnlab.tasks.base import Batch, Task, TaskSpec
from attnlab.tasks.registry import register
from attnlab.tasks.scoring import check_outputs

__all__ = ["InContextRegression"]


@register("icl_regression")
class InContextRegression(Task):
    """Predict y_q = w^T x_q from L in-context examples (x_i, y_i = w^T x_i + noise), a fresh w per sequence.

    P24's setup: x ~ N(0, I_d), w ~ N(0, I_d) (or N(0, I_d / d) with
    ``normalize_w``), tokens z_i = (x_i, y_i) in R^{d+1} for i < L, then the query
    z_q = (x_q, 0). The model outputs (B, L + 1, 1) values; the loss is the squared
    error at the query (last) position. Metric: ``mse`` (lower is better).

    Shapes: inputs (B, L + 1, d + 1) float, targets (B,) float; extras ``w`` (B, d).
    """

    metric = "mse"
    higher_is_better = False

    def __init__(self, dim: int = 5, num_examples: int = 40, noise_std: float = 0.0, normalize_w: bool = False,
                 seed: int = 0):
        super().__init__(seed)
        self.dim = check_positive_int("dim", dim)
        self.num_examples = check_positive_int("num_examples", num_examples)
        if not float(noise_std) >= 0:
            fail("noise_std", "a number >= 0", noise_std)
        self.noise_std = float(noise_std)
        self.normalize_w = bool(normalize_w)

    @property
    def spec(self) -> TaskSpec:
        """Vectors in (d + 1 features), one regression value per position (the last is scored)."""
        return TaskSpec(input="vectors", output="regression", seq_len=self.num_examples + 1, in_dim=self.dim + 1,
                        out_dim=1, causal=False)

    def sample(self, split: str, index: int, batch_size: int, num_examples: int | None = None) -> Batch:
        """Like :meth:`batch` but with ``num_examples`` context pairs (length generalisation tests)."""
        self._check_batch_args(split, index, batch_size)
        n_ctx = self.num_examples if num_examples is None else check_positive_int("num_examples", num_examples)
        g = self.generator(split, index)
        d = self.dim
        w = torch.randn(batch_size, d, generator=g)
        if self.normalize_w:
            w = w / d**0.5
        x = torch.randn(batch_size, n_ctx + 1, d, generator=g)
        y = torch.einsum("bnd,bd->bn", x, w) + self.noise_std * torch.randn(batch_size, n_ctx + 1, generator=g)
        z = torch.cat([x, y[..., None]], dim=-1)
        z[:, -1, -1] = 0.0  # the query's label is hidden
        return Batch(z, y[:, -1].clone(), {"w": w})

    def batch(self, split: str, index: int, batch_size: int) -> Batch:
        """Batch ``index`` of ``split``, deterministic in (seed, split, index)."""
        return self.sample(split, index, batch_size)

    def loss(self, outputs: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict]:
        """Squared error of the prediction at the query position; metric ``mse``."""
        b, n, _ = batch.inputs.shape
        if isinstance(outputs, torch.Tensor) and outputs.dim() == 2 and outputs.shape == (b, n):
            outputs = outputs[..., None]
        check_outputs(outputs, (b, n, 1), "predictions of shape (B, N, 1)")
        pred = outputs[:, -1, 0].float()
        loss = ((pred - batch.targets) ** 2).mean()
        return loss, {"loss": loss.item(), "mse": loss.item()}


def least_squares_prediction(batch: Batch, ridge: float = 0.0) -> torch.Tensor:
    """Baseline: (ridge-regularised) least squares fitted on the context, evaluated at the query: (B,)."""
    if not isinstance(batch.inputs, torch.Tensor) or batch.inputs.dim() != 3:
        fail("batch.inputs", "(B, L + 1, d + 1)", describe(batch.inputs))
    z = batch.inputs.double()
    x, y, xq = z[:, :-1, :-1], z[:, :-1, -1], z[:, -1, :-1]
    d = x.shape[-1]
    gram = x.transpose(1, 2) @ x + ridge * torch.eye(d, dtype=z.dtype)
    w = torch.linalg.lstsq(gram, (x.transpose(1, 2) @ y[..., None])).solution[..., 0]
    return (w * xq).sum(-1).to(batch.inputs.dtype)
