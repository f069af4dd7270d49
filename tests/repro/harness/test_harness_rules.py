"""The rule shapes reproductions share: band, two parts, the learned guard (pure functions, boundaries included)."""
from __future__ import annotations

import math

import pytest

from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, band, guard_learned, two_parts


@pytest.mark.parametrize("margin, verdict", [
    (0.51, HOLDS), (0.5, INCONCLUSIVE), (0.0, INCONCLUSIVE), (-0.5, INCONCLUSIVE), (-0.51, DOES_NOT_HOLD),
    (math.inf, HOLDS), (-math.inf, DOES_NOT_HOLD), (math.nan, INCONCLUSIVE),
])
def test_band_is_strict_at_both_edges(margin, verdict):
    assert band(margin, 0.5) == verdict


@pytest.mark.parametrize("first, second, verdict", [
    (True, True, HOLDS), (False, False, DOES_NOT_HOLD), (True, False, INCONCLUSIVE), (False, True, INCONCLUSIVE),
])
def test_two_parts(first, second, verdict):
    assert two_parts(first, second) == verdict


@pytest.mark.parametrize("verdict", [HOLDS, DOES_NOT_HOLD, INCONCLUSIVE])
def test_guard_learned_only_overrides_when_nothing_was_learned(verdict):
    assert guard_learned(True, verdict) == verdict
    assert guard_learned(False, verdict) == INCONCLUSIVE
