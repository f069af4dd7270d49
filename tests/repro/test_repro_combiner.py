"""Repro combiner (P03): the quick mode runs for real; the verdict rule and the local stand-in."""
from __future__ import annotations

import torch

from attnlab.repro.base import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, VERDICTS, ReproContext
from attnlab.repro.combiner import _BandLocal, judge, run


def test_quick_run(tmp_path):
    out = run(ReproContext(quick=True, out_dir=tmp_path, progress=False))
    assert out.verdict in VERDICTS
    bpc = out.measured["final_bpc"]
    assert set(bpc) == {"full attention", "local", "combiner_fixed", "combiner_axial"}
    assert all(0.0 < v < 8.0 for v in bpc.values())
    assert out.measured["logits_per_token"]["combiner_fixed"] == out.measured["logits_per_token"]["local"] == 16
    assert (tmp_path / "combiner_bpc.png").exists()
    assert out.verdict == judge(bpc)[0]


def test_verdict_rule():
    base = {"full attention": 2.0, "local": 2.2}
    assert judge({**base, "combiner_fixed": 2.05, "combiner_axial": 2.1})[0] == HOLDS
    assert judge({**base, "combiner_fixed": 2.05, "combiner_axial": 2.195})[0] == INCONCLUSIVE
    assert judge({**base, "combiner_fixed": 2.3, "combiner_axial": 2.2})[0] == DOES_NOT_HOLD
    # signed gaps: beating full attention counts as reaching it
    assert judge({**base, "combiner_fixed": 1.9, "combiner_axial": 1.95})[0] == HOLDS
    # full attention not ahead of local: the claim cannot be tested here
    assert judge({"full attention": 2.0, "local": 1.9, "combiner_fixed": 1.8, "combiner_axial": 1.8})[0] == INCONCLUSIVE


def test_band_local_stand_in_sees_exactly_the_window():
    torch.manual_seed(0)
    m = _BandLocal(8, 2, window=3).double()
    x = torch.randn(1, 10, 8, dtype=torch.float64)
    y = m(x)
    x2 = x.clone()
    x2[:, 2] += 5.0  # token 2 is inside the windows of tokens 2, 3, 4 only
    changed = (m(x2) - y).abs().amax(-1)[0] > 1e-12
    assert changed.tolist() == [False, False, True, True, True, False, False, False, False, False]
