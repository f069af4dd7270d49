"""P24 probes: KQ / OV statistics and the debiased-GD predictor, on hand-built attention layers."""
from __future__ import annotations

import pytest
import torch

from attnlab.analysis.icl_patterns import fit_scale_r2, gd_prediction, kq_pattern, ov_pattern
from attnlab.models import ICLAttention
from attnlab.tasks import create


def _ideal_layer(d: int, omega: float, mu: float) -> ICLAttention:
    """Two heads with KQ = +-omega diag(I_d, 0) and OV = +-mu e_{d+1}: P24's converged structure."""
    m = ICLAttention(d, num_heads=2)
    e = d + 1
    proj = torch.diag(torch.tensor([1.0] * d + [0.0]))
    with torch.no_grad():
        m.q_proj.weight.copy_(torch.cat([proj, -proj]) * omega**0.5)
        m.k_proj.weight.copy_(torch.cat([proj, proj]) * omega**0.5)
        m.v_proj.weight.copy_(torch.cat([torch.eye(e), torch.eye(e)]))
        wo = torch.zeros(1, 2 * e)
        wo[0, e - 1], wo[0, 2 * e - 1] = mu, -mu
        m.o_proj.weight.copy_(wo)
    return m


def test_ideal_structure_scores_zero_on_every_statistic():
    m = _ideal_layer(5, omega=0.3, mu=2.0)
    kq, ov = kq_pattern(m.kq()), ov_pattern(m.ov())
    assert kq["offdiag_ratio"] == pytest.approx(0, abs=1e-12) and kq["label_ratio"] == pytest.approx(0, abs=1e-12)
    assert kq["diag_cv"] == pytest.approx(0, abs=1e-6) and kq["omega"] == pytest.approx([0.3, -0.3], rel=1e-5)
    assert ov["covariate_ratio"] == pytest.approx(0, abs=1e-12) and ov["zero_sum"] == pytest.approx(0, abs=1e-12)
    assert ov["mu"] == pytest.approx([2.0, -2.0])


def test_statistics_detect_broken_structure():
    kq = torch.eye(6).repeat(3, 1, 1)
    kq[0, 0, 1] = 1.0  # one off-diagonal entry, energy 1 over diagonal energy 15 (3 heads x 5)
    kq[1, 0, 5] = 2.0  # a key-label column entry, energy 4
    kq[1, 5, 1] = 3.0  # a query-label row entry (untrainable: reported apart), energy 9 + eye's (d, d) entries 3
    kq[2, 0, 0] = 3.0  # an inhomogeneous diagonal
    s = kq_pattern(kq)
    assert s["offdiag_ratio"] == pytest.approx(1 / 23) and s["label_ratio"] == pytest.approx(4 / 23)
    assert s["label_row_ratio"] == pytest.approx(12 / 23)
    assert s["diag_cv"] == pytest.approx((0.8 / 1.4) / 3)  # head 2: diag (3,1,1,1,1), std 0.8, mean 1.4
    o = ov_pattern(torch.tensor([[1.0, 0, 0, 2.0], [0, 0, 0, 2.0]]))
    assert o["covariate_ratio"] == pytest.approx(1 / 8) and o["zero_sum"] == pytest.approx(1.0)


def test_ideal_layer_computes_one_step_of_debiased_gd():
    """First order in omega: yhat = (2 mu omega / sqrt(d+1)) (1/L) sum_i (y_i - ybar) x_i^T x_q."""
    d, omega, mu = 5, 1e-3, 50.0
    m = _ideal_layer(d, omega, mu).double()
    b = create("icl_regression", dim=d, num_examples=40).batch("val", 0, 512)
    z = b.inputs.double()
    pred = m(z)[:, -1, 0].detach()
    c, r2 = fit_scale_r2(pred, gd_prediction(z))
    assert r2 > 0.999
    assert c == pytest.approx(2 * mu * omega / (d + 1) ** 0.5, rel=1e-2)


def test_gd_prediction_matches_its_formula_and_debiasing_matters():
    z = torch.randn(3, 11, 4, dtype=torch.float64)
    x, y, xq = z[:, :-1, :-1], z[:, :-1, -1], z[:, -1, :-1]
    want = torch.stack([sum((y[b, i] - y[b].mean()) * (x[b, i] @ xq[b]) for i in range(10)) / 10 for b in range(3)])
    torch.testing.assert_close(gd_prediction(z), want)
    z2 = z.clone()
    z2[:, :-1, -1] += 5.0  # a constant shift of the labels: debiased GD ignores it, plain GD does not
    torch.testing.assert_close(gd_prediction(z2), gd_prediction(z))
    assert (gd_prediction(z2, debiased=False) - gd_prediction(z, debiased=False)).abs().max() > 0.1


def test_linear_kind_scales_with_the_fixed_length_norm():
    torch.manual_seed(0)
    a = ICLAttention(3, 2, kind="linear", length_norm=10)
    b = ICLAttention(3, 2, kind="linear")
    b.load_state_dict(a.state_dict())
    z = torch.randn(2, 41, 4)
    torch.testing.assert_close(a(z), b(z) * 4.0)  # 40 context tokens: 1/10 vs 1/40


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"z: expected a tensor \(B, L \+ 1, 6\)"):
        ICLAttention(5)(torch.randn(2, 10, 5))
    with pytest.raises(ValueError, match="kq"):
        kq_pattern(torch.randn(2, 3, 4))
