"""P21's bi-directional hybrid at CPU scale: middle-frame prediction detects anomalies, and predicting in both
directions detects them at least as well as predicting forwards only.

Setting. The generated ``moving_shapes_prediction`` task (32 px frames; objects of two normal shapes
drive rightwards over a cluttered background; clips of 3 past + 3 middle + 3 future frames). Both
arms train on normal clips only, with P21's loss (0.5 (1 - SSIM) + 0.5 Gaussian-L1), the same data,
optimiser (AdamW, LR 2e-3, warm-up, cosine), steps and seed:

* ``bi-directional`` — :class:`attnlab.models.bidirectional_vad.BiDirectionalVAD` (ConvTTrans encoder,
  twin forward / backward decoders, layer-interactive ConvLSTM bridge, merge 0.85 / 0.15);
* ``forward only`` — the same network without the backward pipeline (P21's ablation).

Test: long videos (40 frames) that each hold one abnormal event of 3 frames (teleport, 3x speed-up,
wrong direction, a new shape; the kinds in turn). Every scorable frame is predicted once (sliding
clips), its error is P21's loss between prediction and frame, errors are min-max normalised per
video (P21's anomaly score), and the frame-level AUROC is taken over all frames of all videos.
Reported beside: the AUROC per kind, and that of a predictor that copies the last past frame (how
easy the events are without learning).

Rule (written before the run): part 1, the bi-directional model's frame AUROC is above 0.9; part 2,
it is at least the forward-only model's. Both -> holds; neither -> does not hold; one ->
inconclusive. One seed (the budget).

Deviations: 32 px generated video (P21: UCSD Ped2, CUHK Avenue, ShanghaiTech at 256 px, frames
sampled every 3rd); widths 8/16/32, 4 heads, 2 encoder and 2 + 2 decoder layers (P21: 16/32/64, 8
heads, 5 and 5 + 5); 3x3 ConvLSTM gates (P21: 5x5 at 256 px); per-frame normalisation (P21's code:
BatchNorm over the batch's frames without running statistics); the error is P21's training loss
rather than PSNR.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from attnlab.repro.harness.arms import Arm, TrainBudget, train_arms, train_config
from attnlab.repro.harness.plots import plot_bar_panels, plot_curves
from attnlab.repro.harness.rules import two_parts
from attnlab.repro.harness.runner import ReproOutcome

PAPER = "P21"
CLAIM = ("A bi-directional hybrid of a convolutional temporal transformer and a layer-interactive ConvLSTM bridge, "
         "trained to predict middle frames of normal video, detects abnormal frames by its prediction error "
         "(state-of-the-art frame AUC), and predicting in both directions beats predicting forwards only.")


@dataclass(frozen=True, kw_only=True)
class Budget(TrainBudget):
    """Training sizes and the number of test videos."""

    test_videos: int


_TRAIN = dict(lr=2e-3, warmup_steps=20, weight_decay=0.01)
QUICK = Budget(steps=2, batch_size=2, eval_batches=1, test_videos=2, **_TRAIN)
FULL = Budget(steps=250, batch_size=8, eval_batches=4, test_videos=16, **_TRAIN)

TASK = {"img_size": 32, "context": 3, "targets": 3, "test_frames": 40}
MODEL = {"lstm_kernel": 3}
ARMS = {"bi-directional": "bidirectional_vad_tiny", "forward only": "forward_vad_tiny"}
BI, FWD = ARMS

#: thresholds of the rule
AUROC_MIN = 0.9

AUC_BI = "frame AUROC bi-directional"
AUC_FWD = "frame AUROC forward only"
FIGURES = (AUC_BI, AUC_FWD)


def judge(figures: dict) -> str:
    """The rule of the module docstring, on the figures named in ``FIGURES``."""
    return two_parts(figures[AUC_BI] > AUROC_MIN, figures[AUC_BI] >= figures[AUC_FWD])


def arms() -> list[Arm]:
    """The two predictors, as data (name and builder from the task's spec)."""
    from attnlab import models

    return [Arm(label, lambda spec, name=name: models.create(name, img_size=spec.img_size[0], **MODEL))
            for label, name in ARMS.items()]


def anomaly_auroc(task, predict, videos) -> tuple[float, dict[str, float]]:
    """Frame AUROC of per-video normalised errors of ``predict`` over ``videos``, overall and per event kind."""
    from attnlab.tasks.video_metrics import frame_auroc, normalize_per_video

    scores, labels, kinds = [], [], []
    with torch.no_grad():
        for video in videos:
            s = task.score_video(predict, video)
            scores.append(normalize_per_video(s.errors))
            labels.append(s.labels)
            kinds.append(video.anomaly.kind)
    per_kind = {k: frame_auroc(np.concatenate([s for s, kk in zip(scores, kinds) if kk == k]),
                               np.concatenate([y for y, kk in zip(labels, kinds) if kk == k]))
                for k in dict.fromkeys(kinds)}
    return frame_auroc(np.concatenate(scores), np.concatenate(labels)), per_kind


def copy_last_past_frame(task):
    """The no-learning predictor: every middle frame is the last past frame."""
    c, t = task.context, task.targets
    return lambda clips: clips[:, c - 1: c].expand(-1, t, -1, -1, -1)


def run(ctx) -> ReproOutcome:
    """Train both predictors on normal clips; score the anomalous test videos; frame AUROC of each."""
    from attnlab import tasks

    b = ctx.budget
    task = tasks.create("moving_shapes_prediction", seed=ctx.seed, **TASK)
    res = train_arms(task, arms(), train_config(b, seed=ctx.seed, evals=5), seed=ctx.seed,
                     progress=ctx.progress)
    videos = [task.test_video(i) for i in range(b.test_videos)]
    auc, per_kind = {}, {}
    for label, model in res.models.items():
        model.eval()
        auc[label], per_kind[label] = anomaly_auroc(task, model, videos)
    auc["copy last past frame"], per_kind["copy last past frame"] = anomaly_auroc(task, copy_last_past_frame(task),
                                                                                videos)
    measured = {AUC_BI: auc[BI], AUC_FWD: auc[FWD], "frame AUROC copy last past frame": auc["copy last past frame"]}
    for label, kinds in per_kind.items():
        measured.update({f"AUROC {label}, {k}": v for k, v in kinds.items()})
    for label, r in res.results.items():
        measured[f"val SSIM {label}"] = r.final_eval["ssim"]
        measured[f"val PSNR {label}"] = r.final_eval["psnr"]
        measured[f"parameters {label}"] = res.params[label]
        measured[f"train seconds {label}"] = res.seconds[label]
    plot_curves(ctx, res.curves, "video_anomaly_ssim.png", ylabel="val SSIM of predicted middle frames",
                title="middle-frame prediction on normal clips", final={k: v.final_eval["ssim"]
                                                                         for k, v in res.results.items()}, digits=3)
    panels = {"frame AUROC, all events": auc}
    panels.update({f"AUROC, {k}": {label: per_kind[label][k] for label in per_kind} for k in per_kind[BI]})
    plot_bar_panels(ctx, panels, "video_anomaly_auroc.png", ylabel="frame AUROC", hline=AUROC_MIN,
                    hline_label="0.9", rotation=30, panel_width=3.2)
    summary = (f"Middle-frame prediction on the generated moving-shapes video (32 px, {b.steps} steps x "
               f"{b.batch_size} normal clips, one seed), scored on {b.test_videos} test videos of "
               f"{TASK['test_frames']} frames with one 3-frame event each: frame AUROC bi-directional {auc[BI]:.3f}, "
               f"forward only {auc[FWD]:.3f} (copying the last past frame: {auc['copy last past frame']:.3f}); per "
               f"kind (bi / forward): " + ", ".join(f"{k} {per_kind[BI][k]:.2f} / {per_kind[FWD][k]:.2f}"
                                                    for k in per_kind[BI]) +
               f". Rule: part 1 bi-directional AUROC > {AUROC_MIN}, part 2 bi-directional >= forward only; both -> "
               "holds, neither -> does not hold, one -> inconclusive.")
    return ReproOutcome(measured, summary)
