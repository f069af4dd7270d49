"""Repro fod (P16): the rule on hand-written figures (each outcome, every edge); the quick run's figures."""
from __future__ import annotations

import pytest

from attnlab.repro import fod
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


def _f(img=3.0, pix=3.0, best=80.0):
    return {fod.IMG_GAIN: img, fod.PIX_GAIN: pix, fod.BEST_PIX: best}


@pytest.mark.parametrize("figures, verdict", [
    (_f(), HOLDS),
    (_f(img=fod.BAND + 1e-9, pix=fod.BAND + 1e-9), HOLDS), (_f(img=fod.BAND), INCONCLUSIVE),   # strictly above
    (_f(pix=0.0), INCONCLUSIVE),                                          # better on images only
    (_f(img=0.0, pix=-fod.BAND - 1e-9), DOES_NOT_HOLD), (_f(img=fod.BAND, pix=-5.0), DOES_NOT_HOLD),
    (_f(img=0.5, pix=-fod.BAND), INCONCLUSIVE),                           # within the band everywhere
    (_f(img=5.0, pix=-5.0), INCONCLUSIVE),                                # one better, one worse
    (_f(best=fod.FOUND - 1e-9), INCONCLUSIVE), (_f(img=-9, pix=-9, best=55.0), INCONCLUSIVE),  # no defect signal
    (_f(best=fod.FOUND), HOLDS), (_f(best=float("nan")), INCONCLUSIVE),
])
def test_rule(figures, verdict):
    assert fod.judge(figures) == verdict


def test_quick_run_records_every_arm(quick_run):
    m = quick_run("fod").measured
    auc = m["test AUROC (points)"]
    assert set(auc) == set(fod.ARMS)
    assert all(0 <= a["image_auroc"] <= 100 and 0 <= a["pixel_auroc"] <= 100 for a in auc.values())
    assert m[fod.IMG_GAIN] == pytest.approx(auc["FOD"]["image_auroc"] - auc["reconstruction"]["image_auroc"], abs=0.01)
    assert set(m["last loss parts"]["FOD"]) > {"step", "rec", "kl_intra", "kl_inter"}
    assert set(m["last loss parts"]["reconstruction"]) == {"step", "rec"}
