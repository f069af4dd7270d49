"""Scan and Snap's synthetic next-token data (P05: Tian, Wang, Chen, Du 2023), after the official ``Dataset2``.

Each *sequence class* (fact) f has a query token m_f and a next token n_f. A sequence is T - 1
context tokens drawn i.i.d. from P(l | f), then the query m_f; the target is n_f. P(l | f) puts
weight ``common_weight`` on each of the ``num_common`` common tokens (shared by every class) and
weights ``linspace(*distinct_weights)`` on the ``num_distinct`` tokens that only class f uses
(normalised). Several classes share a query when ``next_per_query > 1``, which is P05's case: the
query alone does not say which next token follows, the distinct tokens of the context do.

Token ids: common ``[0, C)``, then the distinct tokens of each class, then the queries, then the
next tokens; the vocabulary has C + F D + Q + F ids (F = num_queries * next_per_query classes).
Output: ``"class"``, one label (the next token) per sequence; metric ``accuracy``.
"""
from __future__ import annotations

import torch

from attnlab.tasks.base import Batch, Task, TaskSpec
from attnlab.tasks.registry import register
from attnlab.tasks.scoring import class_ce
from attnlab.utils.checks import check_positive_int, fail

__all__ = ["ScanSnapTask"]


@register("scan_snap")
class ScanSnapTask(Task):
    """Predict the next token from a bag of context tokens and a query token (P05's synthetic sequence classes).

    Shapes: inputs (B, T) long (the last token is the query), targets (B,) long; extras ``fact`` (B,).
    Attributes: ``probs`` (F, V) P(l | f) over the vocabulary, ``query`` (F,) and ``next`` (F,) token ids,
    ``common`` (C,) ids and ``distinct`` (F, D) ids.
    """

    metric = "accuracy"
    higher_is_better = True

    def __init__(self, num_queries: int = 1, next_per_query: int = 2, num_common: int = 10, num_distinct: int = 10,
                 seq_len: int = 128, distinct_weights: tuple[float, float] = (0.1, 1.0), common_weight: float = 1.0,
                 seed: int = 0):
        super().__init__(seed)
        q, per = check_positive_int("num_queries", num_queries), check_positive_int("next_per_query", next_per_query)
        c, d = check_positive_int("num_common", num_common), check_positive_int("num_distinct", num_distinct)
        self.seq_len = check_positive_int("seq_len", seq_len)
        if seq_len < 2:
            fail("seq_len", "at least 2 (context and query)", seq_len)
        lo, hi = (float(w) for w in distinct_weights)
        if not (0 < lo <= hi) or not float(common_weight) > 0:
            fail("distinct_weights, common_weight", "0 < low <= high and a positive common weight",
                 f"{distinct_weights}, {common_weight}")
        f = q * per
        self.num_facts = f
        self.common = torch.arange(c)
        self.distinct = c + torch.arange(f * d).view(f, d)
        self.query = c + f * d + torch.arange(f) // per
        self.next = c + f * d + q + torch.arange(f)
        self.vocab_size = c + f * d + q + f
        probs = torch.zeros(f, self.vocab_size, dtype=torch.float64)
        probs[:, :c] = float(common_weight)
        for k in range(f):
            probs[k, self.distinct[k]] = torch.linspace(lo, hi, d, dtype=torch.float64)
        self.probs = probs / probs.sum(dim=1, keepdim=True)

    @property
    def spec(self) -> TaskSpec:
        """Tokens in (the vocabulary above), one next-token label per sequence."""
        return TaskSpec(input="tokens", output="class", seq_len=self.seq_len, vocab_size=self.vocab_size,
                        num_classes=self.vocab_size, causal=False)

    def batch(self, split: str, index: int, batch_size: int) -> Batch:
        """Batch ``index`` of ``split``: classes uniform, context i.i.d. from P(l | f), deterministic."""
        self._check_batch_args(split, index, batch_size)
        g = self.generator(split, index)
        fact = torch.randint(0, self.num_facts, (batch_size,), generator=g)
        context = torch.multinomial(self.probs[fact].float(), self.seq_len - 1, replacement=True, generator=g)
        tokens = torch.cat([context, self.query[fact][:, None]], dim=1)
        return Batch(tokens, self.next[fact].clone(), {"fact": fact})

    def loss(self, outputs: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict]:
        """Cross-entropy of the (B, V) next-token logits; metrics ``loss`` and ``accuracy``."""
        return class_ce(outputs, batch.targets, self.vocab_size)
