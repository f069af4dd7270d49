"""Selective copying (Gu & Dao 2023, the Mamba paper's synthetic task; P23 surveys it)."""
from __future__ import annotations

import numpy as np
import torch

from attnlab.utils.checks import check_positive_int, fail
from attnlab.tasks.base import Batch, TokenLMTask, split_seed
from attnlab.tasks.registry import register
from attnlab.tasks.scoring import IGNORE, token_ce

__all__ = ["SelectiveCopying"]


@register("selective_copying")
class SelectiveCopying(TokenLMTask):
    """Copy the data tokens, in order, that are scattered at random positions among noise tokens.

    A sequence of ``seq_len`` tokens: the first ``seq_len - num_tokens`` positions hold the
    noise token 0 except for ``num_tokens`` data tokens (ids 1..vocab_size-2, drawn
    uniformly) at random distinct positions; the last ``num_tokens`` positions hold the
    marker ``vocab_size - 1``. At the i-th marker the model must output the i-th data
    token (next-token LM, causal; only those positions are scored, metric ``accuracy``).
    The positions differ per example, so a time-invariant filter cannot solve it: the
    model has to select tokens by content.

    Shapes: inputs (B, seq_len) long, targets (B, seq_len) long with -100 on unscored
    positions; model outputs (B, seq_len, vocab_size) logits.
    """

    metric = "accuracy"
    higher_is_better = True

    def __init__(self, vocab_size: int = 10, seq_len: int = 64, num_tokens: int = 8, seed: int = 0):
        super().__init__(seed)
        self.vocab_size = check_positive_int("vocab_size", vocab_size)
        self.seq_len = check_positive_int("seq_len", seq_len)
        self.num_tokens = check_positive_int("num_tokens", num_tokens)
        if vocab_size < 4:
            fail("vocab_size", "at least 4 (noise, marker and two data tokens)", vocab_size)
        if seq_len < 2 * num_tokens:
            fail("seq_len", f"at least 2 * num_tokens = {2 * num_tokens} (data region + markers)", seq_len)

    def batch(self, split: str, index: int, batch_size: int) -> Batch:
        """Batch ``index`` of ``split``, deterministic in (seed, split, index)."""
        self._check_batch_args(split, index, batch_size)
        rng = np.random.default_rng(split_seed(self.seed, split, index))
        k, n, v = self.num_tokens, self.seq_len, self.vocab_size
        ctx = n - k
        data = rng.integers(1, v - 1, size=(batch_size, k))
        pos = np.sort(np.argsort(rng.random((batch_size, ctx)), axis=1)[:, :k], axis=1)
        x = np.zeros((batch_size, n), dtype=np.int64)
        rows = np.arange(batch_size)[:, None]
        x[rows, pos] = data
        x[:, ctx:] = v - 1
        y = np.full((batch_size, n), IGNORE, dtype=np.int64)
        y[:, ctx:] = data
        return Batch(torch.from_numpy(x), torch.from_numpy(y), {"positions": torch.from_numpy(pos)})

    def loss(self, outputs: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict]:
        """Cross-entropy at the marker positions; ``accuracy`` of the copied tokens."""
        return token_ce(outputs, batch.targets, self.vocab_size)
