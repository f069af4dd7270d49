"""Zero-shot video object segmentation on the generated moving-shapes video: a frame and its exact flow -> the mask."""
from __future__ import annotations

import numpy as np
import torch

from attnlab.utils.checks import check_choice, fail
from attnlab.tasks.base import Batch, Task, TaskSpec, split_seed
from attnlab.tasks.moving_shapes import MovingShapesConfig, render_video
from attnlab.tasks.registry import register
from attnlab.tasks.scoring import token_ce
from attnlab.tasks.video_metrics import boundary_f, jaccard

__all__ = ["MovingShapesZVOS", "FLOW_INPUTS"]

FLOW_INPUTS = ("exact", "none")


@register("moving_shapes_zvos")
class MovingShapesZVOS(Task):
    """Segment the moving objects of a frame from its appearance and its optical flow (ZVOS, built for P30).

    Each example is frame t of a fresh generated video (:mod:`attnlab.tasks.moving_shapes`, ``"bounce"``
    motion, a camera panning by up to ``pan_speed`` px per frame and axis) with its flow from t to t+1.
    Foreground = every independently moving object; the background holds ``num_distractors`` shapes
    of the same shapes and colours that move only with the camera, so appearance alone cannot find
    the foreground, and the flow must be read against the camera's motion (a global quantity). The
    flow given to the model is estimated-like: the exact flow box-blurred over ``2 * flow_blur + 1`` px
    (object edges smear) plus Gaussian noise of ``flow_noise`` px, so the frame is needed for clean
    boundaries. ``flow="none"`` gives zeros instead (the appearance-only ablation).

    Shapes: inputs (B, 5, H, W) float: channels 0-2 the RGB frame in [0, 1], channels 3-4 the flow
    (dx, dy) divided by ``max_speed + pan_speed``; targets (B, H*W) long, 1 on foreground pixels (raster
    order); model outputs (B, H*W, 2) logits per pixel (``spec.output == "lm"``). Metrics: ``J`` (mean
    region IoU over frames, DAVIS's J), ``F`` (mean boundary F-measure), pixel ``accuracy``, ``loss``.
    Extras: ``flow`` (B, 2, H, W), the exact flow in px.
    """

    metric = "J"
    higher_is_better = True

    def __init__(self, img_size: int = 32, num_objects: int = 2, object_size: tuple[int, int] = (5, 9),
                 max_speed: int = 2, num_distractors: int = 6, pan_speed: int = 1, noise: float = 0.02,
                 flow: str = "exact", flow_noise: float = 0.5, flow_blur: int = 1, seed: int = 0):
        super().__init__(seed)
        self.cfg = MovingShapesConfig(img_size=img_size, num_objects=num_objects, object_size=tuple(object_size),
                                      speed=(0, max_speed), motion="bounce", num_distractors=num_distractors,
                                      pan_speed=pan_speed, noise=noise)
        self.flow = check_choice("flow", flow, FLOW_INPUTS)
        if isinstance(flow_noise, bool) or not isinstance(flow_noise, (int, float)) or not flow_noise >= 0:
            fail("flow_noise", "a number >= 0 (px)", repr(flow_noise))
        if isinstance(flow_blur, bool) or not isinstance(flow_blur, int) or not 0 <= flow_blur <= 3:
            fail("flow_blur", "an int in [0, 3] (box radius in px)", repr(flow_blur))
        self.flow_noise, self.flow_blur = float(flow_noise), flow_blur
        self.flow_scale = float(max_speed + pan_speed)

    @property
    def spec(self) -> TaskSpec:
        """RGB + flow (5 channels) in, per-pixel 2-class logits (B, H*W, 2) out."""
        n = self.cfg.img_size
        return TaskSpec(input="image", output="lm", seq_len=n * n, img_size=(n, n), in_chans=5, num_classes=2)

    def observed_flow(self, flow: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The flow the model sees, from the exact (B, 2, H, W) flow: box blur (edge-replicated), then noise, in px."""
        r = self.flow_blur
        if r:
            pad = np.pad(flow, ((0, 0), (0, 0), (r, r), (r, r)), mode="edge")
            n = flow.shape[-1]
            flow = sum(pad[:, :, i: i + n, j: j + n] for i in range(2 * r + 1) for j in range(2 * r + 1))
            flow = flow / (2 * r + 1) ** 2
        if self.flow_noise:
            flow = flow + self.flow_noise * rng.standard_normal(flow.shape)
        return flow.astype(np.float32)

    def batch(self, split: str, index: int, batch_size: int) -> Batch:
        """Batch ``index`` of ``split``, deterministic in (seed, split, index)."""
        self._check_batch_args(split, index, batch_size)
        rng = np.random.default_rng(split_seed(self.seed, split, index))
        videos = [render_video(rng, self.cfg, 2) for _ in range(batch_size)]
        frames = np.stack([v.frames[0] for v in videos])
        flow = np.stack([v.flow[0] for v in videos])
        masks = np.stack([v.masks[0] for v in videos])
        seen = self.observed_flow(flow, rng) / self.flow_scale if self.flow == "exact" else np.zeros_like(flow)
        inputs = torch.from_numpy(np.concatenate([frames, seen], axis=1))
        targets = torch.from_numpy(masks.reshape(batch_size, -1).astype(np.int64))
        return Batch(inputs, targets, {"flow": torch.from_numpy(flow)})

    def loss(self, outputs: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict]:
        """Pixel cross-entropy; metrics ``J``, ``F``, ``accuracy``, ``loss``."""
        loss, metrics = token_ce(outputs, batch.targets, 2)
        n = self.cfg.img_size
        with torch.no_grad():
            pred = (outputs.argmax(-1) == 1).reshape(-1, n, n)
            gt = batch.targets.bool().reshape(-1, n, n)
            metrics["J"] = jaccard(pred, gt).mean().item()
            metrics["F"] = boundary_f(pred, gt).mean().item()
        metrics.pop("bpc", None)
        return loss, metrics

    def tokens_per_example(self) -> int:
        """Pixels per frame."""
        return self.cfg.img_size**2
