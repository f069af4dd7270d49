"""attnlab.utils.timing.interleaved_median_seconds: round-robin order, warm-up excluded, median, bad input refused."""
import time

import pytest

from attnlab.utils.timing import interleaved_median_seconds


def test_round_robin_order_and_warmup_excluded():
    calls = []
    steps = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    out = interleaved_median_seconds(steps, repeats=3, warmup=2)
    assert calls == ["a", "b"] * 5  # 2 warm-up + 3 timed rounds, alternating
    assert set(out) == {"a", "b"} and all(v >= 0 for v in out.values())


def test_median_separates_a_slow_step_from_a_fast_one():
    out = interleaved_median_seconds({"fast": lambda: None, "slow": lambda: time.sleep(0.02)}, repeats=3, warmup=0)
    assert out["slow"] >= 0.019 > out["fast"]


def test_median_ignores_one_outlier_round():
    # one slow first timed call, two fast ones; the outlier is large so that scheduler delays of
    # tens of milliseconds on a loaded machine (seen: 32 ms for sleep(0) at load 15) cannot matter
    delays = iter([0.6, 0.0, 0.0])
    out = interleaved_median_seconds({"x": lambda: time.sleep(next(delays))}, repeats=3, warmup=0)
    assert out["x"] < 0.3


@pytest.mark.parametrize("kwargs, match", [({"repeats": 0}, "repeats"), ({"repeats": 2, "warmup": -1}, "warmup")])
def test_bad_counts_are_refused(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        interleaved_median_seconds({"x": lambda: None}, **kwargs)
