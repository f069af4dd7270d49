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
inconclusive. The rule reads means over three seeds (each seed draws the training data, the test
videos and the initialisation). History: the first full run used one seed (same rule): AUROC
bi-directional 0.897, forward only 0.886, copying the last frame 0.732 -> inconclusive, in 156 s of
CPU; the budget was then raised to three seeds (still within 10 minutes of one core), the rule
unchanged.

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
    seeds: tuple[int, ...] = (0,)


_TRAIN = dict(lr=2e-3, warmup_steps=20, weight_decay=0.01)
QUICK = Budget(steps=2, batch_size=2, eval_batches=1, test_videos=2, **_TRAIN)
FULL = Budget(steps=250, batch_size=8, eval_batches=4, test_videos=16, seeds=(0, 1, 2), **_TRAIN)

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


def _train_seed(ctx, b, seed: int) -> tuple[dict, dict, object]:
    """One seed: the task (data, test videos) at that seed, both arms trained; (AUROC, AUROC per kind, ArmResults)."""
    from attnlab import tasks

    task = tasks.create("moving_shapes_prediction", seed=seed, **TASK)
    res = train_arms(task, arms(), train_config(b, seed=seed, evals=5), seed=seed, progress=ctx.progress)
    videos = [task.test_video(i) for i in range(b.test_videos)]
    auc, per_kind = {}, {}
    for label, model in res.models.items():
        model.eval()
        auc[label], per_kind[label] = anomaly_auroc(task, model, videos)
    copy = "copy last past frame"
    auc[copy], per_kind[copy] = anomaly_auroc(task, copy_last_past_frame(task), videos)
    return auc, per_kind, res


def run(ctx) -> ReproOutcome:
    """Train both predictors on normal clips per seed; score the anomalous test videos; frame AUROC of each."""
    b = ctx.budget
    runs = [_train_seed(ctx, b, ctx.seed + s) for s in b.seeds]
    labels = list(runs[0][0])
    auc = {label: float(np.mean([r[0][label] for r in runs])) for label in labels}
    kinds = list(runs[0][1][BI])
    per_kind = {label: {k: float(np.mean([r[1][label][k] for r in runs])) for k in kinds} for label in labels}
    per_seed = {f"frame AUROC {label}": [r[0][label] for r in runs] for label in labels}
    measured = {AUC_BI: auc[BI], AUC_FWD: auc[FWD], "frame AUROC copy last past frame": auc["copy last past frame"],
                "frame AUROC per seed bi-directional": per_seed[AUC_BI],
                "frame AUROC per seed forward only": per_seed[AUC_FWD], "seeds": len(runs)}
    for label, by_kind in per_kind.items():
        measured.update({f"AUROC {label}, {k}": v for k, v in by_kind.items()})
    first = runs[0][2]
    for label in ARMS:
        measured[f"val SSIM {label}"] = float(np.mean([r[2].results[label].final_eval["ssim"] for r in runs]))
        measured[f"val PSNR {label}"] = float(np.mean([r[2].results[label].final_eval["psnr"] for r in runs]))
        measured[f"parameters {label}"] = first.params[label]
    plot_curves(ctx, first.curves, "video_anomaly_ssim.png", ylabel="val SSIM of predicted middle frames",
                title="middle-frame prediction on normal clips (first seed)",
                final={k: v.final_eval["ssim"] for k, v in first.results.items()}, digits=3)
    panels = {"frame AUROC, all events": auc}
    panels.update({f"AUROC, {k}": {label: per_kind[label][k] for label in per_kind} for k in kinds})
    plot_bar_panels(ctx, panels, "video_anomaly_auroc.png", ylabel="frame AUROC", hline=AUROC_MIN,
                    hline_label="0.9", rotation=30, panel_width=3.2)
    summary = (f"Middle-frame prediction on the generated moving-shapes video (32 px, {b.steps} steps x "
               f"{b.batch_size} normal clips, means over {len(runs)} seed(s)), scored on {b.test_videos} test videos "
               f"of {TASK['test_frames']} frames with one 3-frame event each: frame AUROC bi-directional "
               f"{auc[BI]:.3f} (per seed {', '.join(f'{v:.3f}' for v in per_seed[AUC_BI])}), forward only "
               f"{auc[FWD]:.3f} ({', '.join(f'{v:.3f}' for v in per_seed[AUC_FWD])}); copying the last past frame "
               f"{auc['copy last past frame']:.3f}; per kind (bi / forward): "
               + ", ".join(f"{k} {per_kind[BI][k]:.2f} / {per_kind[FWD][k]:.2f}" for k in kinds) +
               f". Rule: part 1 bi-directional AUROC > {AUROC_MIN}, part 2 bi-directional >= forward only (seed "
               "means); both -> holds, neither -> does not hold, one -> inconclusive.")
    return ReproOutcome(measured, summary, {AUC_BI: per_seed[AUC_BI], AUC_FWD: per_seed[AUC_FWD]})
