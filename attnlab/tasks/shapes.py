"""A generated image task whose label needs global context: where is the blue shape relative to the red one?"""
from __future__ import annotations

import numpy as np
import torch

from attnlab.utils.checks import check_positive_int, fail
from attnlab.tasks.base import Batch, Task, TaskSpec, split_seed
from attnlab.tasks.registry import register
from attnlab.tasks.scoring import class_ce

__all__ = ["Shapes", "SHAPE_NAMES", "STAMP_KINDS", "shape_mask"]

SHAPE_NAMES = ("square", "cross", "triangle", "ring")
_COLORS = {
    "red": (1.0, 0.1, 0.1),
    "blue": (0.1, 0.2, 1.0),
    "distractors": ((0.1, 0.9, 0.1), (0.9, 0.9, 0.1), (0.9, 0.9, 0.9), (0.1, 0.9, 0.9)),
}


#: every shape :func:`shape_mask` draws (the shapes task uses the first four; segmentation and the video add the disc)
STAMP_KINDS = SHAPE_NAMES + ("disc",)


def shape_mask(kind: str, s: int) -> np.ndarray:
    """Boolean s x s mask of a shape: one of :data:`STAMP_KINDS` (square, cross, triangle, ring, disc)."""
    yy, xx = np.mgrid[0:s, 0:s]
    c = (s - 1) / 2
    if kind == "disc":
        return np.hypot(xx - c, yy - c) <= c + 0.3
    if kind == "square":
        return np.ones((s, s), bool)
    if kind == "disc":
        return np.hypot(xx - c, yy - c) <= c + 0.3
    if kind == "cross":
        w = max(s // 3, 1)
        lo = (s - w) // 2
        return ((xx >= lo) & (xx < lo + w)) | ((yy >= lo) & (yy < lo + w))
    if kind == "triangle":
        return np.abs(xx - c) <= (yy + 1) / 2
    r = np.hypot(xx - c, yy - c)
    return (r <= c + 0.3) & (r >= c - 1.2)


@register("shapes")
class Shapes(Task):
    """Which way is the blue shape from the red one, and are they the same shape? (8 classes, needs global context)

    Each RGB image of ``img_size`` x ``img_size`` (default 32) holds one red and one
    blue shape (square, cross, triangle or ring; ``size`` px) far apart, and
    ``num_distractors`` shapes in other colours. Label = 2 x quadrant + same, where
    quadrant in 0..3 says whether blue is right of / below red, and same = 1 when
    red and blue have the same shape. The quadrant needs the positions of two
    distant objects (a bag of patches without positions cannot tell it; chance is
    1/8); the shape comparison needs their contents. Pixels get N(0, ``noise``^2) noise.
    Deterministic in (seed, split, index); classes are balanced in expectation.

    Shapes: inputs (B, 3, img_size, img_size) float, targets (B,) long; metric ``accuracy``.
    """

    metric = "accuracy"
    higher_is_better = True
    num_classes = 8

    def __init__(self, img_size: int = 32, size: int = 5, num_distractors: int = 3, min_offset: int = 4,
                 noise: float = 0.05, seed: int = 0):
        super().__init__(seed)
        self.img_size = check_positive_int("img_size", img_size)
        self.size = check_positive_int("size", size)
        if isinstance(num_distractors, bool) or not isinstance(num_distractors, int) or num_distractors < 0:
            fail("num_distractors", "an int >= 0", repr(num_distractors))
        self.num_distractors = num_distractors
        self.min_offset = check_positive_int("min_offset", min_offset)
        if img_size < 2 * size + min_offset + 2:
            fail("img_size", f"at least 2 * size + min_offset + 2 = {2 * size + min_offset + 2}", img_size)
        if not float(noise) >= 0:
            fail("noise", "a number >= 0", noise)
        self.noise = float(noise)
        self._stamps = {k: shape_mask(k, size) for k in SHAPE_NAMES}

    @property
    def spec(self) -> TaskSpec:
        """RGB images in, 8-class logits out."""
        return TaskSpec(input="image", output="class", img_size=(self.img_size, self.img_size), in_chans=3,
                        num_classes=self.num_classes)

    def _free(self, occupied: np.ndarray, y: int, x: int) -> bool:
        s = self.size
        return not occupied[max(y - 1, 0) : y + s + 1, max(x - 1, 0) : x + s + 1].any()

    def _draw_one(self, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        n, s, off = self.img_size, self.size, self.min_offset
        img = np.zeros((3, n, n), np.float32)
        occupied = np.zeros((n, n), bool)
        quadrant = int(rng.integers(4))
        same = int(rng.integers(2))
        kinds = rng.permutation(len(SHAPE_NAMES))
        red_kind = SHAPE_NAMES[kinds[0]]
        blue_kind = red_kind if same else SHAPE_NAMES[kinds[1]]
        right, below = quadrant % 2, quadrant // 2
        while True:  # red at (ry, rx); blue at least `off` px away along both axes, in the chosen quadrant
            ry, rx, by, bx = (int(v) for v in rng.integers(0, n - s + 1, size=4))
            if (bx - rx >= off if right else rx - bx >= off) and (by - ry >= off if below else ry - by >= off):
                break
        for (y, x), kind, col in (((ry, rx), red_kind, _COLORS["red"]), ((by, bx), blue_kind, _COLORS["blue"])):
            m = self._stamps[kind]
            img[:, y : y + s, x : x + s][:, m] = np.asarray(col, np.float32)[:, None]
            occupied[y : y + s, x : x + s] |= m
        for _ in range(self.num_distractors):
            for _attempt in range(20):
                y, x = (int(v) for v in rng.integers(0, n - s + 1, size=2))
                if self._free(occupied, y, x):
                    m = self._stamps[SHAPE_NAMES[int(rng.integers(len(SHAPE_NAMES)))]]
                    col = _COLORS["distractors"][int(rng.integers(len(_COLORS["distractors"])))]
                    img[:, y : y + s, x : x + s][:, m] = np.asarray(col, np.float32)[:, None]
                    occupied[y : y + s, x : x + s] |= m
                    break
        return img, 2 * quadrant + same

    def batch(self, split: str, index: int, batch_size: int) -> Batch:
        """Batch ``index`` of ``split``, deterministic in (seed, split, index)."""
        self._check_batch_args(split, index, batch_size)
        rng = np.random.default_rng(split_seed(self.seed, split, index))
        imgs, labels = zip(*(self._draw_one(rng) for _ in range(batch_size)))
        x = np.stack(imgs)
        if self.noise:
            x = x + self.noise * rng.standard_normal(x.shape).astype(np.float32)
        return Batch(torch.from_numpy(x), torch.tensor(labels, dtype=torch.long))

    def loss(self, outputs: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict]:
        """Cross-entropy; metric ``accuracy``."""
        return class_ce(outputs, batch.targets, self.num_classes)
