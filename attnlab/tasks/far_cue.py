"""A generated dense image task that needs long-range context: label every patch by one far cue."""
from __future__ import annotations

import numpy as np
import torch

from attnlab.utils.checks import check_positive_int, fail
from attnlab.tasks.base import Batch, Task, TaskSpec, split_seed
from attnlab.tasks.registry import register
from attnlab.tasks.scoring import token_ce

__all__ = ["FarCue", "CUE_COLORS"]

CUE_COLORS = ((1.0, 0.1, 0.1), (0.1, 0.9, 0.1), (0.1, 0.2, 1.0), (0.9, 0.9, 0.1), (0.9, 0.1, 0.9), (0.1, 0.9, 0.9))


@register("far_cue")
class FarCue(Task):
    """Dense labels from one far cue: every patch is labelled with the colour class of a single cue glyph.

    Each RGB image (``img_size`` px) holds one coloured square cue (``cue`` px, one of
    ``num_classes`` colours) at a random place and ``num_distractors`` grey glyphs. The
    target of every ``patch`` x ``patch`` cell of the image is the cue's class, so a cell
    can be labelled only if its token's receptive field reaches the cue: the score is
    the fraction of the image a model's tokens can see, a direct probe of how far local
    attention carries context (built for the DiNAT reproduction, P26; the paper's gains
    are on dense tasks). Pixels get N(0, ``noise``^2).

    Shapes: inputs (B, 3, img_size, img_size) float; targets (B, G*G) long with
    G = img_size / patch (raster order); model outputs (B, G*G, num_classes) logits per
    cell (``spec.output == "lm"``); metric ``accuracy`` over cells. Extras: ``cue_cell``
    (B, 2) long, the cell holding the cue's centre.
    """

    metric = "accuracy"
    higher_is_better = True

    def __init__(self, img_size: int = 64, patch: int = 4, cue: int = 6, num_classes: int = 4,
                 num_distractors: int = 6, noise: float = 0.05, seed: int = 0):
        super().__init__(seed)
        self.img_size = check_positive_int("img_size", img_size)
        self.patch = check_positive_int("patch", patch)
        self.cue = check_positive_int("cue", cue)
        if img_size % patch:
            fail("patch", f"a divisor of img_size={img_size}", patch)
        if cue > img_size:
            fail("cue", f"at most img_size={img_size}", cue)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or not 2 <= num_classes <= len(CUE_COLORS):
            fail("num_classes", f"an int in [2, {len(CUE_COLORS)}]", repr(num_classes))
        if isinstance(num_distractors, bool) or not isinstance(num_distractors, int) or num_distractors < 0:
            fail("num_distractors", "an int >= 0", repr(num_distractors))
        if not float(noise) >= 0:
            fail("noise", "a number >= 0", noise)
        self.num_classes, self.num_distractors, self.noise = num_classes, num_distractors, float(noise)
        self.grid = img_size // patch

    @property
    def spec(self) -> TaskSpec:
        """RGB images in, per-cell class logits (B, G*G, num_classes) out."""
        return TaskSpec(input="image", output="lm", seq_len=self.grid**2, img_size=(self.img_size, self.img_size),
                        in_chans=3, num_classes=self.num_classes)

    def batch(self, split: str, index: int, batch_size: int) -> Batch:
        """Batch ``index`` of ``split``, deterministic in (seed, split, index)."""
        self._check_batch_args(split, index, batch_size)
        rng = np.random.default_rng(split_seed(self.seed, split, index))
        n, c = self.img_size, self.cue
        x = np.zeros((batch_size, 3, n, n), np.float32)
        labels = rng.integers(0, self.num_classes, size=batch_size)
        cells = np.zeros((batch_size, 2), np.int64)
        for i in range(batch_size):
            for _ in range(self.num_distractors):  # grey glyphs: random half-on patterns
                y0, x0 = (int(v) for v in rng.integers(0, n - c + 1, size=2))
                x[i, :, y0 : y0 + c, x0 : x0 + c] = 0.6 * (rng.random((c, c)) < 0.5)
            y0, x0 = (int(v) for v in rng.integers(0, n - c + 1, size=2))
            x[i, :, y0 : y0 + c, x0 : x0 + c] = np.asarray(CUE_COLORS[labels[i]], np.float32)[:, None, None]
            cells[i] = ((y0 + c // 2) // self.patch, (x0 + c // 2) // self.patch)
        if self.noise:
            x = x + self.noise * rng.standard_normal(x.shape).astype(np.float32)
        targets = torch.from_numpy(np.repeat(labels[:, None], self.grid**2, axis=1).astype(np.int64))
        return Batch(torch.from_numpy(x), targets, {"cue_cell": torch.from_numpy(cells)})

    def loss(self, outputs: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict]:
        """Cross-entropy over cells; metric ``accuracy`` (fraction of cells labelled right)."""
        return token_ce(outputs, batch.targets, self.num_classes)

    def tokens_per_example(self) -> int:
        """Cells (= tokens of a ViT with patch ``patch``) per image."""
        return self.grid**2
