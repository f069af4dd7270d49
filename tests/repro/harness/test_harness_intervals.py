"""Means over seeds with 95 % t intervals: hand-computed values, the degenerate cases, pairing, JSON round trip."""
from __future__ import annotations

import json
import math

import pytest

from attnlab.repro.harness.intervals import Interval, paired, revive, t_interval

T_2 = 4.3026527297  # t_{0.975, 2} (tables: 4.303)
T_1 = 12.7062047362  # t_{0.975, 1} (tables: 12.71)


def test_three_seeds_by_hand():
    iv = t_interval([1.0, 2.0, 3.0])  # mean 2, sample sd 1
    half = T_2 / math.sqrt(3)
    assert iv.mean == 2.0 and iv.n == 3 and iv.values == (1.0, 2.0, 3.0)
    assert iv.low == pytest.approx(2.0 - half, rel=1e-9) and iv.high == pytest.approx(2.0 + half, rel=1e-9)


def test_two_seeds_and_another_level():
    iv = t_interval([0.0, 2.0])  # sd sqrt(2), half = t * sqrt(2) / sqrt(2) = t
    assert (iv.low, iv.high) == pytest.approx((1.0 - T_1, 1.0 + T_1), rel=1e-9)
    narrow = t_interval([1.0, 2.0, 3.0], level=0.5)
    assert narrow.high - narrow.low < iv.high - iv.low and narrow.level == 0.5


def test_degenerate_cases():
    one = t_interval([0.7])
    assert one.mean == 0.7 and one.low == -math.inf and one.high == math.inf  # one seed decides nothing
    same = t_interval([0.5, 0.5, 0.5])
    assert same.low == same.high == same.mean == 0.5
    nan = t_interval([0.5, math.nan, 0.4])
    assert math.isnan(nan.mean) and math.isnan(nan.low) and math.isnan(nan.high)


@pytest.mark.parametrize("values, level, match", [([], 0.95, "values: expected at least one"),
                                                  ([1.0], 1.0, "level: expected a coverage"),
                                                  ([1.0], 0.0, "level: expected a coverage")])
def test_bad_input_is_named(values, level, match):
    with pytest.raises(ValueError, match=match):
        t_interval(values, level)


def test_paired_differences_and_scaling():
    iv = paired([0.5, 0.6, 0.7], [0.4, 0.4, 0.4], scale=100.0)
    assert iv.values == pytest.approx((10.0, 20.0, 30.0)) and iv.mean == pytest.approx(20.0)
    assert iv.high - iv.mean == pytest.approx(10.0 * T_2 / math.sqrt(3))
    # pairing removes what the seeds share: a constant offset per seed is an exact difference
    assert paired([1.0, 5.0, 9.0], [0.0, 4.0, 8.0]).high == pytest.approx(1.0)
    with pytest.raises(ValueError, match="b: expected one value per seed of a"):
        paired([1.0, 2.0], [1.0])
    s = t_interval([1.0, 2.0, 3.0]).scaled(100)
    assert s.mean == 200.0 and s.values == (100.0, 200.0, 300.0)
    with pytest.raises(ValueError, match="k: expected a positive scale"):
        s.scaled(-1)


def test_json_round_trip_through_revive():
    iv = t_interval([1.0, 2.0, 4.0])
    data = json.loads(json.dumps({"a": iv.to_dict(), "b": [iv.to_dict(), 3], "c": {"interval": "other"}}))
    back = revive(data)
    assert back["a"] == iv and back["b"] == [iv, 3] and back["c"] == {"interval": "other"}
    one = revive(json.loads(json.dumps(t_interval([2.0]).to_dict())))
    assert one.low == -math.inf and one.high == math.inf
    assert str(iv) == iv.text() and iv.text(3).startswith("2.33 [")
    assert isinstance(back["a"], Interval)
