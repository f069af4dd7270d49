"""attnlab.layers.short_conv: ShortConv is the causal depthwise conv (+ SiLU), and its decoding step, token
by token, equals the parallel forward (fp64, 1e-12)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnlab.layers.short_conv import ShortConv


@pytest.mark.parametrize("activation, bias", [("silu", False), (None, True)])
def test_forward_is_left_padded_depthwise_conv1d(activation, bias):
    torch.manual_seed(0)
    conv = ShortConv(6, kernel_size=4, activation=activation, bias=bias).double()
    x = torch.randn(2, 11, 6, dtype=torch.float64)
    y = F.conv1d(F.pad(x.transpose(1, 2), (3, 0)), conv.weight[:, None], conv.bias, groups=6).transpose(1, 2)
    torch.testing.assert_close(conv(x), F.silu(y) if activation == "silu" else y, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("kernel_size", [1, 4])
def test_step_decoding_equals_the_forward(kernel_size):
    torch.manual_seed(0)
    conv = ShortConv(5, kernel_size=kernel_size, bias=True).double()
    x = torch.randn(3, 9, 5, dtype=torch.float64)
    state = conv.init_state(3, dtype=torch.float64)
    assert state.shape == (3, kernel_size - 1, 5)
    outs = []
    for x_t in x.unbind(1):
        y_t, state = conv.step(x_t, state)
        outs.append(y_t)
    torch.testing.assert_close(torch.stack(outs, 1), conv(x), atol=1e-12, rtol=1e-12)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"activation: expected 'silu' or None"):
        ShortConv(4, activation="gelu")
    with pytest.raises(ValueError, match=r"kernel_size: expected a positive int"):
        ShortConv(4, kernel_size=0)
