"""scikit-learn's handwritten digits (8x8, shipped with the package), upsampled, as an image task."""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from attnlab.utils.checks import check_positive_int, fail
from attnlab.tasks.base import Batch, Task, TaskSpec, split_seed
from attnlab.tasks.registry import register
from attnlab.tasks.scoring import class_ce

__all__ = ["Digits"]


@functools.lru_cache(maxsize=4)
def _images(img_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    if img_size != 8:
        x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False)
    x = (x - 0.3) / 0.4  # roughly zero-mean, unit-variance pixels
    return x, torch.tensor(d.target, dtype=torch.long)


@register("digits")
class Digits(Task):
    """Classify the 1,797 handwritten digits of scikit-learn (10 classes), upsampled to ``img_size``.

    A fixed permutation (independent of ``seed``) splits them 70/15/15 into
    train / val / test, so every run is scored on the same held-out images.
    Training batches are random draws from the train split (seeded); val/test
    batches walk through their split in order (wrapping around).
    Shapes: inputs (B, 1, img_size, img_size), targets (B,); metric ``accuracy``.
    """

    metric = "accuracy"
    higher_is_better = True

    def __init__(self, img_size: int = 32, seed: int = 0):
        super().__init__(seed)
        self.img_size = check_positive_int("img_size", img_size)
        if img_size < 8:
            fail("img_size", "at least 8 (the digits are 8x8)", img_size)
        self.images, self.labels = _images(img_size)
        order = np.random.default_rng(12345).permutation(len(self.labels))
        a, b = int(0.7 * len(order)), int(0.85 * len(order))
        self.index = {"train": order[:a], "val": order[a:b], "test": order[b:]}

    @property
    def spec(self) -> TaskSpec:
        """Grey images in, 10-class logits out."""
        return TaskSpec(input="image", output="class", img_size=(self.img_size, self.img_size), in_chans=1,
                        num_classes=10)

    def batch(self, split: str, index: int, batch_size: int) -> Batch:
        """Batch ``index`` of ``split`` (see class doc)."""
        self._check_batch_args(split, index, batch_size)
        pool = self.index[split]
        if split == "train":
            rng = np.random.default_rng(split_seed(self.seed, split, index))
            pick = pool[rng.integers(0, len(pool), size=batch_size)]
        else:
            pick = pool[(index * batch_size + np.arange(batch_size)) % len(pool)]
        pick = torch.from_numpy(pick)
        return Batch(self.images[pick], self.labels[pick])

    def loss(self, outputs: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict]:
        """Cross-entropy; metric ``accuracy``."""
        return class_ce(outputs, batch.targets, 10)
