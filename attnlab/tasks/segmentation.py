"""A generated panoptic segmentation task: shapes on cluttered backgrounds, one class per shape kind, one instance
per shape, shapes occluding each other."""
from __future__ import annotations

import numpy as np
import torch

from attnlab.tasks.base import Batch, Task, TaskSpec, split_seed
from attnlab.tasks.panoptic import check_mask_outputs, mask_set_loss, panoptic_inference
from attnlab.tasks.registry import register
from attnlab.tasks.segmentation_metrics import ConfusionMatrix, PanopticStats
from attnlab.tasks.shapes import shape_mask
from attnlab.utils.checks import check_positive_int, fail

__all__ = ["Segmentation", "SEGMENT_KINDS", "BACKGROUND"]

#: the shape kinds in class order (class k + 1 is SEGMENT_KINDS[k]); a task uses the first ``num_kinds``
SEGMENT_KINDS = ("square", "triangle", "ring", "cross", "disc")
#: the class id of the background ("stuff": one segment per image)
BACKGROUND = 0
_PALETTE = np.array([(1.0, 0.2, 0.2), (0.2, 0.9, 0.2), (0.25, 0.4, 1.0), (1.0, 0.9, 0.2), (0.9, 0.3, 0.9),
                     (0.2, 0.9, 0.9), (1.0, 0.6, 0.2), (0.95, 0.95, 0.95)], np.float32)


