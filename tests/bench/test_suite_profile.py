"""The suite profile (issue 16's compare target): op shares and Amdahl's bound on hand-written inputs, one real run."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from attnlab.bench.suite_profile import CAST_OPS, PRODUCT_OPS, RunProfile, amdahl_bound, op_shares, profile_run
from attnlab.suites import get_suite


def _ev(key, us):
    return SimpleNamespace(key=key, self_cpu_time_total=us)


def test_op_shares_by_group_on_hand_written_events():
    events = [_ev("aten::mm", 30), _ev("aten::addmm", 10), _ev("aten::copy_", 20), _ev("aten::mul", 40)]
    shares = op_shares(events, {"products": PRODUCT_OPS, "casts": CAST_OPS})
    assert shares == pytest.approx({"products": 0.4, "casts": 0.2})
    assert op_shares([_ev("aten::mm", 0)], {"products": PRODUCT_OPS}) == {"products": 0.0}


def test_amdahl_bound_weights_runs_by_their_steps():
    runs = [RunProfile("a", "x", 100, 0.1, 0.05, 0.5, 0.0), RunProfile("b", "y", 300, 0.2, 0.2, 0.1, 0.0)]
    # fp32 time 10 + 60 s; with free products 5 + 54 s
    assert amdahl_bound(runs) == pytest.approx(59 / 70)
    assert amdahl_bound([RunProfile("a", "x", 1, 1.0, 1.0, 0.0, 0.0)]) == 1.0
    with pytest.raises(ValueError, match="runs: expected"):
        amdahl_bound([])


def test_a_real_run_finds_product_work_in_a_softmax_model():
    run = get_suite("smoke").tasks[0]
    r = profile_run(run.task, run, "softmax", repeats=1, profile_steps=1)
    assert r.fp32_step > 0 and r.bf16_step > 0 and r.steps == run.steps
    # the Linear layers and SDPA are products: a renamed op would drop this share to 0
    assert 0.02 < r.product_share < 1 and 0 <= r.cast_share < 1
