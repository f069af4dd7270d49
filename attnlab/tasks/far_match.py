"""A generated image task that needs context across the image: do two far-apart glyphs match?"""
from __future__ import annotations

import numpy as np
import torch

from attnlab._checks import check_positive_int, fail
from attnlab.tasks.base import Batch, Task, TaskSpec, split_seed
from attnlab.tasks.registry import register
from attnlab.tasks.scoring import class_ce

__all__ = ["FarMatch"]


@register("far_match")
class FarMatch(Task):
    """Are the two red glyphs the same? They lie at least ``min_offset`` px apart along both axes (2 classes).

    Each RGB image (``img_size`` px) holds two red glyphs (``glyph`` x ``glyph`` binary
    patterns out of a fixed bank of ``num_glyphs``), placed at least ``min_offset`` px
    apart along both axes, and ``num_distractors`` green glyphs anywhere. Label 1 when the
    two red glyphs are the same pattern (probability 1/2). Equality of two far objects
    is not a sum of functions of each, so a model whose tokens never see both objects
    (a local-attention receptive field smaller than the gap, then mean pooling and a
    linear head) stays at chance; built for the DiNAT reproduction (P26). Positions are
    sampled directly (no rejection), so batches are cheap. Pixels get N(0, ``noise``^2).

    Shapes: inputs (B, 3, img_size, img_size) float, targets (B,) long; metric ``accuracy``;
    extras ``corners`` (B, 2, 2) long, the (y, x) corners of the red glyphs, and ``glyphs``
    (B, 2) long, their bank indices.
    """

    metric = "accuracy"
    higher_is_better = True
    num_classes = 2

    def __init__(self, img_size: int = 64, glyph: int = 6, min_offset: int = 40, num_glyphs: int = 4,
                 num_distractors: int = 4, noise: float = 0.05, seed: int = 0):
        super().__init__(seed)
        self.img_size = check_positive_int("img_size", img_size)
        self.glyph = check_positive_int("glyph", glyph)
        self.min_offset = check_positive_int("min_offset", min_offset)
        if num_glyphs < 2 or isinstance(num_glyphs, bool) or not isinstance(num_glyphs, int):
            fail("num_glyphs", "an int >= 2", repr(num_glyphs))
        if isinstance(num_distractors, bool) or not isinstance(num_distractors, int) or num_distractors < 0:
            fail("num_distractors", "an int >= 0", repr(num_distractors))
        if min_offset + glyph > img_size:
            fail("min_offset", f"at most img_size - glyph = {img_size - glyph}", min_offset)
        if not float(noise) >= 0:
            fail("noise", "a number >= 0", noise)
        self.num_glyphs, self.num_distractors, self.noise = num_glyphs, num_distractors, float(noise)
        # A fixed bank of distinct patterns (independent of the task seed): about half the pixels on.
        rng = np.random.default_rng(20221129)
        bank: list[np.ndarray] = []
        while len(bank) < num_glyphs:
            g = rng.random((glyph, glyph)) < 0.5
            if all((g != b).sum() >= glyph for b in bank):
                bank.append(g)
        self.bank = np.stack(bank)

    @property
    def spec(self) -> TaskSpec:
        """RGB images in, 2-class logits out."""
        return TaskSpec(input="image", output="class", img_size=(self.img_size, self.img_size), in_chans=3,
                        num_classes=2)

    def _pair(self, rng: np.random.Generator) -> tuple[int, int]:
        """Two coordinates at least ``min_offset`` apart, in random order."""
        span = self.img_size - self.glyph
        a = int(rng.integers(0, span - self.min_offset + 1))
        b = int(rng.integers(a + self.min_offset, span + 1))
        return (a, b) if rng.random() < 0.5 else (b, a)

    def batch(self, split: str, index: int, batch_size: int) -> Batch:
        """Batch ``index`` of ``split``, deterministic in (seed, split, index)."""
        self._check_batch_args(split, index, batch_size)
        rng = np.random.default_rng(split_seed(self.seed, split, index))
        n, g = self.img_size, self.glyph
        x = np.zeros((batch_size, 3, n, n), np.float32)
        labels = rng.integers(0, 2, size=batch_size)
        corners = np.zeros((batch_size, 2, 2), np.int64)
        glyphs = np.zeros((batch_size, 2), np.int64)
        for i in range(batch_size):
            (ya, yb), (xa, xb) = self._pair(rng), self._pair(rng)
            ga = int(rng.integers(self.num_glyphs))
            gb = ga if labels[i] else int((ga + rng.integers(1, self.num_glyphs)) % self.num_glyphs)
            x[i, 0, ya : ya + g, xa : xa + g] = self.bank[ga]
            x[i, 0, yb : yb + g, xb : xb + g] = self.bank[gb]
            corners[i], glyphs[i] = ((ya, xa), (yb, xb)), (ga, gb)
            for _ in range(self.num_distractors):
                y0, x0 = (int(v) for v in rng.integers(0, n - g + 1, size=2))
                x[i, 1, y0 : y0 + g, x0 : x0 + g] = np.maximum(x[i, 1, y0 : y0 + g, x0 : x0 + g],
                                                               self.bank[int(rng.integers(self.num_glyphs))])
        if self.noise:
            x = x + self.noise * rng.standard_normal(x.shape).astype(np.float32)
        extras = {"corners": torch.from_numpy(corners), "glyphs": torch.from_numpy(glyphs)}
        return Batch(torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64)), extras)

    def loss(self, outputs: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict]:
        """Cross-entropy; metric ``accuracy``."""
        return class_ce(outputs, batch.targets, 2)