def _nonneg_int(arg: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        fail(arg, "an int >= 0", repr(v))
    return v


@register("segmentation")
class Segmentation(Task):
    """Panoptic segmentation of generated shapes: label every pixel with its shape's kind and instance.

    Each RGB image (``img_size`` px, 32 to 64) holds ``min_objects`` to ``max_objects`` shapes (of
    ``num_kinds`` kinds from :data:`SEGMENT_KINDS`: class = kind + 1, class 0 = background) of random size in
    [``min_size``, ``max_size``] px and random colour (the colour says nothing of the class; no two shapes of
    an image share one), placed at random: later shapes occlude earlier ones, and a shape left with less than
    ``min_visible`` of its area visible is dropped. The background is a random dark gradient with ``clutter`` thin random lines of random colours
    (background, not objects) under the shapes; pixels get N(0, ``noise``^2). Deterministic in (seed, split,
    index).

    Shapes: inputs (B, 3, S, S) float; targets (B, S*S) long semantic classes (raster order); extras
    ``"instances"`` (B, S*S) long, 0 for the background and 1, 2, ... for the shapes of an image. Outputs are a
    mask transformer's set prediction (``spec.output == "masks"``, :mod:`attnlab.tasks.panoptic`); the loss is
    the matched set loss over every layer; metrics of the last layer's panoptic inference: ``pq`` (the
    task's metric), ``sq``, ``rq``, ``miou`` (mean IoU of the semantic labels, background included) and
    ``pixel_accuracy``, each over the batch's images pooled.
    """

    metric = "pq"
    higher_is_better = True

    def __init__(self, img_size: int = 32, num_kinds: int = 3, min_objects: int = 1, max_objects: int = 3,
                 min_size: int = 7, max_size: int = 13, min_visible: float = 0.4, clutter: int = 3,
                 noise: float = 0.03, seed: int = 0):
        super().__init__(seed)
        self.img_size = check_positive_int("img_size", img_size)
        if not 16 <= img_size <= 128:
            fail("img_size", "an int in [16, 128] (the issue's 32-64 px, and room around it)", img_size)
        if isinstance(num_kinds, bool) or not isinstance(num_kinds, int) or not 1 <= num_kinds <= len(SEGMENT_KINDS):
            fail("num_kinds", f"an int in [1, {len(SEGMENT_KINDS)}]", repr(num_kinds))
        self.min_objects, self.max_objects = _nonneg_int("min_objects", min_objects), _nonneg_int("max_objects",
                                                                                                  max_objects)
        if not max(1, min_objects) <= max_objects <= len(_PALETTE):
            fail("max_objects", f"an int in [max(1, min_objects={min_objects}), {len(_PALETTE)}]", max_objects)
        self.min_size, self.max_size = check_positive_int("min_size", min_size), check_positive_int("max_size",
                                                                                                    max_size)
        if not 3 <= min_size <= max_size <= img_size:
            fail("min_size, max_size", f"3 <= min_size <= max_size <= img_size={img_size}", (min_size, max_size))
        if not 0.0 <= float(min_visible) <= 1.0:
            fail("min_visible", "a fraction in [0, 1]", min_visible)
        if not float(noise) >= 0:
            fail("noise", "a number >= 0", noise)
        self.num_kinds, self.min_visible, self.noise = num_kinds, float(min_visible), float(noise)
        self.clutter = _nonneg_int("clutter", clutter)
        self.num_classes = num_kinds + 1
        self._masks = {(k, s): shape_mask(SEGMENT_KINDS[k], s) for k in range(num_kinds)
                       for s in range(min_size, max_size + 1)}

    @property
    def spec(self) -> TaskSpec:
        """RGB images in; per query mask logits over the S*S pixels and ``num_kinds + 2`` class logits out."""
        n = self.img_size**2
        return TaskSpec(input="image", output="masks", seq_len=n, img_size=(self.img_size, self.img_size),
                        in_chans=3, num_classes=self.num_classes)

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        s = self.img_size
        base = rng.uniform(0.0, 0.3, size=3).astype(np.float32)
        ramp = rng.uniform(-0.15, 0.15, size=(3, 2)).astype(np.float32)
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
        img = base[:, None, None] + ramp[:, 0, None, None] * yy + ramp[:, 1, None, None] * xx
        for _ in range(self.clutter):  # thin straight strokes of random colour, part of the background
            y0, x0, y1, x1 = rng.uniform(0, s - 1, size=4)
            t = np.linspace(0.0, 1.0, 2 * s)
            ys, xs = np.rint(y0 + t * (y1 - y0)).astype(int), np.rint(x0 + t * (x1 - x0)).astype(int)
            img[:, ys, xs] = _PALETTE[rng.integers(len(_PALETTE))][:, None] * 0.7
        return img

    def _draw_one(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = self.img_size
        img = self._background(rng)
        count = int(rng.integers(self.min_objects, self.max_objects + 1))
        placed = []  # (kind, mask on the image, colour) in drawing order (later on top)
        colours = rng.choice(len(_PALETTE), size=count, replace=False)  # no two shapes of an image share a colour
        for c in colours:
            kind, size = int(rng.integers(self.num_kinds)), int(rng.integers(self.min_size, self.max_size + 1))
            y, x = (int(v) for v in rng.integers(0, s - size + 1, size=2))
            full = np.zeros((s, s), bool)
            full[y:y + size, x:x + size] = self._masks[(kind, size)]
            placed.append((kind, full, _PALETTE[c]))
        covered = np.zeros((s, s), bool)
        kept = []
        for kind, full, colour in reversed(placed):  # top first: drop the shapes hidden too much by later ones
            if np.count_nonzero(full & ~covered) >= self.min_visible * np.count_nonzero(full):
                kept.append((kind, full, colour))
                covered |= full
        sem = np.full((s, s), BACKGROUND, np.int64)
        inst = np.zeros((s, s), np.int64)
        for i, (kind, full, colour) in enumerate(reversed(kept)):
            img[:, full] = colour[:, None]
            sem[full], inst[full] = kind + 1, i + 1
        return img, sem.reshape(-1), inst.reshape(-1)

    def batch(self, split: str, index: int, batch_size: int) -> Batch:
        """Batch ``index`` of ``split``, deterministic in (seed, split, index)."""
        self._check_batch_args(split, index, batch_size)
        rng = np.random.default_rng(split_seed(self.seed, split, index))
        imgs, sems, insts = zip(*(self._draw_one(rng) for _ in range(batch_size)))
        x = np.stack(imgs)
        if self.noise:
            x = x + self.noise * rng.standard_normal(x.shape).astype(np.float32)
        return Batch(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(np.stack(sems)),
                     {"instances": torch.from_numpy(np.stack(insts))})

    def predict(self, outputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Panoptic label maps (B, S*S) classes and instance ids from the last layer of ``outputs``."""
        return panoptic_inference(outputs["mask_logits"], outputs["class_logits"], stuff_classes=(BACKGROUND,))

    def accumulate(self, outputs: dict, batch: Batch, confusion: ConfusionMatrix, stats: PanopticStats) -> None:
        """Add the batch's predictions to a confusion matrix (mIoU) and panoptic statistics (PQ), for metrics over
        many batches."""
        sem, inst = self.predict(outputs)
        confusion.add(sem, batch.targets)
        stats.add(sem, inst, batch.targets, batch.extras["instances"])

    def loss(self, outputs: dict, batch: Batch) -> tuple[torch.Tensor, dict]:
        """The matched set loss (mean over layers) and the last layer's PQ, SQ, RQ, mIoU and pixel accuracy."""
        b, n = batch.targets.shape
        levels = check_mask_outputs(outputs, b, n, self.num_classes)
        loss = mask_set_loss(levels, batch.targets, batch.extras["instances"])
        confusion, stats = ConfusionMatrix(self.num_classes), PanopticStats(self.num_classes)
        self.accumulate(outputs, batch, confusion, stats)
        return loss, {"loss": float(loss.detach()), **stats.summary(), "miou": confusion.mean_iou(),
                      "pixel_accuracy": confusion.pixel_accuracy()}

    def tokens_per_example(self) -> int:
        """Pixels per image."""
        return self.img_size**2
