"""TrainConfig: validation with clear messages, JSON round trip, the warm-up + cosine LR schedule."""
from __future__ import annotations

import pytest

from attnlab.train import TrainConfig


@pytest.mark.parametrize(
    "kw, exc, msg",
    [
        ({"steps": 0}, ValueError, "steps: expected an int >= 1, received 0"),
        ({"steps": 2.5}, TypeError, "steps: expected an int >= 1"),
        ({"lr": 0.0}, ValueError, "lr: expected a number > 0.0"),
        ({"lr": float("nan")}, ValueError, "lr: expected a finite number"),
        ({"wd_mode": "decoupled"}, ValueError, "wd_mode: expected one of ['coupled', 'independent'], received 'decoupled'"),
        ({"betas": (0.9, 1.0)}, ValueError, "betas[1]: expected a number in [0, 1)"),
        ({"betas": 0.9}, TypeError, "betas: expected a pair"),
        ({"min_lr_ratio": 1.5}, ValueError, "min_lr_ratio: expected a number <= 1.0"),
        ({"grad_clip": -1.0}, ValueError, "grad_clip: expected a number >= 0.0"),
        ({"eval_batches": 0}, ValueError, "eval_batches: expected an int >= 1"),
        ({"batch_size": True}, TypeError, "batch_size: expected an int >= 1, received True"),
        ({"steps": 20, "warmup_steps": 21}, ValueError,
         "warmup_steps: expected at most steps=20 (the warm-up would never reach lr), received 21"),
        ({"steps": 500, "warmup_steps": 501}, ValueError, "warmup_steps: expected at most steps=500"),
        ({"precision": "bfloat16"}, ValueError, "precision: expected one of ['fp32', 'bf16'], received str 'bfloat16'"),
    ],
)
def test_config_rejects_bad_values(kw, exc, msg):
    with pytest.raises(exc) as e:
        TrainConfig(**kw)
    assert msg in str(e.value)


def test_config_json_round_trip():
    c = TrainConfig(steps=7, lr=0.3, betas=[0.8, 0.9], wd_mode="independent", precision="bf16")
    assert c.betas == (0.8, 0.9)
    assert TrainConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown keys \\['nope'\\]"):
        TrainConfig.from_dict({**c.to_dict(), "nope": 1})


def test_default_warmup_is_50_steps_or_the_whole_of_a_shorter_run():
    assert TrainConfig(steps=500).warmup_steps == 50 and TrainConfig(steps=20).warmup_steps == 20
    assert TrainConfig(steps=20, warmup_steps=20).lr_at(20) == TrainConfig(steps=20).lr  # allowed: ends at lr
    assert TrainConfig.from_dict(TrainConfig(steps=7).to_dict()).warmup_steps == 7


def test_schedule_warmup_then_cosine_to_floor():
    c = TrainConfig(steps=110, lr=2.0, warmup_steps=10, min_lr_ratio=0.1)
    assert [c.lr_at(s) for s in (1, 5, 10)] == pytest.approx([0.2, 1.0, 2.0], abs=1e-12)
    assert c.lr_at(60) == pytest.approx((2.0 + 0.2) / 2, abs=1e-12)  # cosine half-way
    assert c.lr_at(110) == pytest.approx(0.2, abs=1e-12)
    lrs = [c.lr_at(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # monotone decay after warm-up
    assert TrainConfig(steps=5, warmup_steps=0, lr=1.0, min_lr_ratio=0.0).lr_at(1) < 1.0
