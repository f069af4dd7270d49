"""The bi-directional hybrid framework for video anomaly detection (Shen et al. 2024, P21): middle-frame prediction by
a convolutional temporal transformer and a layer-interactive ConvLSTM bridge, run forwards and backwards in time.

A clip holds ``context`` past frames, ``targets`` middle frames and ``context`` future frames. Per frame,
a CNN encoder (3x3 convolutions with per-frame normalisation and LeakyReLU 0.2; two 2x max-pools)
gives full-resolution features (``widths[0]`` channels) and H/4 features (``widths[2]`` channels).

* Encoder: ``depth`` :class:`~attnlab.models.conv_temporal_transformer.ConvTTransEncoderLayer` over
  the 2 * context context frames (each frame's map one token).
* Twin decoders, each ``depth`` :class:`~attnlab.models.conv_temporal_transformer.ConvTTransDecoderLayer`
  (masked self-attention, cross-attention to the encoder): the forward decoder reads the frames
  shifted by one (the last past frame and the middle frames but the last, teacher-forced) and
  predicts the middle frames in order; the backward decoder reads the time-flipped frames shifted
  the other way (the first future frame and the middle frames but the first) and predicts them in
  reverse order. So middle frame i is predicted from frames before it (forward) and after it
  (backward), never from itself.
* Layer-interactive ConvLSTM bridge, per direction: ConvLSTM alpha runs over the full-resolution
  features of that direction's shifted frames; the decoder's output is upsampled (two stride-2
  transposed convolutions) and ConvLSTM beta runs over it reading alpha's hidden state at each step
  (:class:`attnlab.layers.ConvLSTM` with ``interactive=True``; 5x5 gates).
* Merge: ``merge * forward + (1 - merge) * backward`` (P21: 0.85), a 3x3 convolution and tanh.

``directions="forward"`` is the forward-only ablation (no backward decoder, no merge). Input frames
in [0, 1] (mapped to [-1, 1] inside, as P21's code); output (B, targets, C, H, W) in [0, 1]. Train
with P21's loss, ``attnlab.tasks.video_metrics.ssim_l1_loss`` (the ``moving_shapes_prediction`` task's).

Sized for 32 px frames on a CPU (P21: 256 px, widths 16/32/64, 8 heads, 5 encoder and 5 + 5 decoder
layers): widths 8/16/32, 4 heads, depth 2.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from attnlab.layers import ConvLSTM
from attnlab.models import register_model
from attnlab.models.conv_temporal_transformer import (ConvTTransDecoderLayer, ConvTTransEncoderLayer, FrameNorm,
                                                      per_frame)
from attnlab.utils.checks import check_choice, check_positive_int, check_tensor, describe, fail

__all__ = ["BiDirectionalVAD", "DIRECTIONS", "bidirectional_vad_tiny", "forward_vad_tiny"]

DIRECTIONS = ("both", "forward")


class _ConvUnit(nn.Module):
    """3x3 conv (or 2x2 stride-2 transposed conv), per-image GroupNorm(1), LeakyReLU 0.2, optional 2x max-pool."""

    def __init__(self, cin: int, cout: int, *, pool: bool = False, up: bool = False):
        super().__init__()
        conv = nn.ConvTranspose2d(cin, cout, 2, stride=2) if up else nn.Conv2d(cin, cout, 3, padding=1)
        layers = [conv, nn.GroupNorm(1, cout), nn.LeakyReLU(0.2)] + ([nn.MaxPool2d(2)] if pool else [])
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class BiDirectionalVAD(nn.Module):
    """P21's bi-directional hybrid middle-frame predictor: clip (B, 2c + t, C, H, W) -> middle frames (B, t, C, H, W).

    Args:
        img_size: frame side (a multiple of 4); in_chans: frame channels.
        context, targets: c past (and c future) frames, t middle frames.
        widths: channels of the three encoder convolutions (the first sets the ConvLSTM bridge's width,
            the last the transformer's).
        num_heads: ConvTSA heads (divide ``widths[2]``); depth: encoder layers, and layers per decoder.
        lstm_kernel: ConvLSTM gate convolution size (P21: 5).
        merge: weight of the forward prediction in the merge (P21: 0.85).
        directions: ``"both"`` (P21) or ``"forward"`` (the forward-only ablation).
    """

    def __init__(self, *, img_size: int = 32, in_chans: int = 3, context: int = 3, targets: int = 3,
                 widths: Sequence[int] = (8, 16, 32), num_heads: int = 4, depth: int = 2, lstm_kernel: int = 5,
                 merge: float = 0.85, directions: str = "both"):
        super().__init__()
        check_positive_int("img_size", img_size)
        if img_size % 4:
            fail("img_size", "a multiple of 4 (two 2x poolings)", img_size)
        self.img_size, self.in_chans = img_size, check_positive_int("in_chans", in_chans)
        self.context, self.targets = check_positive_int("context", context), check_positive_int("targets", targets)
        if len(widths) != 3:
            fail("widths", "three channel counts (full, half, quarter resolution)", repr(widths))
        c1, c2, c3 = (check_positive_int("widths", w) for w in widths)
        check_positive_int("depth", depth)
        if not (isinstance(merge, (int, float)) and 0.0 <= merge <= 1.0):
            fail("merge", "a number in [0, 1]", repr(merge))
        self.merge, self.directions = float(merge), check_choice("directions", directions, DIRECTIONS)
        self.enc1 = _ConvUnit(in_chans, c1)
        self.enc2 = _ConvUnit(c1, c2, pool=True)
        self.enc3 = _ConvUnit(c2, c3, pool=True)
        self.encoder = nn.ModuleList(ConvTTransEncoderLayer(c3, num_heads) for _ in range(depth))
        self.enc_norm = FrameNorm(c3)
        names = ("fwd", "bwd") if directions == "both" else ("fwd",)  # ModuleDict keys (not "forward")
        self.decoders = nn.ModuleDict({d: nn.ModuleList(ConvTTransDecoderLayer(c3, num_heads) for _ in range(depth))
                                       for d in names})
        self.dec_norm = FrameNorm(c3)
        self.up = nn.Sequential(_ConvUnit(c3, c2, up=True), _ConvUnit(c2, c1, up=True))
        self.alpha = nn.ModuleDict({d: ConvLSTM(c1, c1, lstm_kernel) for d in names})
        self.beta = nn.ModuleDict({d: ConvLSTM(c1, c1, lstm_kernel, interactive=True) for d in names})
        self.head = nn.Conv2d(c1, in_chans, 3, padding=1)

    def _check(self, clip: object) -> torch.Tensor:
        check_tensor("clip", clip, ndim=5, floating=True)
        t = 2 * self.context + self.targets
        expected = (t, self.in_chans, self.img_size, self.img_size)
        if tuple(clip.shape[1:]) != expected:
            fail("clip", f"shape (B, {', '.join(map(str, expected))}) (past, middle and future frames)",
                 describe(clip))
        return clip

    def _direction(self, name: str, full: torch.Tensor, low: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """One pipeline: ConvLSTM alpha over ``full``, the decoder over ``low`` -> upsampled -> ConvLSTM beta."""
        hidden_alpha, _ = self.alpha[name](full)
        d = low
        for layer in self.decoders[name]:
            d = layer(d, memory)
        up = per_frame(self.up, self.dec_norm(d))
        out, _ = self.beta[name](up, hidden_alpha)
        return out

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        """(B, 2c + t, C, H, W) in [0, 1] -> predicted middle frames (B, t, C, H, W) in [0, 1]."""
        x = self._check(clip) * 2.0 - 1.0
        c, t = self.context, self.targets
        f1 = per_frame(self.enc1, x)
        f3 = per_frame(self.enc3, per_frame(self.enc2, f1))
        memory = torch.cat([f3[:, :c], f3[:, c + t:]], dim=1)
        for layer in self.encoder:
            memory = layer(memory)
        memory = self.enc_norm(memory)
        fwd = self._direction("fwd", f1[:, c - 1: c + t - 1], f3[:, c - 1: c + t - 1], memory)
        if self.directions == "both":
            bwd = self._direction("bwd", f1[:, c + 1: c + t + 1].flip(1), f3[:, c + 1: c + t + 1].flip(1),
                                  memory).flip(1)
            fwd = self.merge * fwd + (1.0 - self.merge) * bwd
        return (torch.tanh(per_frame(self.head, fwd)) + 1.0) * 0.5


@register_model("bidirectional_vad_tiny", paper="P21")
def bidirectional_vad_tiny(**kwargs) -> BiDirectionalVAD:
    """P21's bi-directional hybrid (ConvTTrans + LI-ConvLSTM bridge) for 32 px clips of 3 + 3 + 3 frames."""
    return BiDirectionalVAD(**{"directions": "both", **kwargs})


@register_model("forward_vad_tiny", paper="P21")
def forward_vad_tiny(**kwargs) -> BiDirectionalVAD:
    """P21's forward-only ablation: the same network without the backward decoder, bridge and merge."""
    return BiDirectionalVAD(**{"directions": "forward", **kwargs})
