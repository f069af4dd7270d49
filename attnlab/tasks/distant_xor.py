"""A long-sequence task whose label needs two distant groups of tokens: do two marked symbols differ? (built for P27)"""
from __future__ import annotations

import numpy as np
import torch

from attnlab.tasks.base import Batch, Task, TaskSpec, split_seed
from attnlab.tasks.registry import register
from attnlab.tasks.scoring import class_ce
from attnlab.utils.checks import check_positive_int, fail

__all__ = ["DistantXor"]


@register("distant_xor")
class DistantXor(Task):
    """Do the two marked tokens of a long sequence differ? (2 classes; needs two distant groups of tokens.)

    A sequence of ``seq_len`` tokens is seen as ``num_groups`` contiguous groups. Every token is noise (ids
    0 .. ``noise_vocab`` - 1, uniform) except two *marked* tokens carrying symbols (ids ``noise_vocab`` ..
    ``noise_vocab + symbols - 1``), placed at random positions in two groups at least ``min_gap`` groups apart.
    The label is 1 when their symbols differ (with ``symbols=2``: the XOR of two marked bits). Half of the
    examples differ; each marked symbol alone is uniform whatever the label. A model whose tokens only see their
    own group (local attention in these groups) stays at chance: no group holds both marks, and a sum of
    per-group evidence cannot express "differ"; any model that brings the two groups together can solve it.
    Deterministic in (seed, split, index).

    Shapes: inputs (B, seq_len) long, targets (B,) long in {0, 1}; extras ``"positions"`` (B, 2) long, where
    the marked tokens are. Metric ``accuracy``.
    """

    metric = "accuracy"
    higher_is_better = True
    num_classes = 2

    def __init__(self, seq_len: int = 1024, num_groups: int = 16, min_gap: int = 2, noise_vocab: int = 14,
                 symbols: int = 2, seed: int = 0):
        super().__init__(seed)
        self.seq_len = check_positive_int("seq_len", seq_len)
        self.num_groups = check_positive_int("num_groups", num_groups)
        if seq_len % num_groups or num_groups < 2:
            fail("num_groups", f"an int >= 2 dividing seq_len={seq_len}", num_groups)
        self.min_gap = check_positive_int("min_gap", min_gap)
        if min_gap >= num_groups:
            fail("min_gap", f"an int in [1, num_groups={num_groups})", min_gap)
        self.noise_vocab = check_positive_int("noise_vocab", noise_vocab)
        self.symbols = check_positive_int("symbols", symbols)
        if symbols < 2:
            fail("symbols", "an int >= 2", symbols)
        self.group_size = seq_len // num_groups

    @property
    def spec(self) -> TaskSpec:
        """Token ids in (vocabulary ``noise_vocab + 2``), 2-class logits out."""
        return TaskSpec(input="tokens", output="class", seq_len=self.seq_len,
                        vocab_size=self.noise_vocab + self.symbols, num_classes=2)

    def batch(self, split: str, index: int, batch_size: int) -> Batch:
        """Batch ``index`` of ``split``, deterministic in (seed, split, index)."""
        self._check_batch_args(split, index, batch_size)
        rng = np.random.default_rng(split_seed(self.seed, split, index))
        t, n = self.num_groups, self.group_size
        x = rng.integers(0, self.noise_vocab, size=(batch_size, self.seq_len))
        pairs = np.array([(a, b) for a in range(t) for b in range(a + self.min_gap, t)])
        groups = pairs[rng.integers(len(pairs), size=batch_size)]
        pos = groups * n + rng.integers(0, n, size=(batch_size, 2))
        differ = rng.integers(0, 2, size=batch_size)
        first = rng.integers(0, self.symbols, size=batch_size)
        # the second symbol: the first again, or one of the others uniformly (each symbol alone stays uniform)
        second = np.where(differ == 1, (first + rng.integers(1, self.symbols, size=batch_size)) % self.symbols, first)
        rows = np.arange(batch_size)
        x[rows, pos[:, 0]] = self.noise_vocab + first
        x[rows, pos[:, 1]] = self.noise_vocab + second
        return Batch(torch.from_numpy(x.astype(np.int64)), torch.from_numpy(differ.astype(np.int64)),
                     {"positions": torch.from_numpy(pos.astype(np.int64))})

    def loss(self, outputs: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict]:
        """Cross-entropy; metric ``accuracy``."""
        return class_ce(outputs, batch.targets, 2)
