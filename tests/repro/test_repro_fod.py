"""Repro fod (P16): the rule on hand-written intervals (each outcome, every edge); the quick run's figures."""
from __future__ import annotations

import pytest

from attnlab.repro import fod
from attnlab.repro.harness.protocol import AT_CHANCE
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE

B = fod.BAND


def _f(iv, img=(2.0, 4.0), pix=(2.0, 4.0), at_chance=()):
    return {fod.IMG_GAIN: iv(*img), fod.PIX_GAIN: iv(*pix), AT_CHANCE: list(at_chance)}


@pytest.mark.parametrize("kw, verdict", [
    ({}, HOLDS),
    ({"img": (B + 1e-9, 3), "pix": (B + 1e-9, 3)}, HOLDS), ({"img": (B, 3)}, INCONCLUSIVE),  # strictly above
    ({"pix": (-1.0, 3.0)}, INCONCLUSIVE),                                 # contains the margin
    ({"img": (-3, B - 1e-9), "pix": (-3, B - 1e-9)}, DOES_NOT_HOLD),      # both below
    ({"img": (2, 4), "pix": (-5, -2)}, INCONCLUSIVE),                     # one better, one worse
    ({"img": (float("nan"), float("nan"))}, INCONCLUSIVE),
    ({"at_chance": ["FOD"]}, DOES_NOT_HOLD),                              # FOD at chance, the baseline learned
    ({"at_chance": ["reconstruction"]}, HOLDS),                           # baseline at chance: intervals decide
    ({"at_chance": ["FOD", "reconstruction"]}, INCONCLUSIVE),             # no defect signal used by either
    ({"at_chance": ["I2Correlation, rec only"]}, HOLDS),                  # the ablation is not judged
])
def test_rule(iv, kw, verdict):
    assert fod.judge(_f(iv, **kw)) == verdict


def test_quick_run_records_every_arm(quick_run):
    r = quick_run("fod")
    m, per = r.measured, r.per_seed
    assert set(m["lr"]) == set(fod.ARMS)
    assert all(0 <= v <= 100 for vals in per.values() for v in vals)
    assert m[fod.IMG_GAIN].values == pytest.approx(
        [x - y for x, y in zip(per["test image_auroc FOD (points)"], per["test image_auroc reconstruction (points)"])])
    parts = m["last loss parts, seed 0"]
    assert set(parts["FOD"]) > {"step", "rec", "kl_intra", "kl_inter"}
    assert set(parts["reconstruction"]) == {"step", "rec"}
