"""Middle-frame prediction on the generated moving-shapes video (P21's proxy task), with an anomaly test split."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from attnlab.utils.checks import check_positive_int, fail
from attnlab.tasks.base import Batch, Task, TaskSpec, split_seed
from attnlab.tasks.moving_shapes import ANOMALY_KINDS, Anomaly, MovingShapesConfig, Video, render_video
from attnlab.tasks.registry import register
from attnlab.tasks.scoring import check_outputs
from attnlab.tasks.video_metrics import psnr, ssim, ssim_l1_loss

__all__ = ["MovingShapesPrediction", "VideoScores"]


@dataclass
class VideoScores:
    """Per-frame errors of one long video: ``frames`` (indices of the scored frames), ``errors`` and ``labels``
    (True = abnormal), one entry per scored frame."""

    frames: np.ndarray
    errors: np.ndarray
    labels: np.ndarray


@register("moving_shapes_prediction")
class MovingShapesPrediction(Task):
    """Predict the middle frames of a clip from the frames around them (P21's proxy task); anomalies in ``test``.

    A clip is ``context`` past frames, ``targets`` middle frames and ``context`` future frames, every
    ``skip``-th frame of a generated video in ``"traffic"`` motion (objects of the normal shapes
    ``square`` and ``disc`` drive rightwards over a cluttered background). The model receives the whole
    clip, middle frames included, because P21's decoders are teacher-forced: the prediction of middle
    frame i may use the frames before it (forward) and after it (backward), **never frame i itself**
    (a model that copies its input scores perfectly and means nothing).

    Splits: ``train`` and ``val`` clips are normal. ``test`` clips hold an abnormal event with probability
    ``anomaly_rate`` (``extras["labels"]``, (B, T) bool per frame). For anomaly detection on whole videos,
    :meth:`test_video` renders long test videos (``test_frames`` frames, one event of ``event_len``
    frames, kinds cycling through ``teleport``, ``speedup``, ``wrong_direction``, ``new_shape``) and
    :meth:`score_video` gives per-frame errors of any predictor on one.

    Shapes: inputs (B, T, 3, H, W) in [0, 1], T = 2 * context + targets; targets (B, targets, 3, H, W);
    model outputs the same shape as targets, in [0, 1]. Loss: P21's ``0.5 (1 - SSIM) + 0.5 Gaussian-L1``;
    metrics ``ssim`` (mean over predicted frames), ``psnr``, ``loss``.
    """

    metric = "ssim"
    higher_is_better = True

    def __init__(self, img_size: int = 32, context: int = 3, targets: int = 3, skip: int = 1, num_objects: int = 2,
                 object_size: tuple[int, int] = (5, 7), speed: tuple[int, int] = (1, 2), num_distractors: int = 3,
                 pan_speed: int = 0, noise: float = 0.01, anomaly_rate: float = 0.5, test_frames: int = 40,
                 event_len: int = 3, speedup: int = 3, seed: int = 0):
        super().__init__(seed)
        self.cfg = MovingShapesConfig(img_size=img_size, num_objects=num_objects, object_size=tuple(object_size),
                                      speed=tuple(speed), motion="traffic", shapes=("square", "disc"),
                                      num_distractors=num_distractors, pan_speed=pan_speed, noise=noise)
        self.context = check_positive_int("context", context)
        self.targets = check_positive_int("targets", targets)
        self.skip = check_positive_int("skip", skip)
        if not (isinstance(anomaly_rate, (int, float)) and 0 <= anomaly_rate <= 1):
            fail("anomaly_rate", "a number in [0, 1]", repr(anomaly_rate))
        self.anomaly_rate = float(anomaly_rate)
        self.event_len = check_positive_int("event_len", event_len)
        if isinstance(speedup, bool) or not isinstance(speedup, int) or speedup < 2:
            fail("speedup", "an int >= 2", repr(speedup))
        self.speedup = speedup
        self.clip_len = 2 * context + targets
        self.span = (self.clip_len - 1) * skip + 1  # video frames one clip covers
        lo = context * skip + 2 * event_len + self.span
        if isinstance(test_frames, bool) or not isinstance(test_frames, int) or test_frames < lo:
            fail("test_frames", f"an int >= {lo} (room for an event between the context frames)", repr(test_frames))
        self.test_frames = test_frames

    @property
    def spec(self) -> TaskSpec:
        """A clip (B, T, 3, H, W) in, its middle frames (B, targets, 3, H, W) out."""
        n = self.cfg.img_size
        return TaskSpec(input="video", output="frames", img_size=(n, n), in_chans=3, num_frames=self.clip_len)

    def _clip(self, rng: np.random.Generator, abnormal: bool) -> Video:
        anomaly = None
        if abnormal:  # an event (in rendered frames) that overlaps the clip's middle frames
            first, length = self.context * self.skip, self.event_len * self.skip
            lo, hi = max(first - length + 1, 1), min(first + self.targets * self.skip - 1, self.span - length)
            kind = ANOMALY_KINDS[int(rng.integers(len(ANOMALY_KINDS)))]
            anomaly = Anomaly(kind, int(rng.integers(lo, max(hi, lo) + 1)), length, self.speedup)
        return self._render(rng, self.span, anomaly)

    def _render(self, rng: np.random.Generator, total: int, anomaly: Anomaly | None) -> Video:
        """Render ``total`` frames and keep every ``skip``-th."""
        video = render_video(rng, self.cfg, total, anomaly)
        keep = slice(None, None, self.skip)
        return Video(video.frames[keep], video.clean[keep], video.ids[keep], video.flow, video.labels[keep],
                     video.positions, anomaly, video.pan)

    def batch(self, split: str, index: int, batch_size: int) -> Batch:
        """Batch ``index`` of ``split``, deterministic in (seed, split, index); ``test`` clips may be abnormal."""
        self._check_batch_args(split, index, batch_size)
        rng = np.random.default_rng(split_seed(self.seed, split, index))
        clips = [self._clip(rng, split == "test" and rng.random() < self.anomaly_rate) for _ in range(batch_size)]
        x = torch.from_numpy(np.stack([c.frames for c in clips]))
        mid = slice(self.context, self.context + self.targets)
        labels = torch.from_numpy(np.stack([c.labels for c in clips]))
        masks = torch.from_numpy(np.stack([c.masks for c in clips]))
        return Batch(x, x[:, mid].clone(), {"labels": labels, "masks": masks})

    def loss(self, outputs: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict]:
        """P21's SSIM + Gaussian-L1 loss; metrics ``ssim``, ``psnr``, ``loss``."""
        check_outputs(outputs, tuple(batch.targets.shape), "predicted middle frames of shape (B, targets, 3, H, W)")
        loss = ssim_l1_loss(outputs, batch.targets)
        with torch.no_grad():
            metrics = {"loss": loss.item(), "ssim": ssim(outputs, batch.targets).mean().item(),
                       "psnr": psnr(outputs.clamp(0, 1), batch.targets).mean().item()}
        return loss, metrics

    def tokens_per_example(self) -> int:
        """Frames per clip."""
        return self.clip_len

    # ---- whole test videos ------------------------------------------------

    def test_video(self, index: int) -> Video:
        """Long test video ``index`` (``test_frames`` frames, every ``skip``-th of the rendered ones) with one
        abnormal event of kind ``ANOMALY_KINDS[index % 4]`` placed where it can be scored."""
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            fail("index", "an int >= 0", repr(index))
        rng = np.random.default_rng(split_seed(self.seed, "test", 1_000_000 + index))
        first = self.context + 1
        last = self.test_frames - self.context - self.event_len - 1
        start = int(rng.integers(first, last + 1))
        kind = ANOMALY_KINDS[index % len(ANOMALY_KINDS)]
        total = (self.test_frames - 1) * self.skip + 1
        anomaly = Anomaly(kind, start * self.skip, self.event_len * self.skip, self.speedup)
        return self._render(rng, total, anomaly)

    def windows(self, num_frames: int) -> np.ndarray:
        """Start frames of the clips that score a ``num_frames``-frame video: consecutive clips whose middle
        frames tile frames ``context .. num_frames - context - 1`` (a last clip is shifted back to fit)."""
        check_positive_int("num_frames", num_frames)
        if num_frames < self.clip_len:
            fail("num_frames", f"at least one clip ({self.clip_len} frames)", num_frames)
        starts = list(range(0, num_frames - self.clip_len + 1, self.targets))
        if starts[-1] != num_frames - self.clip_len:
            starts.append(num_frames - self.clip_len)
        return np.asarray(starts)

    def score_video(self, predict: Callable[[torch.Tensor], torch.Tensor], video: Video,
                    batch_size: int = 16) -> VideoScores:
        """Per-frame errors of ``predict`` (clips (W, T, 3, H, W) -> middle frames) on ``video``.

        Error of a frame = P21's loss between its prediction and the frame (``ssim_l1_loss(..., reduction="none")``);
        frames predicted by two overlapping clips keep the first prediction. The first and last ``context``
        frames have no prediction and are not scored.
        """
        frames = torch.from_numpy(video.frames)
        starts = self.windows(frames.shape[0])
        clips = torch.stack([frames[s: s + self.clip_len] for s in starts])
        preds = torch.cat([predict(clips[i: i + batch_size]) for i in range(0, len(clips), batch_size)])
        errors: dict[int, float] = {}
        per = ssim_l1_loss(preds, clips[:, self.context: self.context + self.targets], reduction="none")
        for s, row in zip(starts, per.tolist()):
            for j, e in enumerate(row):
                errors.setdefault(int(s) + self.context + j, e)
        idx = np.asarray(sorted(errors))
        return VideoScores(idx, np.asarray([errors[i] for i in idx]), video.labels[idx])
