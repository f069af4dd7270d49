"""Bigram + copy language modelling: a Markov chain, a separator, then the chain again (P08's reproduction).

A model that sees only the current token (no mixing across positions) can learn the first half (a
bigram chain) but not the second (a copy), whose next token is known only by looking back at the
chain; a fixed attention pattern cannot do it either, because the chain's length, hence the copy's
offset, changes from sequence to sequence.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from attnlab.tasks.base import Batch, Task, TaskSpec, split_seed
from attnlab.tasks.registry import register
from attnlab.tasks.scoring import IGNORE, check_outputs
from attnlab.utils.checks import check_positive_int, describe, fail

__all__ = ["BigramCopy", "SEP"]

#: the separator token between the chain and its copy
SEP = 0


@register("bigram_copy")
class BigramCopy(Task):
    """Next-token prediction on ``chain (a tokens) SEP chain chain ...``; metric ``loss`` (nats, lower is better).

    Each sequence starts with a chain of a tokens (a uniform in [min_prefix, max_prefix]) drawn from a
    fixed bigram model over ids 1 .. vocab_size - 1 (first token uniform; each row of the transition
    matrix ~ Dirichlet(concentration), drawn once from the task seed, so all splits share the model),
    then the separator ``SEP = 0``, then the chain repeated: x_t = x_{t - a - 1} for t > a. Scored:
    every next-token prediction except that of the separator (its position is random). Metrics:
    ``loss`` and ``accuracy`` over all scored positions, ``bigram_loss`` over the chain (predictable from
    the previous token alone), ``copy_loss`` and ``copy_accuracy`` over the copy (predictable exactly by
    looking back a + 1 tokens). ``bigram_entropy`` is the chain's conditional entropy under its
    stationary distribution: what a model without mixing can reach on either half.

    Shapes: inputs (B, seq_len) long, targets (B, seq_len) long (IGNORE at the separator's prediction);
    ``batch.extras["copy"]`` (B, seq_len) bool marks the copy predictions. Model outputs (B, seq_len, V).
    """

    metric = "loss"
    higher_is_better = False

    def __init__(self, vocab_size: int = 32, seq_len: int = 128, min_prefix: int | None = None,
                 max_prefix: int | None = None, concentration: float = 0.1, seed: int = 0):
        super().__init__(seed)
        self.vocab_size = check_positive_int("vocab_size", vocab_size)
        self.seq_len = check_positive_int("seq_len", seq_len)
        if vocab_size < 3:
            fail("vocab_size", "at least 3 (the separator and two chain tokens)", vocab_size)
        self.min_prefix = check_positive_int("min_prefix", seq_len // 4 if min_prefix is None else min_prefix)
        self.max_prefix = check_positive_int("max_prefix", seq_len // 2 - 1 if max_prefix is None else max_prefix)
        if not 2 <= self.min_prefix <= self.max_prefix <= seq_len - 2:
            fail("min_prefix, max_prefix", f"2 <= min_prefix <= max_prefix <= seq_len - 2 = {seq_len - 2}",
                 (self.min_prefix, self.max_prefix))
        if isinstance(concentration, bool) or not isinstance(concentration, (int, float)) or not concentration > 0:
            fail("concentration", "a positive float (Dirichlet concentration of the bigram rows)", describe(concentration))
        self.concentration = float(concentration)
        rng = np.random.default_rng(seed * 7_919 + 17)
        self.transitions = rng.dirichlet(np.full(vocab_size - 1, self.concentration), size=vocab_size - 1)

    @property
    def spec(self) -> TaskSpec:
        """Tokens in, next-token logits out, causal."""
        return TaskSpec(input="tokens", output="lm", seq_len=self.seq_len, vocab_size=self.vocab_size,
                        num_classes=self.vocab_size, causal=True)

    @property
    def bigram_entropy(self) -> float:
        """Conditional entropy (nats) of the chain's next token under the stationary distribution."""
        p = self.transitions
        vals, vecs = np.linalg.eig(p.T)
        pi = np.real(vecs[:, np.argmin(np.abs(vals - 1.0))])
        pi = pi / pi.sum()
        row_h = -(p * np.log(np.clip(p, 1e-300, None))).sum(1)
        return float(pi @ row_h)

    def batch(self, split: str, index: int, batch_size: int) -> Batch:
        """Batch ``index`` of ``split``, deterministic in (seed, split, index)."""
        self._check_batch_args(split, index, batch_size)
        rng = np.random.default_rng(split_seed(self.seed, split, index))
        n, v = self.seq_len, self.vocab_size
        a = rng.integers(self.min_prefix, self.max_prefix + 1, size=batch_size)
        chain = np.zeros((batch_size, self.max_prefix), dtype=np.int64)
        chain[:, 0] = rng.integers(1, v, size=batch_size)
        cum = np.cumsum(self.transitions, axis=1)
        for t in range(1, self.max_prefix):
            u = rng.random(batch_size)[:, None]
            chain[:, t] = 1 + np.minimum((u > cum[chain[:, t - 1] - 1]).sum(1), v - 2)
        t = np.arange(n + 1)[None, :]
        period = a[:, None] + 1
        src = t % period  # position in the chain (== a at the separators)
        seq = np.where(src == a[:, None], SEP, np.take_along_axis(chain, np.minimum(src, self.max_prefix - 1), 1))
        x, y = seq[:, :-1], seq[:, 1:].copy()
        target_pos = t[:, 1:]
        y[target_pos == a[:, None]] = IGNORE  # the first separator comes after a random-length chain
        copy = target_pos > a[:, None]
        return Batch(torch.from_numpy(x.copy()), torch.from_numpy(y), {"copy": torch.from_numpy(copy)})

    def loss(self, outputs: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict]:
        """Mean cross-entropy over the scored predictions; metrics ``loss``, ``accuracy``, ``bpc``, ``bigram_loss``,
        ``copy_loss``, ``copy_accuracy``."""
        b, n = batch.targets.shape
        check_outputs(outputs, (b, n, self.vocab_size), "logits of shape (B, N, V)")
        ce = F.cross_entropy(outputs.reshape(-1, self.vocab_size).float(), batch.targets.reshape(-1),
                             ignore_index=IGNORE, reduction="none").view(b, n)
        scored = batch.targets != IGNORE
        loss = ce[scored].mean()
        with torch.no_grad():
            hit = outputs.argmax(-1) == batch.targets
            copy = batch.extras["copy"] & scored
            chain = ~batch.extras["copy"] & scored
            value = loss.item()
            metrics = {"loss": value, "bpc": value / math.log(2), "accuracy": hit[scored].float().mean().item(),
                       "bigram_loss": ce[chain].mean().item(), "copy_loss": ce[copy].mean().item(),
                       "copy_accuracy": hit[copy].float().mean().item()}
        return loss, metrics
