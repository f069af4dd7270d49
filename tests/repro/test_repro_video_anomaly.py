"""Repro video_anomaly (P21): the rule on hand-written figures (each outcome, every edge); the scoring on an
oracle; the quick run's figures."""
from __future__ import annotations

import pytest

from attnlab import tasks
from attnlab.repro import video_anomaly
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


@pytest.mark.parametrize("bi, fwd, verdict", [
    (0.95, 0.93, HOLDS), (0.9001, 0.9001, HOLDS),       # edges: strictly above 0.9, at least forward
    (0.9, 0.85, INCONCLUSIVE),                          # not above 0.9
    (0.95, 0.9501, INCONCLUSIVE),                       # below forward only
    (0.85, 0.9, DOES_NOT_HOLD), (0.5, 0.6, DOES_NOT_HOLD),
    (0.85, 0.8, INCONCLUSIVE),
])
def test_rule(bi, fwd, verdict):
    assert video_anomaly.judge({video_anomaly.AUC_BI: bi, video_anomaly.AUC_FWD: fwd}) == verdict


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
    assert 0 <= m[video_anomaly.AUC_BI] <= 1 and 0 <= m[video_anomaly.AUC_FWD] <= 1
    assert 0 <= m["frame AUROC copy last past frame"] <= 1
    assert m["parameters bi-directional"] > m["parameters forward only"]
    assert r.per_seed == {video_anomaly.AUC_BI: [m[video_anomaly.AUC_BI]],
                          video_anomaly.AUC_FWD: [m[video_anomaly.AUC_FWD]]}
    assert video_anomaly.FULL.seeds == (0, 1, 2) and m["seeds"] == 1
