"""The moving-shapes video: deterministic from the seed, the flow is exact, anomalies are what their labels say,
bad options are refused by name."""
from __future__ import annotations

import numpy as np
import pytest

from attnlab.tasks.moving_shapes import ABSENT, ANOMALY_KINDS, Anomaly, MovingShapesConfig, render_video

TRAFFIC = MovingShapesConfig(motion="traffic", num_objects=2, shapes=("square", "disc"), pan_speed=1)


def _video(cfg, frames, anomaly=None, seed=0):
    return render_video(np.random.default_rng(seed), cfg, frames, anomaly)


def _warp_check(video):
    """Forward-warp every pixel of frame t by the flow; return (largest |frame t+1 - warped| on pixels that stay
    visible, share of foreground pixels of frame t that stay visible)."""
    t_all, _, n, _ = video.clean.shape
    ys, xs = np.mgrid[0:n, 0:n]
    worst, kept, total = 0.0, 0, 0
    for t in range(t_all - 1):
        tx, ty = xs + video.flow[t, 0].astype(int), ys + video.flow[t, 1].astype(int)
        assert np.array_equal(tx - xs, video.flow[t, 0]) and np.array_equal(ty - ys, video.flow[t, 1])  # integral
        inside = (tx >= 0) & (tx < n) & (ty >= 0) & (ty < n)
        stays = np.zeros_like(inside)
        stays[inside] = video.ids[t + 1][ty[inside], tx[inside]] == video.ids[t][inside]
        if stays.any():
            diff = video.clean[t + 1][:, ty[stays], tx[stays]] - video.clean[t][:, ys[stays], xs[stays]]
            worst = max(worst, float(np.abs(diff).max()))
        fg = video.ids[t] > 0
        kept, total = kept + int((stays & fg).sum()), total + int(fg.sum())
    return worst, kept / max(total, 1)


def test_a_video_is_a_pure_function_of_the_seed():
    a, b, c = _video(TRAFFIC, 12, seed=3), _video(TRAFFIC, 12, seed=3), _video(TRAFFIC, 12, seed=4)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.flow, b.flow) and np.array_equal(a.ids, b.ids)
    assert not np.array_equal(a.frames, c.frames)


@pytest.mark.parametrize("cfg, frames, anomaly", [
    (MovingShapesConfig(num_objects=1, num_distractors=0), 10, None),
    (MovingShapesConfig(num_objects=3, pan_speed=2, img_size=40), 8, None),
    (MovingShapesConfig(num_objects=2, pan_speed=1, speed=(0, 3)), 12, None),
    (TRAFFIC, 24, None),
    (TRAFFIC, 20, Anomaly("teleport", 8)),
    (TRAFFIC, 20, Anomaly("speedup", 6, 4)),
])
def test_warping_frame_t_by_the_flow_gives_frame_t_plus_1(cfg, frames, anomaly):
    """Exact flow: on every pixel that stays visible (same object id, or background, at its destination), the
    warped noise-free frame t equals frame t+1 to 1e-6 (it is exact: integer motion, no resampling)."""
    worst, kept = _warp_check(_video(cfg, frames, anomaly))
    assert worst <= 1e-6
    assert kept >= 0.9  # the check is not vacuous: most foreground pixels are compared


def test_flow_of_a_translating_object_equals_its_displacement():
    video = _video(MovingShapesConfig(num_objects=2, speed=(0, 3)), 10, seed=5)
    checked = 0
    for oid, pos in video.positions.items():
        for t in range(9):
            if pos[t, 0] == ABSENT or pos[t + 1, 0] == ABSENT:
                continue
            on = video.ids[t] == oid
            if on.any():
                disp = pos[t + 1] - pos[t]
                assert (video.flow[t, 0][on] == disp[0]).all() and (video.flow[t, 1][on] == disp[1]).all()
                assert np.abs(disp).max() <= 3
                checked += 1
    assert checked >= 15


def test_bounce_keeps_objects_inside_and_background_flow_is_the_pan():
    cfg = MovingShapesConfig(num_objects=3, pan_speed=2, num_distractors=0)
    pans = set()
    for seed in range(6):
        video = _video(cfg, 30, seed=seed)
        px, py = video.pan
        pans.add((int(px), int(py)))
        for pos in video.positions.values():
            assert (pos >= 0).all() and (pos <= cfg.img_size - cfg.object_size[0]).all()
            steps = np.abs(np.diff(pos, axis=0))
            assert not ((steps[:, 0] == abs(px)) & (steps[:, 1] == abs(py))).any()  # never moves like the camera
        bg = video.ids[:-1] == 0
        assert (video.flow[:, 0][bg] == px).all() and (video.flow[:, 1][bg] == py).all()
        # the texture pans with the camera: frame 1 is frame 0 rolled by the pan where no object is
        back = (-int(py), -int(px))
        still = (video.ids[0] == 0) & (np.roll(video.ids[1], back, axis=(0, 1)) == 0)
        assert np.abs(np.roll(video.clean[1], back, axis=(1, 2))[:, still] - video.clean[0][:, still]).max() == 0
    assert len(pans) >= 4  # the pan is drawn per video


