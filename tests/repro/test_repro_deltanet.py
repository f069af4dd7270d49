"""Repro deltanet (P12): the rule on hand-written figures (each outcome, every edge); the hybrids are causal."""
from __future__ import annotations

import pytest
import torch

from attnlab.repro import deltanet as dn
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE

SWA, SM = dn.HYBRIDS["hybrid deltanet+sliding window"], dn.HYBRIDS["hybrid deltanet+softmax"]


def _f(lin=0.2, delta=0.9, h_sm=0.98, h_swa=0.98, softmax=1.0):
    return {dn.LINEAR: lin, dn.DELTANET: delta, SM: h_sm, SWA: h_swa, dn.SOFTMAX: softmax}


@pytest.mark.parametrize("figures, verdict", [
    (_f(), HOLDS),
    (_f(lin=0.25, delta=0.25 + dn.MARGIN_OVER_LINEAR), HOLDS),                  # (A) at its edge
    (_f(lin=0.25, delta=0.25 + dn.MARGIN_OVER_LINEAR - 1e-9), INCONCLUSIVE),   # (A) fails, (B) holds
    (_f(h_swa=0.5), INCONCLUSIVE),                                             # (A) holds, one hybrid fails (B)
    (_f(lin=0.85, h_sm=0.5, h_swa=0.5), DOES_NOT_HOLD),                        # neither
    # (B) per hybrid: within the slack of softmax, or at most half of DeltaNet's gap to it
    (_f(h_sm=1.0 - dn.HYBRID_SLACK, h_swa=1.0 - dn.HYBRID_SLACK), HOLDS),
    (_f(delta=0.6, h_sm=0.8, h_swa=0.8), HOLDS), (_f(delta=0.6, h_sm=0.79, h_swa=0.8), INCONCLUSIVE),
    (_f(delta=1.0, softmax=0.9, h_sm=0.84, h_swa=0.9), INCONCLUSIVE),          # DeltaNet beats softmax: slack only
])
def test_rule(figures, verdict):
    assert dn.judge(figures) == verdict


@pytest.mark.slow
def test_quick_run_records_every_arm(quick_run):
    m = quick_run("deltanet").measured
    assert set(m["final"]) == {"linear_attention", "deltanet", "softmax", *dn.HYBRIDS}
    assert all(len(c) >= 2 for c in m["curves"].values())
    assert m[dn.DELTANET] == pytest.approx(m["final"]["deltanet"], abs=1e-4)


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
