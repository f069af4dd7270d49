"""The frame-prediction task: clips and their middle frames, the anomaly test split and its labels, long test
videos, the sliding windows and per-frame scoring; bad options refused by name."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from attnlab import tasks
from attnlab.tasks.moving_shapes import ANOMALY_KINDS
from attnlab.tasks.video_metrics import frame_auroc, normalize_per_video


def test_targets_are_the_middle_frames_and_train_clips_are_normal():
    t = tasks.create("moving_shapes_prediction", context=2, targets=3)
    b = t.batch("train", 0, 6)
    assert b.inputs.shape == (6, 7, 3, 32, 32) and b.targets.shape == (6, 3, 3, 32, 32)
    assert torch.equal(b.targets, b.inputs[:, 2:5])
    assert not b.extras["labels"].any() and t.spec.num_frames == 7 and t.spec.input == "video"


def test_test_clips_carry_labels_on_the_frames_of_their_event():
    t = tasks.create("moving_shapes_prediction", anomaly_rate=1.0)
    labels = t.batch("test", 0, 12).extras["labels"]
    assert (labels.sum(1) >= 1).all()  # every clip is abnormal at this rate
    assert labels[:, 3:6].any(1).all()  # and its event touches the middle frames
    assert not tasks.create("moving_shapes_prediction", anomaly_rate=0.0).batch("test", 0, 12).extras["labels"].any()


def test_skip_takes_every_kth_frame():
    t = tasks.create("moving_shapes_prediction", skip=2, noise=0.0, num_distractors=0, seed=4)
    b = t.batch("train", 1, 2)
    assert b.inputs.shape[1] == 9 and t.span == 17


def test_test_videos_cycle_through_the_kinds_with_one_scorable_event():
    t = tasks.create("moving_shapes_prediction", test_frames=30)
    for i in range(8):
        v = t.test_video(i)
        assert v.frames.shape == (30, 3, 32, 32) and v.anomaly.kind == ANOMALY_KINDS[i % 4]
        on = np.flatnonzero(v.labels)
        assert len(on) == 3 and on[0] >= t.context + 1 and on[-1] <= 30 - t.context - 1
    assert np.array_equal(t.test_video(5).frames, t.test_video(5).frames)


def test_windows_tile_every_scorable_frame():
    t = tasks.create("moving_shapes_prediction")
    starts = t.windows(40)
    covered = {int(s) + 3 + j for s in starts for j in range(3)}
    assert covered == set(range(3, 37)) and starts[-1] == 40 - 9


def test_score_video_with_an_oracle_and_with_a_copy_of_the_previous_frame():
    """The oracle (true middle frames) scores zero error everywhere; copying the last context frame errs
    most where objects jump (the events), so its AUROC is above chance on these videos."""
    t = tasks.create("moving_shapes_prediction", test_frames=30, noise=0.0)
    scores, labels = [], []
    for i in range(4):
        v = t.test_video(i)
        oracle = t.score_video(lambda clips: clips[:, 3:6], v)
        assert oracle.frames.tolist() == list(range(3, 27)) and np.abs(oracle.errors).max() < 1e-6
        copy = t.score_video(lambda clips: clips[:, 2:3].expand(-1, 3, -1, -1, -1), v, batch_size=3)
        scores.append(normalize_per_video(copy.errors))
        labels.append(copy.labels)
    assert frame_auroc(np.concatenate(scores), np.concatenate(labels)) > 0.5


@pytest.mark.parametrize("kw, match", [({"context": 0}, "context"), ({"anomaly_rate": 1.5}, "anomaly_rate"),
                                       ({"test_frames": 10}, "test_frames"), ({"speedup": 1}, "speedup"),
                                       ({"speed": (0, 2)}, "speed")])
def test_bad_options_are_refused_by_name(kw, match):
    with pytest.raises(ValueError, match=f"^{match}: expected"):
        tasks.create("moving_shapes_prediction", **kw)


def test_wrong_output_shape_is_refused():
    t = tasks.create("moving_shapes_prediction")
    b = t.batch("val", 0, 2)
    with pytest.raises(ValueError, match="outputs: expected predicted middle frames"):
        t.loss(b.inputs, b)
