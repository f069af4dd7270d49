"""attnlab.layers.mlp: Mlp and GluMlp against their formulas, make_ffn's choices and widths."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnlab import models
from attnlab.layers.mlp import GluMlp, Mlp, make_ffn
from attnlab.models import SequenceModel


def test_mlp_and_glu_equal_their_formulas():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    mlp = Mlp(6, 10, 4).double()
    want = F.linear(F.gelu(F.linear(x, mlp.fc1.weight, mlp.fc1.bias)), mlp.fc2.weight, mlp.fc2.bias)
    torch.testing.assert_close(mlp(x), want, atol=1e-12, rtol=1e-12)
    glu = GluMlp(6, 5).double()
    value, gate = F.linear(x, glu.fc1.weight, glu.fc1.bias).split(5, dim=-1)  # value first, then gate
    want = F.linear(value * F.silu(gate), glu.fc2.weight, glu.fc2.bias)
    torch.testing.assert_close(glu(x), want, atol=1e-12, rtol=1e-12)


def test_make_ffn_widths_and_choices():
    assert make_ffn("mlp", 48, 4.0).fc1.out_features == 192
    assert make_ffn("glu", 48, 4.0).fc2.in_features == 128  # 2/3 of 192: about the MLP's parameters
    assert make_ffn("none", 48, 4.0) is None and make_ffn("mlp", 48, 0) is None
    with pytest.raises(ValueError, match=r"ffn: expected one of"):
        make_ffn("moe", 48, 4.0)
    with pytest.raises(ValueError, match=r"mlp_ratio: expected a number > 0"):
        make_ffn("mlp", 48, -1.0)


def test_glu_ffn_has_about_the_mlp_parameters():
    mlp = SequenceModel(vocab_size=10, dim=48, depth=1, ffn="mlp")
    glu = SequenceModel(vocab_size=10, dim=48, depth=1, ffn="glu")
    none = SequenceModel(vocab_size=10, dim=48, depth=1, ffn="none")
    assert abs(models.count_parameters(glu) - models.count_parameters(mlp)) < 0.02 * models.count_parameters(mlp)
    assert models.count_parameters(none) < models.count_parameters(mlp) - 48 * 48 * 7
