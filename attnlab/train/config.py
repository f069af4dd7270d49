"""Training configuration: one validated dataclass, JSON round-trip for checkpoints."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from attnlab.utils.checks import fail
from attnlab.utils.precision import check_precision

__all__ = ["TrainConfig", "WD_MODES", "RESUME_FREE_FIELDS", "DEFAULT_WARMUP"]

WD_MODES = ("coupled", "independent")
#: warm-up steps when ``warmup_steps`` is not given (fewer if the run is shorter)
DEFAULT_WARMUP = 50

#: fields that may change between a run and its resumption without changing the
#: trajectory (they only decide what is logged, evaluated or saved, and when)
RESUME_FREE_FIELDS = ("eval_every", "eval_batches", "log_every", "ckpt_every")


def _num(name: str, value, *, low: float | None = None, low_open: bool = False, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        fail(name, "a finite number", repr(value), TypeError if not isinstance(value, (int, float)) else ValueError)
    if low is not None and (value <= low if low_open else value < low):
        fail(name, f"a number {'>' if low_open else '>='} {low}", repr(value))
    if high is not None and value > high:
        fail(name, f"a number <= {high}", repr(value))
    return float(value)


def _int(name: str, value, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        fail(name, f"an int >= {low}", repr(value), TypeError)
    if value < low:
        fail(name, f"an int >= {low}", repr(value))
    return value


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`attnlab.train.train` (AdamW, warm-up + cosine, P02 defaults).

    Attributes:
        steps: optimizer updates in total. Step ``s`` (1-based) trains on
            ``task.batch("train", s - 1, batch_size)``.
        batch_size: examples per step (and per eval batch).
        lr: peak learning rate ``lr_max``.
        warmup_steps: linear warm-up ``lr * s / warmup_steps`` for ``s <= warmup_steps``
            (at most ``steps``; None, the default, means ``min(50, steps)``),
            then cosine decay to ``min_lr_ratio * lr`` at ``s = steps``.
        min_lr_ratio: final LR as a fraction of ``lr`` (in [0, 1]).
        weight_decay: decay coefficient lambda (0 disables it).
        wd_mode: ``"coupled"`` (torch's AdamW: parameters shrink by ``lr_t * lambda`` per
            step) or ``"independent"`` (P02: they shrink by ``(lr_t / lr) * lambda``,
            i.e. the schedule shape but not the peak LR scales the decay).
        betas, eps: AdamW moments (P02: (0.9, 0.95), 1e-8).
        grad_clip: clip the global gradient norm to this value (0 = no clipping;
            the norm is still measured and logged).
        z_loss: coefficient of the output-logit z-loss ``coef * mean(logsumexp(logits)^2)``
            (P02 uses 1e-4; only for "lm"/"class" outputs; 0 disables it).
        eval_every: evaluate on ``eval_batches`` val batches every this many steps
            (0 = only at the end).
        eval_batches: val batches per evaluation.
        log_every: a history row (loss, lr, grad norm, metrics) every this many steps.
        seed: seeds torch's global RNG (dropout etc.) at the start of a fresh run.
        ckpt_every: save a checkpoint every this many steps (0 = only at the end);
            needs ``out_dir``.
        precision: ``"fp32"`` or ``"bf16"``: forward passes and losses (training steps and
            evaluations) under ``torch.autocast("cpu", dtype=torch.bfloat16)``; weights,
            gradients, optimizer state and checkpoints stay fp32 (master weights), so a bf16
            run resumes exactly like an fp32 one. See the README's "Precision" section for
            when it pays.
    """

    steps: int = 500
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int | None = None
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    wd_mode: str = "coupled"
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0
    z_loss: float = 0.0
    eval_every: int = 100
    eval_batches: int = 4
    log_every: int = 10
    seed: int = 0
    ckpt_every: int = 0
    precision: str = "fp32"

    def __post_init__(self):
        _int("steps", self.steps, low=1)
        _int("batch_size", self.batch_size, low=1)
        _num("lr", self.lr, low=0.0, low_open=True)
        if self.warmup_steps is None:
            self.warmup_steps = min(DEFAULT_WARMUP, self.steps)
        _int("warmup_steps", self.warmup_steps, low=0)
        if self.warmup_steps > self.steps:
            fail("warmup_steps", f"at most steps={self.steps} (the warm-up would never reach lr)",
                 self.warmup_steps)
        _num("min_lr_ratio", self.min_lr_ratio, low=0.0, high=1.0)
        _num("weight_decay", self.weight_decay, low=0.0)
        if self.wd_mode not in WD_MODES:
            fail("wd_mode", f"one of {list(WD_MODES)}", repr(self.wd_mode))
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2:
            fail("betas", "a pair (beta1, beta2)", repr(self.betas), TypeError)
        for i, b in enumerate(self.betas):
            _num(f"betas[{i}]", b, low=0.0)
            if b >= 1.0:
                fail(f"betas[{i}]", "a number in [0, 1)", repr(b))
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        _num("eps", self.eps, low=0.0, low_open=True)
        _num("grad_clip", self.grad_clip, low=0.0)
        _num("z_loss", self.z_loss, low=0.0)
        _int("eval_every", self.eval_every, low=0)
        _int("eval_batches", self.eval_batches, low=1)
        _int("log_every", self.log_every, low=1)
        _int("seed", self.seed, low=0)
        _int("ckpt_every", self.ckpt_every, low=0)
        check_precision("precision", self.precision)

    def to_dict(self) -> dict:
        """JSON-able dict of all fields."""
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Inverse of :meth:`to_dict` (unknown keys raise a clear error)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            fail("config", f"keys among {sorted(names)}", f"unknown keys {unknown}")
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)

    def lr_at(self, step: int) -> float:
        """Learning rate used by step ``step`` (1-based): linear warm-up, then cosine to ``min_lr_ratio * lr``."""
        if step <= self.warmup_steps:
            return self.lr * step / self.warmup_steps
        span = self.steps - self.warmup_steps
        progress = min(max((step - self.warmup_steps) / span, 0.0), 1.0) if span > 0 else 1.0
        floor = self.min_lr_ratio * self.lr
        return floor + (self.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
