"""Isomer: level-isomerous appearance-motion fusion for zero-shot video object segmentation (Yuan et al. 2023, P30).

A two-stream segmenter: an appearance encoder (RGB frame) and a motion encoder (optical flow), four
stages each; at every stage the two features are concatenated, projected by a 1x1 convolution
and fused by a transformer block; an all-MLP head (SegFormer's, as P30) upsamples the four fused
stages to the first stage's resolution and predicts per-pixel logits. The fusion is per stage:

* ``"vanilla"`` — a plain pre-norm transformer block with multi-head softmax self-attention over
  the stage's tokens (P30's baseline, O(N^2 C));
* ``"cst"`` — the Context-Sharing Transformer: the ``context_sharing`` mixer (one softmax-pooled
  context per frame, added to every position through a zero-initialised MLP) and the FFN, O(N C);
* ``"sgst"`` — the Semantic Gathering-Scattering Transformer: the ``gathering_scattering`` mixer
  (foreground / background queries attend to K soft tokens of their side) and one FFN per side,
  applied to that side's positions only (:class:`SGSTBlock`), O(N K C).

Isomer is ``("cst", "cst", "sgst", "sgst")`` (low-level stages share context, high-level stages are
semantic); the baseline is ``("vanilla",) * 4``. ``sgst_discard_scatter=True`` is the behaviour of
DLUT-yyc/Isomer's code, whose SGST returns its projected input (the scattered result is discarded).

Sized for 32 px frames on a CPU (the paper: MiT-b0 / Swin-T backbones at 512 px, stages at strides
4-32): stages at strides 1, 2, 4, 8, widths 16/24/32/48, so the first fusion sees 32 x 32 = 1024
tokens. Input (B, 5, H, W): RGB in channels 0-2, flow in 3-4 (the ``moving_shapes_zvos`` task);
output (B, H*W, num_classes) logits.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from attnlab import mixers
from attnlab.layers import MixerBlock, Mlp
from attnlab.models import register_model
from attnlab.mixers.gathering_scattering import GatheringScattering
from attnlab.utils.checks import check_choice, check_positive_int, check_tensor, describe, fail

__all__ = ["ConvStage", "SGSTBlock", "FusionStage", "IsomerSegmenter", "FUSIONS", "isomer_tiny",
           "vanilla_fusion_tiny"]

FUSIONS = ("vanilla", "cst", "sgst")


class ConvStage(nn.Module):
    """One encoder stage: 3x3 conv (stride ``stride``) -> BN -> GELU -> 3x3 conv -> BN -> GELU; (B, C_in, H, W) ->
    (B, C_out, H / stride, W / stride)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.GELU(),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H', W')."""
        return self.body(x)


class SGSTBlock(nn.Module):
    """SGST as a pre-norm block: x + GS(norm1 x), then each side's FFN on its own positions; (B, N, C) -> (B, N, C).

    The foreground FFN runs on the foreground positions only and the background FFN on the background
    ones (P30's two FFN branches); positions on neither side keep the attention residual only. With
    ``mixer.discard_scatter`` (the official code's behaviour) the block returns its input.
    """

    def __init__(self, dim: int, mixer: GatheringScattering, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.mixer = mixer
        self.norm2 = nn.LayerNorm(dim)
        hidden = max(int(round(mlp_ratio * dim)), 1)
        self.ffn_fg = Mlp(dim, hidden)
        self.ffn_bg = Mlp(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        if self.mixer.discard_scatter:  # DLUT-yyc/Isomer: the block's result never reaches its output
            return x
        h, fg, bg = self.mixer.forward_split(self.norm1(x))
        x = x + h
        rows = self.norm2(x).reshape(-1, x.shape[-1])
        out = torch.zeros_like(rows)
        for side, ffn in ((fg, self.ffn_fg), (bg, self.ffn_bg)):
            idx = side.reshape(-1).nonzero().flatten()
            if idx.numel():
                out = out.index_put((idx,), ffn(rows[idx]))
        return x + out.view_as(x)


class FusionStage(nn.Module):
    """Fuse one stage: concat(appearance, motion) -> 1x1 conv -> a transformer block of kind ``fusion``.

    (B, C, h, w) twice -> (B, C, h, w). ``fusion``: one of :data:`FUSIONS` (module docstring).
    """

    def __init__(self, dim: int, fusion: str, *, num_heads: int = 1, num_tokens: int = 8, tau: float = 0.5,
                 mlp_ratio: float = 4.0, cst_ratio: float = 16.0, discard_scatter: bool = False):
        super().__init__()
        self.fusion = check_choice("fusion", fusion, FUSIONS)
        self.project = nn.Conv2d(2 * dim, dim, 1)
        if fusion == "sgst":
            gs = mixers.create("gathering_scattering", dim, num_heads=num_heads, num_tokens=num_tokens, tau=tau,
                               discard_scatter=discard_scatter)
            self.block = SGSTBlock(dim, gs, mlp_ratio)
        else:
            mixer = (mixers.create("softmax", dim, num_heads=num_heads) if fusion == "vanilla"
                     else mixers.create("context_sharing", dim, ratio=cst_ratio))
            self.block = MixerBlock(dim, mixer, ffn="mlp", mlp_ratio=mlp_ratio)

    def forward(self, appearance: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """Two (B, C, h, w) maps -> the fused (B, C, h, w) map."""
        z = self.project(torch.cat([appearance, motion], dim=1))
        b, c, h, w = z.shape
        tokens = self.block(z.flatten(2).transpose(1, 2))
        return tokens.transpose(1, 2).reshape(b, c, h, w)


def _per_stage(arg: str, value, n: int) -> tuple:
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,) * n
    if len(values) != n:
        fail(arg, f"one value per stage ({n})", repr(value))
    return values


class IsomerSegmenter(nn.Module):
    """Two-stream ZVOS segmenter with per-stage appearance-motion fusion (P30): (B, 5, H, W) -> (B, H*W, classes).

    Args:
        img_size: frame side (a multiple of the total stride).
        in_chans: input channels, the frame's then the flow's (the ``moving_shapes_zvos`` task: 3 + 2);
            flow_chans: how many of them (the last ones) are the flow.
        widths: channels per stage; strides: downsampling of each stage (the first stage's from the input).
        fusion: per stage, one of :data:`FUSIONS` (a single name for every stage).
        num_heads: per stage, heads of the vanilla / SGST attention; num_tokens: per stage, SGST's K tokens per side.
        tau: SGST's heat-map threshold; mlp_ratio: FFN width of every fusion block; cst_ratio: CST's transform width.
        decoder_dim: channels of the all-MLP head; num_classes: output classes per pixel.
        sgst_discard_scatter: DLUT-yyc/Isomer's behaviour (SGST returns its projected input).
    """

    def __init__(self, *, img_size: int = 32, in_chans: int = 5, flow_chans: int = 2,
                 widths: Sequence[int] = (16, 24, 32, 48), strides: Sequence[int] = (1, 2, 2, 2),
                 fusion: str | Sequence[str] = ("cst", "cst", "sgst", "sgst"), num_heads=(1, 1, 2, 2),
                 num_tokens=(8, 8, 8, 4), tau: float = 0.5, mlp_ratio: float = 4.0, cst_ratio: float = 16.0,
                 decoder_dim: int = 32, num_classes: int = 2, sgst_discard_scatter: bool = False):
        super().__init__()
        n = len(widths)
        if n < 1 or len(strides) != n:
            fail("strides", f"one stride per stage ({n} widths)", repr(strides))
        for arg, vals in (("widths", widths), ("strides", strides)):
            for v in vals:
                check_positive_int(arg, v)
        check_positive_int("img_size", img_size)
        total = math.prod(strides)
        if img_size % total:
            fail("img_size", f"a multiple of the total stride {total}", img_size)
        check_positive_int("flow_chans", flow_chans)
        if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans <= flow_chans:
            fail("in_chans", f"an int > flow_chans={flow_chans} (frame channels, then flow channels)", repr(in_chans))
        self.img_size, self.in_chans, self.flow_chans = img_size, in_chans, flow_chans
        self.fusion = _per_stage("fusion", fusion, n)
        heads, tokens = _per_stage("num_heads", num_heads, n), _per_stage("num_tokens", num_tokens, n)
        chans = [(in_chans - flow_chans, flow_chans)] + [(w, w) for w in widths[:-1]]
        self.appearance = nn.ModuleList(ConvStage(c[0], w, s) for c, w, s in zip(chans, widths, strides))
        self.motion = nn.ModuleList(ConvStage(c[1], w, s) for c, w, s in zip(chans, widths, strides))
        self.fuse = nn.ModuleList(
            FusionStage(w, f, num_heads=hd, num_tokens=k, tau=tau, mlp_ratio=mlp_ratio, cst_ratio=cst_ratio,
                        discard_scatter=sgst_discard_scatter)
            for w, f, hd, k in zip(widths, self.fusion, heads, tokens))
        self.lateral = nn.ModuleList(nn.Conv2d(w, decoder_dim, 1) for w in widths)
        self.merge = nn.Sequential(nn.Conv2d(n * decoder_dim, decoder_dim, 1, bias=False),
                                   nn.BatchNorm2d(decoder_dim), nn.ReLU())
        self.classify = nn.Conv2d(decoder_dim, num_classes, 1)
        self.num_classes = num_classes

    def stage_shapes(self) -> list[tuple[int, int, int]]:
        """(channels, height, width) of each stage's appearance / motion features (what each fusion stage takes)."""
        shapes, side = [], self.img_size
        for enc, fuse in zip(self.appearance, self.fuse):
            side //= enc.body[0].stride[0]
            shapes.append((fuse.project.out_channels, side, side))
        return shapes

    def stage_inputs(self, batch: int, *, seed: int = 0, requires_grad: bool = False
                     ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Standard-normal appearance and motion maps of every stage's shape (batch ``batch``, fixed ``seed``):
        inputs for timing or counting the fusion stages alone."""
        g = torch.Generator().manual_seed(seed)
        dtype = next(self.parameters()).dtype
        maps = [[torch.randn(batch, *shape, generator=g, dtype=dtype).requires_grad_(requires_grad)
                 for shape in self.stage_shapes()] for _ in range(2)]
        return maps[0], maps[1]

    def fuse_all(self, appearances: Sequence[torch.Tensor], motions: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The fusion stages alone: per-stage appearance and motion maps (B, C, h, w) -> fused maps (what P30's
        speed-up is about; timed and counted by the reproduction and ``attnlab bench isomer_fusion``)."""
        return [fuse(a, m) for fuse, a, m in zip(self.fuse, appearances, motions)]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The fused map of every stage for input (B, in_chans, H, W)."""
        check_tensor("x", x, ndim=4, floating=True)
        if x.shape[1] != self.in_chans or x.shape[-1] != self.img_size or x.shape[-2] != self.img_size:
            fail("x", f"shape (B, {self.in_chans}, {self.img_size}, {self.img_size}) (frame channels, then flow)",
                 describe(x))
        split = self.in_chans - self.flow_chans
        a, m = x[:, :split], x[:, split:]
        fused = []
        for enc_a, enc_m, fuse in zip(self.appearance, self.motion, self.fuse):
            a, m = enc_a(a), enc_m(m)
            fused.append(fuse(a, m))
        return fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> per-pixel logits (B, H*W, num_classes)."""
        fused = self.features(x)
        size = fused[0].shape[-2:]
        ups = [F.interpolate(lat(f), size=size, mode="bilinear", align_corners=False) if f.shape[-2:] != size
               else lat(f) for lat, f in zip(self.lateral, fused)]
        logits = self.classify(self.merge(torch.cat(ups, dim=1)))
        if logits.shape[-1] != self.img_size:
            logits = F.interpolate(logits, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
        return logits.flatten(2).transpose(1, 2)


@register_model("isomer_tiny", paper="P30")
def isomer_tiny(**kwargs) -> IsomerSegmenter:
    """Isomer for 32 px ZVOS: CST fusion at the two low-level stages, SGST at the two high-level ones."""
    return IsomerSegmenter(**{"fusion": ("cst", "cst", "sgst", "sgst"), **kwargs})


@register_model("vanilla_fusion_tiny", paper="P30")
def vanilla_fusion_tiny(**kwargs) -> IsomerSegmenter:
    """P30's baseline: the same two-stream segmenter with a vanilla transformer block fusing every stage."""
    return IsomerSegmenter(**{"fusion": "vanilla", **kwargs})
