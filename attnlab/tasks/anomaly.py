"""A generated image anomaly-detection task: regular textures as the normal class, defects with per-pixel masks."""
from __future__ import annotations

import numpy as np
import torch

from attnlab.tasks.base import Batch, Task, TaskSpec, split_seed
from attnlab.tasks.registry import register
from attnlab.utils.checks import check_positive_int, describe, fail

__all__ = ["Anomaly", "TEXTURES", "DEFECTS", "auroc"]

#: texture families of the normal images
TEXTURES = ("stripes", "checker", "dots", "weave")
#: defect kinds of the anomalous test images
DEFECTS = ("scratch", "blob", "colour_shift", "missing")
#: base colours (foreground, background) of each family; every image jitters them a little
_FAMILY_COLOURS = {
    "stripes": ((0.85, 0.75, 0.55), (0.35, 0.25, 0.15)),
    "checker": ((0.7, 0.7, 0.75), (0.2, 0.2, 0.25)),
    "dots": ((0.9, 0.85, 0.3), (0.25, 0.3, 0.5)),
    "weave": ((0.55, 0.75, 0.6), (0.15, 0.3, 0.2)),
}


def auroc(labels, scores) -> float:
    """Area under the ROC curve (scikit-learn's ``roc_auc_score``); NaN when ``labels`` hold a single class."""
    labels = np.asarray(labels).reshape(-1).astype(bool)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.all() or not labels.any():
        return float("nan")
    from sklearn.metrics import roc_auc_score  # lazy: scikit-learn costs ~0.8 s at `attnlab list`

    return float(roc_auc_score(labels, scores))


