"""LR sensitivity on hand-made numbers; attention-logit and output-logit probes (P02)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import attnlab.mixers as mixers
from attnlab.analysis import capped_losses, lr_sensitivity, lr_sweep, max_attention_logit, output_log_z


def test_lr_sensitivity_hand_numbers():
    init = 4.0
    losses = {1e-3: 2.5, 1e-2: 2.0, 1e-1: 3.0, 1.0: float("nan"), 3.0: 9.0}
    # capped: 2.5, 2.0, 3.0, 4.0 (NaN), 4.0 (cap); best 2.0 -> mean of 0.5, 0, 1, 2, 2 = 1.1
    assert capped_losses(losses, init) == {1e-3: 2.5, 1e-2: 2.0, 1e-1: 3.0, 1.0: 4.0, 3.0: 4.0}
    assert lr_sensitivity(losses, init) == pytest.approx(1.1, abs=1e-12)
    assert lr_sensitivity({0.1: 1.0, 0.3: 1.0}, 5.0) == 0.0
    assert lr_sensitivity({0.1: float("inf")}, 5.0) == 0.0  # one point is its own best
    # P02's notes: qk-LN's curve is flatter than the baseline's on the same grid
    base = {1e-3: 2.29, 3e-3: 2.22, 1e-2: 1.97, 3e-2: 2.23, 1e-1: 2.30, 3e-1: 3.86}
    qkln = {1e-3: 2.27, 3e-3: 2.21, 1e-2: 1.90, 3e-2: 2.01, 1e-1: 2.16, 3e-1: 2.34}
    assert lr_sensitivity(base, math.log(64)) == pytest.approx((0.32 + 0.25 + 0 + 0.26 + 0.33 + 1.89) / 6)
    assert lr_sensitivity(qkln, math.log(64)) < lr_sensitivity(base, math.log(64))


def test_lr_sensitivity_bad_input():
    with pytest.raises(TypeError, match="final_losses_by_lr: expected a non-empty dict"):
        lr_sensitivity({}, 1.0)
    with pytest.raises(ValueError, match="init_loss: expected a finite number"):
        lr_sensitivity({0.1: 1.0}, float("nan"))
    with pytest.raises(ValueError, match=r"final_losses_by_lr key \(lr\): expected a positive finite learning rate"):
        lr_sensitivity({-0.1: 1.0}, 2.0)
    assert lr_sweep([0.1, 0.3], lambda lr: 10 * lr) == {0.1: 1.0, 0.3: pytest.approx(3.0)}


def _scale_qk(mixer, c):
    with torch.no_grad():
        d = mixer.qkv.weight.shape[1]
        mixer.qkv.weight[: 2 * d] *= c  # rows of q and k; v untouched


@pytest.mark.parametrize("causal", [False, True])
def test_max_attention_logit_grows_with_qk_scale(causal):
    torch.manual_seed(0)
    mixer = mixers.create("softmax", 32, num_heads=4)
    x = torch.randn(2, 9, 32)

    class Wrap(nn.Module):  # a "model" holding the mixer, as record_attention expects
        def __init__(self):
            super().__init__()
            self.attn = mixer

        def forward(self, x):
            return self.attn(x, causal=causal)

    model = Wrap()
    q, k, _ = mixer.qkv(x).chunk(3, dim=-1)
    q, k = q.view(2, 9, 4, 8).transpose(1, 2), k.view(2, 9, 4, 8).transpose(1, 2)
    expect = (q @ k.transpose(-1, -2) / math.sqrt(8)).abs().max().item()
    base = max_attention_logit(model, x)
    assert base == pytest.approx(expect, rel=1e-5)
    assert max_attention_logit(model, x, per_layer=True) == {"attn": pytest.approx(expect, rel=1e-5)}
    _scale_qk(mixer, 10.0)
    assert max_attention_logit(model, x) == pytest.approx(100.0 * base, rel=1e-4)  # logits are bilinear in q, k
    model.train()
    max_attention_logit(model, x)
    assert model.training  # mode restored


def test_qk_layernorm_bounds_the_logit():
    # With per-head LayerNorm (unit gain) |q|, |k| <= sqrt(d_h), so |q.k|/sqrt(d_h) <= sqrt(d_h),
    # whatever the scale of the projection weights.
    torch.manual_seed(0)
    mixer = mixers.create("softmax_qknorm", 32, num_heads=4)
    x = torch.randn(2, 9, 32)
    before = max_attention_logit(mixer, x)
    _scale_qk(mixer, 100.0)
    after = max_attention_logit(mixer, x)
    assert after <= math.sqrt(8) + 1e-5 and after == pytest.approx(before, rel=1e-3)


def test_probes_refuse_models_without_attention_and_log_z():
    with pytest.raises(ValueError, match="model: expected a model with softmax attention"):
        max_attention_logit(nn.Linear(4, 4), torch.randn(2, 4))
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module"):
        max_attention_logit(lambda x: x, torch.randn(2, 4))
    lin = nn.Linear(3, 5, bias=False)
    nn.init.zeros_(lin.weight)
    assert output_log_z(lin, torch.randn(4, 3)) == pytest.approx(math.log(5))  # uniform logits: log V
    with torch.no_grad():
        lin.weight.fill_(1.0)
    x = torch.randn(4, 3)
    expect = (x.sum(-1, keepdim=True) + math.log(5)).mean().item()  # all 5 logits equal sum(x)
    assert output_log_z(lin, x) == pytest.approx(expect, rel=1e-6)
