"""Multi-query associative recall (MQAR), as defined by Zoology (Arora, Eyuboglu et al. 2023)."""
from __future__ import annotations

import numpy as np
import torch

from attnlab.utils.checks import check_positive_int, fail
from attnlab.tasks.base import Batch, TokenLMTask, split_seed
from attnlab.tasks.registry import register
from attnlab.tasks.scoring import IGNORE, token_ce

__all__ = ["AssociativeRecall"]


@register("associative_recall")
class AssociativeRecall(TokenLMTask):
    """Multi-query associative recall: recall the value bound to each queried key (next-token LM).

    A sequence of ``seq_len`` tokens starts with ``num_pairs`` key-value pairs
    ``k1 v1 k2 v2 ...`` (keys distinct, drawn from ids ``[1, vocab_size/2)``,
    values distinct, from ``[vocab_size/2, vocab_size)``); the rest holds each
    key once more, at even offsets whose gap from the context follows the power
    law ``p(g) ~ g^(power_a - 1)`` (Zoology's, ``power_a=1`` is uniform), and
    random filler tokens elsewhere (or 0 with ``random_filler=False``). The model
    must predict, at each queried key, its value; only those positions are scored
    (``accuracy`` over them is the metric). Needs causal mixing.

    Shapes: inputs (B, seq_len) long, targets (B, seq_len) long with -100 on
    unscored positions; model outputs (B, seq_len, vocab_size) logits.
    """

    metric = "accuracy"
    higher_is_better = True

    def __init__(self, vocab_size: int = 128, seq_len: int = 64, num_pairs: int = 8, power_a: float = 0.01,
                 random_filler: bool = True, seed: int = 0):
        super().__init__(seed)
        self.vocab_size = check_positive_int("vocab_size", vocab_size)
        self.seq_len = check_positive_int("seq_len", seq_len)
        self.num_pairs = check_positive_int("num_pairs", num_pairs)
        if not 0 < float(power_a) <= 1:
            fail("power_a", "a number in (0, 1]", power_a)
        self.power_a = float(power_a)
        self.random_filler = bool(random_filler)
        if vocab_size // 2 - 1 < num_pairs:
            fail("vocab_size", f"at least 2 * (num_pairs + 1) = {2 * (num_pairs + 1)} ids (distinct keys)", vocab_size)
        space = (seq_len - 2 * num_pairs) // 2
        if space < num_pairs:
            fail("seq_len", f"at least 4 * num_pairs = {4 * num_pairs} (context + one slot per query)", seq_len)
        g = np.arange(1, space + 1, dtype=np.float64)
        p = g ** (self.power_a - 1.0)
        self._gap_p = p / p.sum()
        self._space = space

    def batch(self, split: str, index: int, batch_size: int) -> Batch:
        """Batch ``index`` of ``split``: (inputs, targets), deterministic in (seed, split, index)."""
        self._check_batch_args(split, index, batch_size)
        rng = np.random.default_rng(split_seed(self.seed, split, index))
        p, n, v = self.num_pairs, self.seq_len, self.vocab_size
        half = v // 2
        keys = np.argsort(rng.random((batch_size, half - 1)), axis=1)[:, :p] + 1
        values = np.argsort(rng.random((batch_size, v - half)), axis=1)[:, :p] + half
        x = rng.integers(0, v, size=(batch_size, n)) if self.random_filler else np.zeros((batch_size, n), np.int64)
        x[:, 0 : 2 * p : 2] = keys
        x[:, 1 : 2 * p : 2] = values
        # distinct query slots (gaps) per example, drawn from the power law without replacement
        gaps = np.stack([rng.choice(self._space, size=p, replace=False, p=self._gap_p) for _ in range(batch_size)])
        pos = 2 * p + 2 * gaps
        rows = np.arange(batch_size)[:, None]
        x[rows, pos] = keys
        y = np.full((batch_size, n), IGNORE, dtype=np.int64)
        y[rows, pos] = values
        return Batch(torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y), {"num_queries": p})

    def loss(self, outputs: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict]:
        """Cross-entropy at the queried keys; metric ``accuracy`` of the recalled values."""
        return token_ce(outputs, batch.targets, self.vocab_size)
