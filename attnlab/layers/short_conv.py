"""ShortConv: the short causal depthwise convolution of DeltaNet (P12), H3 and Mamba (P23), with a decoding step.

x (B, N, C) -> (B, N, C): y_t = sum_{j<K} w[c, j] x_{t-K+1+j} (+ bias), zeros before the
start (:func:`attnlab.ops.depthwise_conv.causal_depthwise_conv`), optionally SiLU after.
The decoding path (``init_state``/``step``) keeps the last K-1 inputs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnlab.ops.depthwise_conv import causal_depthwise_conv
from attnlab.utils.checks import check_positive_int, fail

__all__ = ["ShortConv"]


class ShortConv(nn.Module):
    """Depthwise causal conv of width ``kernel_size`` over (B, N, C), optional SiLU after (P12 layer).

    Args:
        channels: C.
        kernel_size: K (paper and fla: 4).
        activation: ``"silu"`` or ``None``.
        bias: learnable bias.
    """

    def __init__(self, channels: int, kernel_size: int = 4, activation: str | None = "silu", bias: bool = False):
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("kernel_size", kernel_size)
        if activation not in ("silu", None):
            fail("activation", "'silu' or None", activation)
        self.kernel_size = kernel_size
        self.activation = activation
        conv = nn.Conv1d(channels, channels, kernel_size, groups=channels, bias=bias)
        self.weight = nn.Parameter(conv.weight.detach()[:, 0].clone())
        self.bias = nn.Parameter(conv.bias.detach().clone()) if bias else None

    def _act(self, y):
        return F.silu(y) if self.activation == "silu" else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, N, C) -> (B, N, C), causal."""
        return self._act(causal_depthwise_conv(x, self.weight, self.bias))

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> torch.Tensor:
        """Zero buffer of the last K-1 inputs: (B, K-1, C)."""
        return torch.zeros(batch_size, self.kernel_size - 1, self.weight.shape[0], device=device, dtype=dtype)

    def step(self, x_t: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x_t (B, C) -> (y_t (B, C), new state (B, K-1, C))."""
        window = torch.cat([state, x_t.unsqueeze(1)], dim=1)  # (B, K, C)
        y = torch.einsum("bkc,ck->bc", window, self.weight)
        if self.bias is not None:
            y = y + self.bias
        return self._act(y), window[:, 1:]
