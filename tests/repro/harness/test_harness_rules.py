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


def _iv(low, high):
    from attnlab.repro.harness.intervals import Interval

    return Interval((low + high) / 2, low, high, (low, high))


@pytest.mark.parametrize("low, high, verdict", [
    (0.51, 2.0, HOLDS), (0.5, 2.0, INCONCLUSIVE),            # the interval must clear the margin strictly
    (-1.0, 0.49, DOES_NOT_HOLD), (-1.0, 0.5, INCONCLUSIVE),  # ... and lie strictly below it to exclude the claim
    (0.0, 1.0, INCONCLUSIVE), (-math.inf, math.inf, INCONCLUSIVE), (math.nan, math.nan, INCONCLUSIVE),
])
def test_clears_a_margin_from_above(low, high, verdict):
    from attnlab.repro.harness.rules import clears

    assert clears(_iv(low, high), 0.5) == verdict


@pytest.mark.parametrize("low, high, verdict", [
    (0.0, 1.14, HOLDS), (0.0, 1.15, INCONCLUSIVE), (1.16, 2.0, DOES_NOT_HOLD), (1.15, 2.0, INCONCLUSIVE),
])
def test_clears_a_margin_from_below(low, high, verdict):
    from attnlab.repro.harness.rules import clears

    assert clears(_iv(low, high), 1.15, above=False) == verdict


@pytest.mark.parametrize("parts, every, agree", [
    ((HOLDS, HOLDS), HOLDS, HOLDS), ((HOLDS, INCONCLUSIVE), INCONCLUSIVE, INCONCLUSIVE),
    ((HOLDS, DOES_NOT_HOLD), DOES_NOT_HOLD, INCONCLUSIVE),
    ((DOES_NOT_HOLD, DOES_NOT_HOLD), DOES_NOT_HOLD, DOES_NOT_HOLD),
    ((INCONCLUSIVE, DOES_NOT_HOLD), DOES_NOT_HOLD, INCONCLUSIVE), ((HOLDS,), HOLDS, HOLDS),
])
def test_combining_parts(parts, every, agree):
    from attnlab.repro.harness.rules import all_parts, unanimous

    assert all_parts(*parts) == every and unanimous(*parts) == agree


@pytest.mark.parametrize("at_chance, verdict", [
    ([], None), (["base"], None),                        # a baseline at chance: the intervals decide
    (["design"], DOES_NOT_HOLD),                         # the design cannot learn what its baseline learns
    (["base", "design"], INCONCLUSIVE),                  # nothing learned anything
    (["base", "design", "context"], INCONCLUSIVE), (["context"], None),
])
def test_chance_rule(at_chance, verdict):
    from attnlab.repro.harness.rules import chance_rule

    assert chance_rule(at_chance, ("design", "base"), counts_against=("design",)) == verdict


def test_chance_rule_over_several_comparisons():
    from attnlab.repro.harness.rules import chance_rule_each

    arms, against = ("design", "base"), ("design",)
    assert chance_rule_each([[], []], arms, counts_against=against) is None
    assert chance_rule_each([["design"], []], arms, counts_against=against) == DOES_NOT_HOLD
    assert chance_rule_each([["design"], ["design", "base"]], arms, counts_against=against) == INCONCLUSIVE
