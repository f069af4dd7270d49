"""Repro deltanet (P12): the rule on hand-written intervals (each outcome, every edge); the hybrids are causal."""
from __future__ import annotations

import pytest
import torch

from attnlab.repro import deltanet as dn
from attnlab.repro.harness.protocol import AT_CHANCE
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE

SM, SWA = (dn.SHORTFALL.format(h) for h in dn.HYBRIDS)
A_OK, B_OK = (0.5, 0.8), (-0.1, -0.01)


def _f(iv, a=A_OK, sm=B_OK, swa=B_OK, at_chance=()):
    return {dn.OVER_LINEAR: iv(*a), SM: iv(*sm), SWA: iv(*swa), AT_CHANCE: list(at_chance)}


@pytest.mark.parametrize("kw, verdict", [
    ({}, HOLDS),
    ({"a": (dn.MARGIN_OVER_LINEAR + 1e-9, 0.5)}, HOLDS), ({"a": (dn.MARGIN_OVER_LINEAR, 0.5)}, INCONCLUSIVE),  # (A)
    ({"a": (0.0, dn.MARGIN_OVER_LINEAR - 1e-9)}, INCONCLUSIVE),             # (A) does not hold, (B) does
    ({"swa": (0.01, 0.2)}, INCONCLUSIVE),                                   # (A) holds, one hybrid falls short
    ({"swa": (-0.1, 0.0)}, INCONCLUSIVE),                                   # a shortfall touching 0 is undecided
    ({"a": (-0.1, 0.05), "sm": (0.1, 0.3), "swa": (0.1, 0.3)}, DOES_NOT_HOLD),  # neither part
    ({"a": (-0.1, 0.05), "sm": (0.1, 0.3)}, DOES_NOT_HOLD),                 # (B) fails on one hybrid: it fails
    ({"at_chance": ["linear_attention"]}, HOLDS),                           # the baseline at chance: intervals decide
    ({"at_chance": ["deltanet"]}, DOES_NOT_HOLD), ({"at_chance": [dn.HYBRIDS[1]]}, DOES_NOT_HOLD),
    ({"at_chance": dn.ARMS}, INCONCLUSIVE),
])
def test_rule(iv, kw, verdict):
    assert dn.judge(_f(iv, **kw)) == verdict


@pytest.mark.parametrize("hybrid, delta, softmax, want", [
    (0.96, 0.9, 1.0, -0.01),     # within the 0.05 slack of softmax
    (0.8, 0.6, 1.0, 0.0),        # exactly half of DeltaNet's 0.4 gap
    (0.79, 0.6, 1.0, 0.01),      # a little short of it
    (0.84, 1.0, 0.9, 0.01),      # DeltaNet beats softmax: only the slack is allowed
])
def test_shortfall_by_hand(hybrid, delta, softmax, want):
    assert dn.shortfall(hybrid, delta, softmax) == pytest.approx(want)


def test_quick_run_records_every_arm(quick_run):
    r = quick_run("deltanet")
    m, per = r.measured, r.per_seed
    assert {f"recall accuracy: {a}" for a in dn.ARMS} <= set(m) and set(r.protocol[0]["chosen"]) == set(dn.ARMS)
    want = [dn.shortfall(h, d, s) for h, d, s in zip(per[f"recall accuracy: {dn.HYBRIDS[0]}"],
                                                     per["recall accuracy: deltanet"], per["recall accuracy: softmax"])]
    assert m[SM].values == pytest.approx(want)


def _check_causal(model, vocab):
    x = torch.randint(0, vocab, (2, 20))
    y = model(x)
    x2 = x.clone()
    x2[:, 12:] = torch.randint(0, vocab, (2, 8))
    torch.testing.assert_close(model(x2)[:, :12], y[:, :12], atol=1e-5, rtol=1e-5)
    assert (model(x2)[:, 12:] - y[:, 12:]).abs().max() > 1e-3


def test_hybrid_patterns_are_causal():
    """The P12 hybrids as backbone patterns: 3 DeltaNet + 1 softmax, and DeltaNet / sliding window alternating."""
    from attnlab.models import SequenceModel

    torch.manual_seed(0)
    model = SequenceModel(vocab_size=17, dim=16, depth=4, num_heads=2, mixer="deltanet*3,softmax",
                          max_len=32, causal=True).eval()
    names = [type(m).__name__ for m in model.modules() if getattr(m, "is_token_mixer", False)]
    assert names.count("DeltaNet") == 3 and len(names) == 4
    _check_causal(model, 17)
    model = SequenceModel(vocab_size=17, dim=16, depth=4, num_heads=2, mixer="deltanet,sliding_window",
                          mixer_kwargs={"sliding_window": {"window": 4}}, max_len=32, causal=True).eval()
    names = [type(m).__name__ for m in model.modules() if getattr(m, "is_token_mixer", False)]
    assert names.count("DeltaNet") == 2 and len(names) == 4
    _check_causal(model, 17)
