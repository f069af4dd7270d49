"""P21's convolutional temporal transformer (ConvTTrans): layers whose tokens are whole feature maps, one per frame.

Every tensor here is a sequence of frame feature maps (B, T, C, H, W).

* :class:`ConvTSA` — convolutional temporal self-attention: 3x3 convolutions make query, key and value
  maps, :func:`attnlab.ops.frame_attention.frame_attention` attends across frames (each head's map is
  one token, scores scaled by sqrt(channels per head * H * W)), a 3x3 convolution mixes the heads;
* :class:`ConvFFN` — the feed-forward network with 3x3 convolutions in place of linear layers
  (C -> 4C, LeakyReLU 0.2, 4C -> C);
* :class:`FrameNorm` — normalisation of each frame's map on its own (GroupNorm with one group);
* :class:`ConvTTransEncoderLayer` — pre-norm ConvTSA over the context frames, then the ConvFFN;
* :class:`ConvTTransDecoderLayer` — pre-norm masked ConvTSA over the decoder's frames (frame i sees
  frames <= i), ConvTSA from them to the encoder's output, then the ConvFFN.

Deviation from P21's code: it normalises with BatchNorm over all B * T frames without running
statistics, so a frame's output depends on the other frames of the batch (and on the frame it is
asked to predict, through the batch statistics); :class:`FrameNorm` normalises each frame alone.
"""
from __future__ import annotations

import torch
from torch import nn

from attnlab.ops.frame_attention import frame_attention
from attnlab.utils.checks import check_positive_int, check_tensor, describe, fail

__all__ = ["FrameNorm", "ConvTSA", "ConvFFN", "ConvTTransEncoderLayer", "ConvTTransDecoderLayer", "per_frame"]


def per_frame(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply an image module to every frame of (B, T, C, H, W): -> (B, T, C', H', W')."""
    b, t = x.shape[:2]
    y = module(x.reshape(b * t, *x.shape[2:]))
    return y.reshape(b, t, *y.shape[1:])


class FrameNorm(nn.Module):
    """Normalise each frame's (C, H, W) map on its own, with a per-channel affine map; (B, T, C, H, W) -> same."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.GroupNorm(1, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) -> (B, T, C, H, W)."""
        return per_frame(self.norm, x)


class ConvTSA(nn.Module):
    """Convolutional temporal self-attention (P21): 3x3 conv Q, K, V; frame attention; 3x3 conv out.

    ``forward(x, memory=None, causal=False)``: queries from x (B, Tq, C, H, W), keys and values from
    ``memory`` (B, Tk, C, H, W) (cross-attention) or from x itself; ``causal``: frame i sees frames <= i.
    """

    def __init__(self, channels: int, num_heads: int):
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("num_heads", num_heads)
        if channels % num_heads:
            fail("num_heads", f"a divisor of channels={channels}", num_heads)
        self.num_heads = num_heads
        self.q = nn.Conv2d(channels, channels, 3, padding=1)
        self.k = nn.Conv2d(channels, channels, 3, padding=1)
        self.v = nn.Conv2d(channels, channels, 3, padding=1)
        self.out = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None, *, causal: bool = False) -> torch.Tensor:
        """(B, Tq, C, H, W) -> (B, Tq, C, H, W)."""
        check_tensor("x", x, ndim=5, floating=True)
        src = x if memory is None else memory
        o = frame_attention(per_frame(self.q, x), per_frame(self.k, src), per_frame(self.v, src),
                            num_heads=self.num_heads, causal=causal)
        return per_frame(self.out, o)


class ConvFFN(nn.Module):
    """P21's convolutional feed-forward network: 3x3 conv C -> 4C, LeakyReLU(0.2), 3x3 conv 4C -> C, per frame."""

    def __init__(self, channels: int, ratio: int = 4):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, ratio * channels, 3, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(ratio * channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) -> (B, T, C, H, W)."""
        return per_frame(self.body, x)


class ConvTTransEncoderLayer(nn.Module):
    """x + ConvTSA(norm x) over all frames, then x + ConvFFN(norm x); (B, T, C, H, W) -> same."""

    def __init__(self, channels: int, num_heads: int):
        super().__init__()
        self.norm1, self.attn = FrameNorm(channels), ConvTSA(channels, num_heads)
        self.norm2, self.ffn = FrameNorm(channels), ConvFFN(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) -> (B, T, C, H, W)."""
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class ConvTTransDecoderLayer(nn.Module):
    """x + masked ConvTSA(norm x), x + ConvTSA(norm x -> memory), x + ConvFFN(norm x); (B, T, C, H, W) -> same."""

    def __init__(self, channels: int, num_heads: int):
        super().__init__()
        self.norm1, self.self_attn = FrameNorm(channels), ConvTSA(channels, num_heads)
        self.norm2, self.cross_attn = FrameNorm(channels), ConvTSA(channels, num_heads)
        self.norm3, self.ffn = FrameNorm(channels), ConvFFN(channels)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Decoder frames x (B, T, C, H, W) attending to encoder output ``memory`` (B, Tm, C, H, W)."""
        if memory.dim() != 5 or memory.shape[0] != x.shape[0] or memory.shape[2:] != x.shape[2:]:
            fail("memory", f"encoder output (B, Tm, C, H, W) matching x {tuple(x.shape)}", describe(memory))
        x = x + self.self_attn(self.norm1(x), causal=True)
        x = x + self.cross_attn(self.norm2(x), memory)
        return x + self.ffn(self.norm3(x))