@register("anomaly")
class Anomaly(Task):
    """Anomaly detection on generated textures: train on normal images, find the defects of the test images.

    A normal image (``img_size`` px) is one of the ``families`` of :data:`TEXTURES` (oriented stripes, a
    checkerboard, a dot lattice, a weave of two crossing waves) with its family's colours, period and angle,
    each jittered a little per image, and a random phase; pixels get N(0, ``noise``^2). The train split holds
    normal images only. In the val and test splits an image carries a defect with probability
    ``anomaly_ratio``: a ``scratch`` (a thin curved line of a foreign colour), a ``blob`` (an ellipse of noisy
    foreign colour), a ``colour_shift`` (an ellipse whose colour channels are permuted and shifted) or a
    ``missing`` piece (an ellipse where the texture is gone, leaving its flat background colour), of size
    ``defect_size`` (a fraction of the image side), with the mask of its pixels.

    Shapes: inputs (B, 3, S, S) float; targets (B,) long, 1 = anomalous; extras ``"mask"`` (B, S, S) bool (the
    defect's pixels), ``"defect"`` (B,) long (index in :data:`DEFECTS`, -1 for normal) and ``"family"`` (B,)
    long. A detector outputs an anomaly map (B, S, S) (``spec.output == "anomaly_map"``, higher = more
    anomalous); this task only scores (a detector trains with its own objective on the train split):
    ``image_auroc`` (the map's maximum as the image score, the task's metric) and ``pixel_auroc`` by
    scikit-learn; NaN where a batch has a single class.
    """

    metric = "image_auroc"
    higher_is_better = True

    def __init__(self, img_size: int = 64, families: tuple[str, ...] = TEXTURES, defects: tuple[str, ...] = DEFECTS,
                 anomaly_ratio: float = 0.5, defect_size: float = 0.2, noise: float = 0.03, seed: int = 0):
        super().__init__(seed)
        self.img_size = check_positive_int("img_size", img_size)
        if not 16 <= img_size <= 256:
            fail("img_size", "an int in [16, 256]", img_size)
        self.families = self._names("families", families, TEXTURES)
        self.defects = self._names("defects", defects, DEFECTS)
        if not 0.0 < float(anomaly_ratio) <= 1.0:
            fail("anomaly_ratio", "a fraction in (0, 1]", anomaly_ratio)
        if not 0.05 <= float(defect_size) <= 0.5:
            fail("defect_size", "a fraction of the image side in [0.05, 0.5]", defect_size)
        if not float(noise) >= 0:
            fail("noise", "a number >= 0", noise)
        self.anomaly_ratio, self.defect_size, self.noise = float(anomaly_ratio), float(defect_size), float(noise)

    @staticmethod
    def _names(arg: str, names: object, allowed: tuple[str, ...]) -> tuple[str, ...]:
        if isinstance(names, str) or not isinstance(names, (tuple, list)) or not names:
            fail(arg, f"a non-empty tuple of names from {list(allowed)}", describe(names), TypeError)
        bad = [n for n in names if n not in allowed]
        if bad or len(set(names)) != len(names):
            fail(arg, f"distinct names from {list(allowed)}", list(names))
        return tuple(names)

    @property
    def spec(self) -> TaskSpec:
        """RGB images in, (B, S, S) anomaly maps out."""
        return TaskSpec(input="image", output="anomaly_map", img_size=(self.img_size, self.img_size), in_chans=3)

    def texture(self, rng: np.random.Generator, family: str) -> tuple[np.ndarray, np.ndarray]:
        """A normal image of ``family``: the (3, S, S) texture (before pixel noise) and its (3,) flat background colour."""
        s = self.img_size
        fg, bg = (np.asarray(c, np.float32) + rng.uniform(-0.05, 0.05, 3).astype(np.float32)
                  for c in _FAMILY_COLOURS[family])
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
        period = s / 8 * rng.uniform(0.9, 1.1)
        angle = {"stripes": np.pi / 4, "checker": 0.0, "dots": 0.0, "weave": np.pi / 6}[family]
        angle += rng.uniform(-0.08, 0.08)
        u = (np.cos(angle) * xx + np.sin(angle) * yy) / period * 2 * np.pi + rng.uniform(0, 2 * np.pi)
        v = (-np.sin(angle) * xx + np.cos(angle) * yy) / period * 2 * np.pi + rng.uniform(0, 2 * np.pi)
        if family == "stripes":
            w = 0.5 + 0.5 * np.sin(u)
        elif family == "checker":
            w = (np.sign(np.sin(u)) * np.sign(np.sin(v)) > 0).astype(np.float32)
        elif family == "dots":
            w = ((np.cos(u) + 1) * (np.cos(v) + 1) / 4 > 0.55).astype(np.float32)
        else:
            w = 0.5 + 0.25 * (np.sin(u) + np.sin(2 * v + np.sin(u)))
        w = w.astype(np.float32)
        return bg[:, None, None] + (fg - bg)[:, None, None] * w[None], bg

    def _ellipse(self, rng: np.random.Generator) -> np.ndarray:
        s = self.img_size
        r = self.defect_size * s / 2
        ry, rx = r * rng.uniform(0.6, 1.2, size=2)
        cy, cx = rng.uniform(r, s - r, size=2)
        theta = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
        dy, dx = yy - cy, xx - cx
        a = (np.cos(theta) * dx + np.sin(theta) * dy) / rx
        b = (-np.sin(theta) * dx + np.cos(theta) * dy) / ry
        return a**2 + b**2 <= 1.0

    def _scratch(self, rng: np.random.Generator) -> np.ndarray:
        s = self.img_size
        length = self.defect_size * s * 2
        y0, x0 = rng.uniform(length / 2, s - length / 2, size=2)
        ang, bend = rng.uniform(0, np.pi), rng.uniform(-1.0, 1.0)
        t = np.linspace(-0.5, 0.5, 4 * s)
        ys = y0 + length * t * np.sin(ang + bend * t)
        xs = x0 + length * t * np.cos(ang + bend * t)
        mask = np.zeros((s, s), bool)
        for oy, ox in ((0, 0), (0, 1), (1, 0)):  # about 2 px wide
            mask[np.clip(np.rint(ys).astype(int) + oy, 0, s - 1), np.clip(np.rint(xs).astype(int) + ox, 0, s - 1)] = True
        return mask

    def add_defect(self, rng: np.random.Generator, img: np.ndarray, bg: np.ndarray, kind: str) -> np.ndarray:
        """Draw a defect of ``kind`` into ``img`` (3, S, S) in place (``bg``: its flat background colour); its (S, S) mask."""
        foreign = rng.uniform(0, 1, 3).astype(np.float32)
        if kind == "scratch":
            mask = self._scratch(rng)
            img[:, mask] = foreign[:, None]
            return mask
        mask = self._ellipse(rng)
        if kind == "blob":
            img[:, mask] = foreign[:, None] + 0.15 * rng.standard_normal((3, int(mask.sum()))).astype(np.float32)
        elif kind == "colour_shift":
            img[:, mask] = img[rng.permutation(3)][:, mask] * 0.8 + 0.2
        else:
            img[:, mask] = bg[:, None]
        return mask

    def batch(self, split: str, index: int, batch_size: int) -> Batch:
        """Batch ``index`` of ``split``, deterministic in (seed, split, index); the train split is all normal."""
        self._check_batch_args(split, index, batch_size)
        rng = np.random.default_rng(split_seed(self.seed, split, index))
        s = self.img_size
        x = np.zeros((batch_size, 3, s, s), np.float32)
        masks = np.zeros((batch_size, s, s), bool)
        defect = np.full(batch_size, -1, np.int64)
        family = rng.integers(len(self.families), size=batch_size)
        for i in range(batch_size):
            img, bg = self.texture(rng, self.families[family[i]])
            if split != "train" and rng.random() < self.anomaly_ratio:
                kind = self.defects[int(rng.integers(len(self.defects)))]
                masks[i] = self.add_defect(rng, img, bg, kind)
                defect[i] = DEFECTS.index(kind)
            x[i] = img
        if self.noise:
            x = x + self.noise * rng.standard_normal(x.shape).astype(np.float32)
        return Batch(torch.from_numpy(np.clip(x, 0.0, 1.0)), torch.from_numpy((defect >= 0).astype(np.int64)),
                     {"mask": torch.from_numpy(masks), "defect": torch.from_numpy(defect),
                      "family": torch.from_numpy(family.astype(np.int64))})

    def scores(self, maps: torch.Tensor, batch: Batch) -> dict[str, float]:
        """``image_auroc`` (image score = the map's maximum) and ``pixel_auroc`` of (B, S, S) anomaly maps."""
        b, s = batch.size, self.img_size
        if not isinstance(maps, torch.Tensor) or not maps.is_floating_point() or tuple(maps.shape) != (b, s, s):
            fail("outputs", f"float anomaly maps of shape (B, S, S) = ({b}, {s}, {s})", describe(maps), TypeError
                 if not isinstance(maps, torch.Tensor) else ValueError)
        m = maps.detach().float().cpu().numpy()
        return {"image_auroc": auroc(batch.targets.numpy(), m.reshape(b, -1).max(1)),
                "pixel_auroc": auroc(batch.extras["mask"].numpy(), m)}

    def loss(self, outputs: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict]:
        """Scoring only: ``1 - pixel_auroc`` as a (non-differentiable) loss, and the two AUROCs as metrics."""
        metrics = self.scores(outputs, batch)
        return torch.tensor(1.0 - metrics["pixel_auroc"]), {"loss": 1.0 - metrics["pixel_auroc"], **metrics}

    def tokens_per_example(self) -> int:
        """Pixels per image."""
        return self.img_size**2
