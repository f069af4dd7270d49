"""Repro deconstructing_attention (P08): the rule on hand-written intervals (each outcome and its edges); the quick
run."""
from __future__ import annotations

import pytest

from attnlab.repro import deconstructing_attention as da
from attnlab.repro.harness.protocol import AT_CHANCE
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE

L, N, A, S = da.LEARNED_FRACTION, da.NO_MIX_FRACTION, da.ALONE_MARGIN, da.HYBRID_SLACK
E = 1e-6


def _f(iv, std=(0.2, 0.3), nomix=(0.95, 1.0), alone=((0.5, 0.7), (0.4, 0.6)), hybrid=((0.0, 0.05), (-0.02, 0.08)),
       at_chance=()):
    f = {da.STANDARD: iv(*std), da.NO_MIX: iv(*nomix), AT_CHANCE: list(at_chance)}
    f.update({da.UNIFORM[v]: iv(*x) for v, x in zip(da.INPUT_INDEPENDENT, alone)})
    f.update({da.HYBRID[v]: iv(*x) for v, x in zip(da.INPUT_INDEPENDENT, hybrid)})
    return f


@pytest.mark.parametrize("kw, verdict", [
    ({}, HOLDS),
    ({"std": (0.3, L)}, INCONCLUSIVE),                          # standard not clearly copying: nothing to compare
    ({"std": (0.3, L - E), "nomix": (N + E, 1.0), "alone": ((A + E, 1), (A + E, 1)),
      "hybrid": ((0, S - E), (0, S - E))}, HOLDS),              # every interval just on the claimed side
    ({"nomix": (N, 1.0)}, INCONCLUSIVE),                        # (A) touches its threshold: undecided
    ({"nomix": (0.5, N - E)}, DOES_NOT_HOLD),                   # no mixing copies: the premise fails
    ({"alone": ((0.1, A - E), (0.5, 0.7))}, INCONCLUSIVE),      # (B) fails for one variant, (C) holds
    ({"hybrid": ((S + E, 0.3), (0.0, 0.05))}, INCONCLUSIVE),    # (C) fails for one, (B) holds
    ({"alone": ((0.0, 0.1), (0.0, 0.1)), "hybrid": ((0.3, 0.6), (0.3, 0.6))}, DOES_NOT_HOLD),  # neither (B) nor (C)
    ({"at_chance": list(da.JUDGED)}, INCONCLUSIVE),             # nothing learned
    ({"at_chance": ["uniform rnd_emb_qk"]}, HOLDS),             # named in the verdict line; the intervals decide
])
def test_rule(iv, kw, verdict):
    assert da.judge(_f(iv, **kw)) == verdict


def test_quick_run(quick_run):
    r = quick_run("deconstructing_attention")
    m = r.measured
    names = {"standard", "no mixing", "standard layers alone"} | {f"{k} {v}" for k in ("uniform", "hybrid")
                                                                   for v in da.VARIANTS}
    assert set(m["table"]) == names and set(m["lr"]) == names
    assert m[da.ENTROPY].mean > 0 and all(0 <= row["copy_accuracy"] <= 1 for row in m["table"].values())
    # the gated MLP has attention's parameter count (hidden = round(4 C / 3)), to within 2 %; no mixing keeps a
    # learned position table (N x C) where the RoPE arms have none
    table = m["settings"]["seq_len"] * m["settings"]["dim"]
    assert abs((m["params"]["no mixing"] - table) / m["params"]["standard"] - 1) < 0.02
    assert m[da.HYBRID["rnd_emb_qk"]].values == pytest.approx(
        [x - y for x, y in zip(r.per_seed["copy loss: hybrid rnd_emb_qk"], r.per_seed["copy loss: standard"])])