def test_normal_traffic_moves_rightwards_and_uses_the_normal_shapes_only():
    video = _video(TRAFFIC, 40, seed=2)
    assert not video.labels.any()
    for pos in video.positions.values():
        live = pos[:, 0] != ABSENT
        steps = np.diff(pos[live, 0])
        assert (steps >= 1).all() and (steps <= 2).all()


@pytest.mark.parametrize("kind", ANOMALY_KINDS)
def test_each_anomaly_happens_on_its_labelled_frames(kind):
    normal = _video(TRAFFIC, 24, seed=7)
    for seed in range(4):
        video = _video(TRAFFIC, 24, Anomaly(kind, 10, 3), seed=seed)
        assert video.labels.tolist() == [10 <= t < 13 for t in range(24)]
        lead = video.positions[1]
        steps = np.diff(lead[:, 0])
        if kind == "teleport":
            jump = np.abs(lead[10] - lead[9]).max()
            assert jump >= 7  # at least the object size + 2 px
            assert (steps[:9] >= 1).all() and (steps[:9] <= 2).all()
        elif kind == "speedup":
            assert set(steps[9:12] // steps[0]) == {3}  # three times the normal speed, on the event frames
            assert (lead[9:13, 0] >= 0).all() and (lead[9:13, 0] <= 32 - 5).all()  # and visible
        elif kind == "wrong_direction":
            assert (steps[9:12] < 0).all() and (steps[:9] > 0).all()
        else:  # an object of a shape normal videos never show, present exactly on the event frames
            extra = [oid for oid, p in video.positions.items() if ((p[:, 0] != ABSENT) == video.labels).all()]
            assert len(extra) == 1
            assert (video.ids[10:13] == extra[0]).any(axis=(1, 2)).all()
    assert normal.labels.sum() == 0


def test_new_shape_draws_a_shape_outside_the_normal_set():
    cfg = MovingShapesConfig(motion="traffic", shapes=("square",), num_objects=1, num_distractors=0, noise=0.0)
    video = _video(cfg, 12, Anomaly("new_shape", 5, 2), seed=0)
    extra_px = video.ids[5] == video.ids[5].max()
    rows = extra_px.any(1).sum()
    cols = extra_px.any(0).sum()
    assert extra_px.sum() < rows * cols  # not a filled square: one of cross, triangle, ring, disc


@pytest.mark.parametrize("kw, match", [
    ({"img_size": 8}, "img_size"), ({"num_objects": 0}, "num_objects"), ({"object_size": (6, 4)}, "object_size"),
    ({"object_size": (2, 4)}, "object_size"), ({"speed": (0, 40)}, "speed"), ({"motion": "orbit"}, "motion"),
    ({"shapes": ("square", "hexagon")}, "shapes"), ({"num_distractors": -1}, "num_distractors"),
    ({"pan_speed": 1.5}, "pan_speed"), ({"pan_speed": 8}, "pan_speed"), ({"noise": -0.1}, "noise"),
])
def test_bad_config_is_refused_by_name(kw, match):
    with pytest.raises(ValueError, match=f"^{match}: expected"):
        MovingShapesConfig(**kw)


def test_bad_render_arguments_are_refused_by_name():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="anomaly: expected None unless cfg.motion == 'traffic'"):
        render_video(rng, MovingShapesConfig(), 10, Anomaly("teleport", 3))
    with pytest.raises(ValueError, match="anomaly: expected an event inside the 10 frames"):
        render_video(rng, TRAFFIC, 10, Anomaly("teleport", 9, 3))
    with pytest.raises(ValueError, match="anomaly.kind: expected one of"):
        Anomaly("explosion", 3)
    with pytest.raises(ValueError, match="anomaly.start: expected an int >= 1"):
        Anomaly("speedup", 0)
    with pytest.raises(TypeError, match="cfg: expected a MovingShapesConfig"):
        render_video(rng, {"img_size": 32}, 10)
    with pytest.raises(ValueError, match="anomaly: expected a kind other than 'new_shape'"):
        render_video(rng, MovingShapesConfig(motion="traffic"), 10, Anomaly("new_shape", 3))
