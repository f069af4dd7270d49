"""ConvLSTM (Shi et al. 2015) with P21's layer-interactive input: a cell may also read another ConvLSTM's hidden state.

``ConvLSTM(in_channels, hidden, kernel_size, interactive)`` runs over a (B, T, C, H, W) sequence:
at step t the gates are one convolution of ``[x_t, h_{t-1}]`` (and, when ``interactive``, of the
other layer's hidden state at the same step, ``[x_t, h_{t-1}, h'_t]``: P21's ConvLSTM beta reading
ConvLSTM alpha), group-normalised as in P21's code, then ``i, f, o = sigmoid``, ``g = tanh``,
``c_t = f c_{t-1} + i g``, ``h_t = o tanh(c_t)``. States start at zero. Steps run over ``unbind``
views and one ``stack`` (no per-step slicing of a tensor that autograd must then scatter back).
"""
from __future__ import annotations

import torch
from torch import nn

from attnlab.utils.checks import check_positive_int, check_tensor, describe, fail

__all__ = ["ConvLSTM"]


class ConvLSTM(nn.Module):
    """A ConvLSTM layer: (B, T, C_in, H, W) -> hidden states (B, T, hidden, H, W).

    Args:
        in_channels: C_in; hidden: channels of h and c; kernel_size: odd size of the gate convolution
            (P21: 5); interactive: the gates also read ``extra`` (B, T, hidden, H, W), another layer's
            hidden states (P21's layer-interactive bridge); groups: GroupNorm groups over the 4 * hidden
            gate channels (P21's code: 4 * hidden // 32, at least 1).
    """

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 5, interactive: bool = False,
                 groups: int | None = None):
        super().__init__()
        check_positive_int("in_channels", in_channels)
        self.hidden = check_positive_int("hidden", hidden)
        check_positive_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            fail("kernel_size", "an odd int (same-size gates)", kernel_size)
        groups = max(4 * hidden // 32, 1) if groups is None else check_positive_int("groups", groups)
        if (4 * hidden) % groups:
            fail("groups", f"a divisor of 4 * hidden = {4 * hidden}", groups)
        self.interactive = bool(interactive)
        inputs = in_channels + hidden * (2 if interactive else 1)
        self.gates = nn.Conv2d(inputs, 4 * hidden, kernel_size, padding=kernel_size // 2)
        self.norm = nn.GroupNorm(groups, 4 * hidden)

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Run over the sequence; returns (hidden states (B, T, hidden, H, W), last cell state (B, hidden, H, W))."""
        check_tensor("x", x, ndim=5, floating=True)
        b, _, _, h, w = x.shape
        if self.interactive != (extra is not None):
            fail("extra", "the other layer's hidden states (B, T, hidden, H, W)" if self.interactive
                 else "None (this ConvLSTM is not interactive)", describe(extra))
        if extra is not None and tuple(extra.shape) != (b, x.shape[1], self.hidden, h, w):
            fail("extra", f"shape {(b, x.shape[1], self.hidden, h, w)}", describe(extra))
        hx = x.new_zeros(b, self.hidden, h, w)
        cx = x.new_zeros(b, self.hidden, h, w)
        extras = extra.unbind(1) if extra is not None else [None] * x.shape[1]
        outs = []
        for xt, et in zip(x.unbind(1), extras):
            parts = [xt, hx] + ([et] if et is not None else [])
            i, f, g, o = self.norm(self.gates(torch.cat(parts, dim=1))).chunk(4, dim=1)
            cx = torch.sigmoid(f) * cx + torch.sigmoid(i) * torch.tanh(g)
            hx = torch.sigmoid(o) * torch.tanh(cx)
            outs.append(hx)
        return torch.stack(outs, dim=1), cx
