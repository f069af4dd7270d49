"""Repro video_anomaly (P21): the rule on hand-written intervals (each outcome, every edge); chance; the scoring on an
oracle; the quick run's figures."""
from __future__ import annotations

import pytest

from attnlab import tasks
from attnlab.repro import video_anomaly
from attnlab.repro.harness.protocol import AT_CHANCE
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE

BI, FWD = video_anomaly.BI, video_anomaly.FWD


@pytest.mark.parametrize("auc, gap, at_chance, verdict", [
    ((0.91, 0.97), (0.001, 0.05), [], HOLDS),
    ((0.9, 0.97), (0.001, 0.05), [], INCONCLUSIVE),             # edges: strictly above 0.9 ...
    ((0.91, 0.97), (0.0, 0.05), [], INCONCLUSIVE),              # ... and strictly above forward only
    ((0.8, 0.89), (-0.05, -0.001), [], DOES_NOT_HOLD),          # both parts fail
    ((0.8, 0.89), (0.001, 0.05), [], INCONCLUSIVE),             # the parts disagree
    ((0.91, 0.97), (-0.05, -0.001), [], INCONCLUSIVE),
    ((0.8, 0.95), (-0.05, 0.05), [], INCONCLUSIVE),             # undecided intervals
    ((0.91, 0.97), (0.001, 0.05), [BI, FWD], INCONCLUSIVE),     # nothing learned
    ((0.91, 0.97), (0.001, 0.05), [BI], DOES_NOT_HOLD),         # the bi-directional model alone learned nothing
    ((0.91, 0.97), (0.001, 0.05), [FWD], HOLDS),                # the ablation at chance is named, not decisive
])
def test_rule(iv, auc, gap, at_chance, verdict):
    figures = {video_anomaly.AUC_BI: iv(*auc), video_anomaly.AUC_GAP: iv(*gap), AT_CHANCE: at_chance}
    assert video_anomaly.judge(figures) == verdict


def test_chance_is_the_better_no_learning_predictor():
    task = video_anomaly.make_task(0)
    level = video_anomaly.chance(task, 1, 4).level
    batch = task.batch("val", 0, 4)
    got = [task.loss(p(batch.inputs), batch)[1]["ssim"]
           for p in (video_anomaly.copy_last_past_frame(task), video_anomaly.mean_of_context(task))]
    assert level == pytest.approx(max(got)) and 0.3 < level < 1.0
    mean = video_anomaly.mean_of_context(task)(batch.inputs)
    assert mean.shape == batch.targets.shape
    assert mean[:, 0].sub(batch.inputs[:, [0, 1, 2, 6, 7, 8]].mean(1)).abs().max() < 1e-6  # never the middle frames


def test_scoring_ranks_an_oracle_that_errs_on_events_perfectly():
    """A predictor that is exact except on the labelled frames (where it predicts black) gets AUROC 1."""
    task = tasks.create("moving_shapes_prediction", test_frames=24)
    videos = [task.test_video(i) for i in range(4)]
    labels = {id(v.frames): v.labels for v in videos}

    def oracle(clips):
        out = clips[:, 3:6].clone()
        for i, clip in enumerate(clips):
            for v in videos:
                for s in range(v.frames.shape[0] - 8):
                    if (clip[0].numpy() == v.frames[s]).all() and (clip[-1].numpy() == v.frames[s + 8]).all():
                        out[i][labels[id(v.frames)][s + 3: s + 6]] = 0.0
        return out

    auc, per_kind = video_anomaly.anomaly_auroc(task, oracle, videos)
    assert auc == 1.0 and set(per_kind) == {"teleport", "speedup", "wrong_direction", "new_shape"}


def test_quick_run(quick_run):
    r = quick_run("video_anomaly")
    m = r.measured
    auc = {a: r.per_seed[f"frame AUROC {a}"] for a in video_anomaly.ARMS}
    assert all(0 <= v <= 1 for a in auc for v in auc[a])
    assert m[video_anomaly.AUC_BI].values == pytest.approx(auc[BI])
    assert m[video_anomaly.AUC_GAP].values == pytest.approx([b - f for b, f in zip(auc[BI], auc[FWD])])
    assert m["parameters bi-directional"] > m["parameters forward only"]
    assert len(auc[BI]) == len(video_anomaly.QUICK.protocol.seeds) and set(r.protocol[0]["chosen"]) == set(auc)
