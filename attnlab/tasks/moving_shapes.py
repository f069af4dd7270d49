"""The generated moving-shapes video: frames, per-frame object masks, the exact flow of every pixel, anomaly labels.

Everything here is a pure function of a ``numpy.random.Generator`` and a
:class:`MovingShapesConfig`, with no downloads. A video of ``T`` frames of ``img_size`` px
shows foreground objects (shapes in bright colours) moving over a cluttered background: a
low-contrast texture with *distractor* shapes of the same shapes and palette, so that a single
frame cannot tell a foreground object from a distractor; only motion can (the point of the
zero-shot video object segmentation variant, P30). The camera can pan: the background moves by
``pan`` = (px, py) px per frame, wrapping around, each component drawn per video from
``[-pan_speed, pan_speed]``; an object never moves like the camera (it would be invisible to motion).

Motion is integer pixels per frame, so the flow is exact: ``flow[t]`` is the displacement (dx, dy)
of the content at each pixel of frame t between frames t and t+1. Warping frame t forward by it
reproduces frame t+1 on every pixel that stays visible (tested on the noise-free frames).

Two motion models:

* ``"bounce"``: every object moves with a constant velocity (each component in
  ``[-speed_max, speed_max]``, not both zero) and reflects off the four borders (the object stays
  inside the frame);
* ``"traffic"``: objects move rightwards (``vx`` in ``speed``, ``vy`` in {-1, 0, 1}, reflecting
  off top and bottom); an object that leaves on the right re-enters on the left as a new object
  (new id, shape, colour, speed). This is the normal behaviour the anomaly variant learns (P21).

Anomalies (``"traffic"`` only; one event of ``event_len`` frames starting at frame ``t0``; those
frames are labelled abnormal): ``"teleport"`` (object 0 jumps to a far position at ``t0`` and
moves on from there), ``"speedup"`` (object 0 moves ``speedup`` times faster), ``"wrong_direction"``
(object 0 moves leftwards), ``"new_shape"`` (an object of a shape never seen in normal videos
crosses the frame).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from attnlab.utils.checks import check_choice, check_positive_int, fail
from attnlab.tasks.shapes import STAMP_KINDS, shape_mask

__all__ = ["MovingShapesConfig", "Anomaly", "Video", "render_video", "MOTIONS", "ANOMALY_KINDS", "PALETTE"]

MOTIONS = ("bounce", "traffic")
ANOMALY_KINDS = ("teleport", "speedup", "wrong_direction", "new_shape")
#: colours of foreground objects and distractors alike (appearance alone does not say which is which)
PALETTE = ((0.95, 0.2, 0.2), (0.2, 0.85, 0.25), (0.25, 0.35, 1.0), (0.95, 0.9, 0.2), (0.9, 0.3, 0.9),
           (0.2, 0.9, 0.9))


def _int_pair(arg: str, value: object, low: int) -> tuple[int, int]:
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            or not low <= value[0] <= value[1]):
        fail(arg, f"a pair (min, max) of ints with {low} <= min <= max", repr(value))
    return int(value[0]), int(value[1])


@dataclass(frozen=True)
class MovingShapesConfig:
    """What a video looks like and how its objects move (validated on construction; bad values name the field).

    Attributes:
        img_size: frame side in px (16..128).
        num_objects: foreground objects (1..6).
        object_size: (min, max) side of an object's stamp in px.
        speed: (min, max) speed in px per frame (``"bounce"``: per component, min ignored; ``"traffic"``: vx).
        motion: ``"bounce"`` or ``"traffic"`` (module docstring).
        shapes: shapes of normal objects and distractors (names of :data:`attnlab.tasks.shapes.STAMP_KINDS`).
        num_distractors: shapes painted on the background texture (they move with it).
        pan_speed: largest camera pan per axis in px per frame (0: static camera); the pan of a video is
            drawn from [-pan_speed, pan_speed] per axis.
        noise: std of the Gaussian pixel noise added to every frame (frames are clipped to [0, 1]).
    """

    img_size: int = 32
    num_objects: int = 1
    object_size: tuple[int, int] = (5, 8)
    speed: tuple[int, int] = (1, 2)
    motion: str = "bounce"
    shapes: tuple[str, ...] = ("square", "disc", "cross", "triangle", "ring")
    num_distractors: int = 4
    pan_speed: int = 0
    noise: float = 0.02

    def __post_init__(self):
        check_positive_int("img_size", self.img_size)
        if not 16 <= self.img_size <= 128:
            fail("img_size", "an int in [16, 128]", self.img_size)
        check_positive_int("num_objects", self.num_objects)
        if self.num_objects > 6:
            fail("num_objects", "an int in [1, 6]", self.num_objects)
        lo, hi = _int_pair("object_size", self.object_size, 3)
        if hi > self.img_size // 2:
            fail("object_size", f"a max side of at most img_size / 2 = {self.img_size // 2}", repr(self.object_size))
        s_lo, s_hi = _int_pair("speed", self.speed, 1 if self.motion == "traffic" else 0)
        if s_hi < 1 or s_hi >= self.img_size - hi:
            fail("speed", f"a max speed in [1, img_size - max object size) = [1, {self.img_size - hi})",
                 repr(self.speed))
        check_choice("motion", self.motion, MOTIONS)
        if (not isinstance(self.shapes, tuple) or not self.shapes
                or any(s not in STAMP_KINDS for s in self.shapes) or len(set(self.shapes)) != len(self.shapes)):
            fail("shapes", f"a non-empty tuple of distinct names from {list(STAMP_KINDS)}", repr(self.shapes))
        if isinstance(self.num_distractors, bool) or not isinstance(self.num_distractors, int) \
                or self.num_distractors < 0:
            fail("num_distractors", "an int >= 0", repr(self.num_distractors))
        if isinstance(self.pan_speed, bool) or not isinstance(self.pan_speed, int) \
                or not 0 <= self.pan_speed < self.img_size // 4:
            fail("pan_speed", f"an int in [0, img_size / 4) = [0, {self.img_size // 4})", repr(self.pan_speed))
        if not (isinstance(self.noise, (int, float)) and 0 <= self.noise < 1):
            fail("noise", "a number in [0, 1)", repr(self.noise))
        object.__setattr__(self, "object_size", (lo, hi))
        object.__setattr__(self, "speed", (s_lo, s_hi))

    @property
    def anomaly_shapes(self) -> tuple[str, ...]:
        """The shapes a ``"new_shape"`` anomaly may take: those normal videos never show."""
        return tuple(s for s in STAMP_KINDS if s not in self.shapes)


@dataclass(frozen=True)
class Anomaly:
    """One abnormal event: ``kind`` (one of :data:`ANOMALY_KINDS`) over frames ``[start, start + length)``."""

    kind: str
    start: int
    length: int = 3
    speedup: int = 3

    def __post_init__(self):
        check_choice("anomaly.kind", self.kind, ANOMALY_KINDS)
        if isinstance(self.start, bool) or not isinstance(self.start, int) or self.start < 1:
            fail("anomaly.start", "an int >= 1 (frame 0 shows the normal scene)", repr(self.start))
        check_positive_int("anomaly.length", self.length)
        if isinstance(self.speedup, bool) or not isinstance(self.speedup, int) or self.speedup < 2:
            fail("anomaly.speedup", "an int >= 2", repr(self.speedup))


@dataclass
class Video:
    """A rendered video.

    Attributes:
        frames: (T, 3, H, W) float32 in [0, 1], with noise.
        clean: (T, 3, H, W) float32, the same frames before noise.
        ids: (T, H, W) int32, the id of the object drawn at each pixel (0 = background); each spawned
            object has its own id, so ``ids > 0`` is the foreground mask and equal ids are one object.
        flow: (T - 1, 2, H, W) float32, exact displacement (dx, dy) in px of each pixel's content from
            frame t to frame t + 1 (foreground: its object's motion; background: the pan).
        pan: (2,) int, the camera pan (px, py) per frame.
        labels: (T,) bool, True on the frames of an abnormal event.
        positions: {id: (T, 2) int array of the object's top-left (x, y) per frame, -10**6 when absent}.
        anomaly: the event, or None.
    """

    frames: np.ndarray
    clean: np.ndarray
    ids: np.ndarray
    flow: np.ndarray
    labels: np.ndarray
    positions: dict = field(default_factory=dict)
    anomaly: Anomaly | None = None
    pan: np.ndarray = field(default_factory=lambda: np.zeros(2, np.int64))

    @property
    def masks(self) -> np.ndarray:
        """(T, H, W) bool foreground masks (every moving object)."""
        return self.ids > 0


ABSENT = -10**6


class _Track:
    """One object slot: its current object's position, velocity, look and id, and the positions per id."""

    def __init__(self, rng, cfg: MovingShapesConfig, shapes: tuple[str, ...], new_id, pan: np.ndarray,
                 entering: bool):
        self.rng, self.cfg, self.shapes, self.new_id, self.pan = rng, cfg, shapes, new_id, np.abs(pan)
        self.spawn(entering)

    def _moves_like_the_camera(self, v: np.ndarray) -> bool:
        """True if ``v`` (or a reflection of it) equals the pan: the object would not move against the background."""
        return bool((np.abs(v) == self.pan).all())

    def spawn(self, entering: bool) -> None:
        rng, cfg, n = self.rng, self.cfg, self.cfg.img_size
        self.size = int(rng.integers(cfg.object_size[0], cfg.object_size[1] + 1))
        self.shape = self.shapes[int(rng.integers(len(self.shapes)))]
        self.colour = np.asarray(PALETTE[int(rng.integers(len(PALETTE)))], np.float32)
        self.id = self.new_id()
        s_lo, s_hi = cfg.speed
        while True:
            if cfg.motion == "traffic":
                self.v = np.array([int(rng.integers(s_lo, s_hi + 1)), int(rng.integers(-1, 2))])
            else:
                self.v = rng.integers(-s_hi, s_hi + 1, size=2)
            if self.v.any() and not self._moves_like_the_camera(self.v):
                break
        if cfg.motion == "traffic":
            x = 1 - self.size if entering else int(rng.integers(1 - self.size, n))
        else:
            x = int(rng.integers(0, n - self.size + 1))
        self.p = np.array([x, int(rng.integers(0, n - self.size + 1))])

    def step(self, v: np.ndarray) -> np.ndarray:
        """Move by velocity ``v`` (reflecting off the borders the motion model bounces on); the displacement."""
        n, s = self.cfg.img_size, self.size
        new = self.p + v
        axes = (0, 1) if self.cfg.motion == "bounce" else (1,)
        for a in axes:
            if new[a] < 0:
                new[a], self.v[a] = -new[a], -self.v[a]
            elif new[a] > n - s:
                new[a], self.v[a] = 2 * (n - s) - new[a], -self.v[a]
        disp = new - self.p
        self.p = new
        return disp


def _background(rng, cfg: MovingShapesConfig) -> np.ndarray:
    """(3, H, W) texture: a grey base with low-contrast blobs, and distractor shapes in the objects' palette."""
    n = cfg.img_size
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    tex = np.full((n, n), 0.35, np.float32)
    for _ in range(6):
        cy, cx = rng.uniform(0, n, size=2)
        r = rng.uniform(n / 8, n / 3)
        # periodic distance, so the texture wraps seamlessly when the camera pans
        dy, dx = np.minimum(abs(yy - cy), n - abs(yy - cy)), np.minimum(abs(xx - cx), n - abs(xx - cx))
        tex += rng.uniform(-0.12, 0.12) * np.exp(-(dx**2 + dy**2) / (2 * r**2))
    bg = np.repeat(tex[None], 3, axis=0)
    for _ in range(cfg.num_distractors):
        s = int(rng.integers(cfg.object_size[0], cfg.object_size[1] + 1))
        m = shape_mask(cfg.shapes[int(rng.integers(len(cfg.shapes)))], s)
        y, x = (int(v) for v in rng.integers(0, n - s + 1, size=2))
        bg[:, y: y + s, x: x + s][:, m] = np.asarray(PALETTE[int(rng.integers(len(PALETTE)))], np.float32)[:, None]
    return bg


def _paint(img: np.ndarray, ids: np.ndarray, flow: np.ndarray | None, p, size: int, mask: np.ndarray, colour,
           oid: int, disp) -> None:
    """Draw one object (clipped to the frame) into img / ids, and its displacement into flow."""
    n = img.shape[-1]
    x, y = int(p[0]), int(p[1])
    x0, x1, y0, y1 = max(x, 0), min(x + size, n), max(y, 0), min(y + size, n)
    if x0 >= x1 or y0 >= y1:
        return
    m = mask[y0 - y: y1 - y, x0 - x: x1 - x]
    img[:, y0:y1, x0:x1][:, m] = colour[:, None]
    ids[y0:y1, x0:x1][m] = oid
    if flow is not None:
        flow[:, y0:y1, x0:x1][:, m] = np.asarray(disp, np.float32)[:, None]


def _place_lead(rng, lead: _Track, anomaly: Anomaly, n: int) -> None:
    """Put object 0 where the event is visible: choose its x at frame ``start - 1`` (the last normal frame),
    then back-date its start so that normal motion brings it there."""
    vx, size, length = abs(int(lead.v[0])), lead.size, anomaly.length
    lo, hi = {"speedup": (0, n - size - vx * anomaly.speedup * length),
              "wrong_direction": (vx * length, n - size),
              "teleport": (0, n - size)}[anomaly.kind]
    x_last = int(rng.integers(lo, hi + 1)) if hi >= lo else max(min(lo, n - size), 0)
    lead.p[0] = x_last - int(lead.v[0]) * (anomaly.start - 1)


def _check_render_args(cfg: object, num_frames: int, anomaly: object) -> None:
    check_positive_int("num_frames", num_frames)
    if not isinstance(cfg, MovingShapesConfig):
        fail("cfg", "a MovingShapesConfig", type(cfg).__name__, TypeError)
    if anomaly is None:
        return
    if not isinstance(anomaly, Anomaly):
        fail("anomaly", "an Anomaly or None", type(anomaly).__name__, TypeError)
    if cfg.motion != "traffic":
        fail("anomaly", "None unless cfg.motion == 'traffic' (anomalies break the traffic rules)", anomaly.kind)
    if anomaly.start + anomaly.length > num_frames:
        fail("anomaly", f"an event inside the {num_frames} frames",
             f"frames [{anomaly.start}, {anomaly.start + anomaly.length})")
    if anomaly.kind == "new_shape" and not cfg.anomaly_shapes:
        fail("anomaly", "a kind other than 'new_shape' when cfg.shapes uses every shape", anomaly.kind)


def render_video(rng: np.random.Generator, cfg: MovingShapesConfig, num_frames: int,
                 anomaly: Anomaly | None = None) -> Video:
    """Render ``num_frames`` frames of a moving-shapes video (module docstring), optionally with one anomaly.

    Deterministic in the state of ``rng``. The anomaly acts on object 0 (``"new_shape"`` adds an object);
    its frames ``[start, start + length)`` must lie inside the video, and it needs ``cfg.motion == "traffic"``.
    Object 0 is placed so that the event happens inside the frame.
    """
    _check_render_args(cfg, num_frames, anomaly)
    n, t_all = cfg.img_size, num_frames
    counter = iter(range(1, 2**31 - 1))
    pan = rng.integers(-cfg.pan_speed, cfg.pan_speed + 1, size=2)
    tracks = [_Track(rng, cfg, cfg.shapes, lambda: next(counter), pan, entering=False)
              for _ in range(cfg.num_objects)]
    extra = None
    if anomaly is not None and anomaly.kind == "new_shape":
        extra = _Track(rng, cfg, cfg.anomaly_shapes, lambda: next(counter), pan, entering=False)
        extra.p[0] = int(rng.integers(0, max(n - extra.size - int(extra.v[0]) * anomaly.length, 0) + 1))
    elif anomaly is not None:
        _place_lead(rng, tracks[0], anomaly, n)
    bg = _background(rng, cfg)
    # per frame, the objects drawn (paint order: later on top): [position, size, mask, colour, id, displacement]
    drawn: list[list[list]] = []
    positions: dict[int, np.ndarray] = {}
    for t in range(t_all):
        live = tracks + ([extra] if extra is not None and anomaly.start <= t < anomaly.start + anomaly.length else [])
        drawn.append([[tr.p.copy(), tr.size, shape_mask(tr.shape, tr.size), tr.colour, tr.id, np.zeros(2, np.int64)]
                      for tr in live])
        for tr in live:
            positions.setdefault(tr.id, np.full((t_all, 2), ABSENT, np.int64))[t] = tr.p
        if t == t_all - 1:
            break
        event = anomaly is not None and anomaly.start <= t + 1 < anomaly.start + anomaly.length
        for k, (tr, entry) in enumerate(zip(live, drawn[t])):
            v = tr.v.copy()
            if k == 0 and event and anomaly.kind == "speedup":
                v[0] *= anomaly.speedup
            if k == 0 and event and anomaly.kind == "wrong_direction":
                v[0] = -abs(int(v[0]))
            if k == 0 and anomaly is not None and anomaly.kind == "teleport" and t + 1 == anomaly.start:
                while True:  # a jump of at least the object's size plus two px along one axis
                    target = rng.integers(0, n - tr.size + 1, size=2)
                    if np.abs(target - tr.p).max() >= tr.size + 2:
                        break
                entry[5] = target - tr.p
                tr.p = target
            else:
                entry[5] = tr.step(v)
        for tr, entry in zip(tracks, drawn[t]):  # traffic: an object gone off either side re-enters on the left
            if cfg.motion == "traffic" and (tr.p[0] >= n or (entry[5][0] < 0 and tr.p[0] + tr.size <= 0)):
                tr.spawn(entering=True)
    frames = np.empty((t_all, 3, n, n), np.float32)
    ids = np.zeros((t_all, n, n), np.int32)
    flow = np.zeros((t_all - 1, 2, n, n), np.float32)
    flow[:, 0], flow[:, 1] = pan[0], pan[1]
    for t in range(t_all):
        img = np.roll(bg, (int(pan[1]) * t, int(pan[0]) * t), axis=(-2, -1))
        for p, size, mask, colour, oid, disp in drawn[t]:
            _paint(img, ids[t], flow[t] if t < t_all - 1 else None, p, size, mask, colour, oid, disp)
        frames[t] = img
    labels = np.zeros(t_all, bool)
    if anomaly is not None:
        labels[anomaly.start: anomaly.start + anomaly.length] = True
    clean = frames.copy()
    if cfg.noise:
        frames = np.clip(frames + cfg.noise * rng.standard_normal(frames.shape).astype(np.float32), 0.0, 1.0)
    return Video(frames, clean, ids, flow, labels, positions, anomaly, pan)
