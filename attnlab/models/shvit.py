"""SHViT: single-head attention on a fraction of the channels, behind a large-stride stem (Yun & Ro 2024, P29).

Macro design: a stem of stride-2 3x3 Conv-BN layers (four, a 16x patchify, in
the paper) and three stages; the first stage has only convolutions (depthwise
3x3 + FFN), the later ones add the single-head self-attention (SHSA) mixer.
SHSA splits the channels into [p, C - p]: GroupNorm(1) on the first p, one
attention head with queries and keys of size ``qk_dim`` (16) and values of
width p, then ReLU and a 1x1 Conv-BN over the concatenation [attended p,
untouched C - p], so the passed-through channels are mixed only by that output
projection. Everything runs in NCHW with BatchNorm, as in the paper. Module
names follow timm's ``SHViT`` (identity key mapping).
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from attnlab.utils.checks import check_positive_int, describe, fail
from attnlab.models import register_model
from attnlab.ops.attention import attention

__all__ = ["SHSA", "SHViT", "shvit_tiny", "shvit_small"]


class Conv2dNorm(nn.Sequential):
    """Conv2d without bias, then BatchNorm2d (``c``, ``bn``); ``bn_weight_init=0`` starts a residual branch at zero."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1, bn_weight_init: float = 1.0):
        super().__init__()
        self.add_module("c", nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(out_ch))
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.zeros_(self.bn.bias)


class Residual(nn.Module):
    """x + m(x)."""

    def __init__(self, m: nn.Module):
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) -> x + m(x)."""
        return x + self.m(x)


class FFN(nn.Module):
    """1x1 Conv-BN -> ReLU -> 1x1 Conv-BN (second BN starts at zero): (B, C, H, W) -> same."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.pw1 = Conv2dNorm(dim, hidden)
        self.act = nn.ReLU()
        self.pw2 = Conv2dNorm(hidden, dim, bn_weight_init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        return self.pw2(self.act(self.pw1(x)))


def _make_divisible(v: float, divisor: int = 8) -> int:
    return max(divisor, int(v + divisor / 2) // divisor * divisor)


class SqueezeExcite(nn.Module):
    """Squeeze-excitation (1x1 convs ``fc1``/``fc2``, reduction 1/4 rounded to a multiple of 8)."""

    def __init__(self, channels: int, rd_ratio: float = 0.25):
        super().__init__()
        rd = _make_divisible(channels * rd_ratio)
        self.fc1 = nn.Conv2d(channels, rd, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(rd, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> x * sigmoid(fc2(relu(fc1(mean_hw x))))."""
        return x * torch.sigmoid(self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))))


class PatchMerging(nn.Module):
    """Stride-2 downsampling: 1x1 expand x4, depthwise 3x3 stride 2, SE, 1x1 to ``out_dim``."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        hid = dim * 4
        self.conv1 = Conv2dNorm(dim, hid)
        self.act1 = nn.ReLU()
        self.conv2 = Conv2dNorm(hid, hid, 3, 2, 1, groups=hid)
        self.act2 = nn.ReLU()
        self.se = SqueezeExcite(hid)
        self.conv3 = Conv2dNorm(hid, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, out_dim, ceil(H/2), ceil(W/2))."""
        return self.conv3(self.se(self.act2(self.conv2(self.act1(self.conv1(x))))))


class SHSA(nn.Module):
    """Single-head self-attention on the first ``pdim`` channels (P29): (B, C, H, W) -> (B, C, H, W).

    q, k (``qk_dim`` each) and v (``pdim``) come from one 1x1 Conv-BN over
    GroupNorm(1)(x[:, :pdim]); one softmax head (scale qk_dim^-1/2, through
    SDPA) over the H*W tokens; output = Conv-BN(ReLU(cat[attended, x[:, pdim:]])).
    Cost O((HW)^2 qk_dim + HW C^2).
    """

    def __init__(self, dim: int, qk_dim: int, pdim: int):
        super().__init__()
        if not 0 < pdim <= dim:
            fail("pdim", f"an int in (0, dim={dim}]", describe(pdim))
        self.dim, self.qk_dim, self.pdim = dim, qk_dim, pdim
        self.pre_norm = nn.GroupNorm(1, pdim)
        self.qkv = Conv2dNorm(pdim, qk_dim * 2 + pdim)
        self.proj = nn.Sequential(nn.ReLU(), Conv2dNorm(dim, dim, bn_weight_init=0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W); channels past ``pdim`` skip the attention."""
        b, _, h, w = x.shape
        x1, x2 = torch.split(x, [self.pdim, self.dim - self.pdim], dim=1)
        q, k, v = torch.split(self.qkv(self.pre_norm(x1)), [self.qk_dim, self.qk_dim, self.pdim], dim=1)
        tok = lambda t: rearrange(t, "b c h w -> b 1 (h w) c")  # noqa: E731 - one head
        o = attention(tok(q), tok(k), tok(v))
        x1 = rearrange(o, "b 1 (h w) c -> b c h w", h=h, w=w)
        return self.proj(torch.cat([x1, x2], dim=1))


class BasicBlock(nn.Module):
    """Residual depthwise 3x3 Conv-BN, residual SHSA (type "s") or nothing (type "i"), residual FFN x2."""

    def __init__(self, dim: int, qk_dim: int, pdim: int, type: str):  # noqa: A002 - timm's argument name
        super().__init__()
        self.conv = Residual(Conv2dNorm(dim, dim, 3, 1, 1, groups=dim, bn_weight_init=0.0))
        self.mixer = Residual(SHSA(dim, qk_dim, pdim)) if type == "s" else nn.Identity()
        self.ffn = Residual(FFN(dim, dim * 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        return self.ffn(self.mixer(self.conv(x)))


class StageBlock(nn.Module):
    """Optional downsampling (when the width changes), then ``depth`` BasicBlocks."""

    def __init__(self, prev_dim: int, dim: int, qk_dim: int, pdim: int, type: str, depth: int):  # noqa: A002
        super().__init__()
        self.downsample = nn.Sequential(
            Residual(Conv2dNorm(prev_dim, prev_dim, 3, 1, 1, groups=prev_dim)),
            Residual(FFN(prev_dim, prev_dim * 2)),
            PatchMerging(prev_dim, dim),
            Residual(Conv2dNorm(dim, dim, 3, 1, 1, groups=dim)),
            Residual(FFN(dim, dim * 2)),
        ) if prev_dim != dim else nn.Identity()
        self.blocks = nn.Sequential(*[BasicBlock(dim, qk_dim, pdim, type) for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, prev_dim, H, W) -> (B, dim, H', W')."""
        return self.blocks(self.downsample(x))


class NormLinear(nn.Sequential):
    """BatchNorm1d then Linear (``bn``, ``l``): the classifier head."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.add_module("bn", nn.BatchNorm1d(in_features))
        self.add_module("l", nn.Linear(in_features, out_features))
        nn.init.trunc_normal_(self.l.weight, std=0.02)
        nn.init.zeros_(self.l.bias)


class SHViT(nn.Module):
    """SHViT (P29): images (B, in_chans, H, W) -> logits (B, num_classes).

    Args:
        img_size: nominal image size (checked against the stem's stride; the network is
            fully convolutional, so other sizes run too: the token grid is H / 2^stem_convs,
            halved at each stage change).
        in_chans, num_classes: input channels and classes.
        embed_dim: widths of the three stages.
        partial_dim: channels p that SHSA attends over, per stage.
        qk_dim: query/key size per stage (16 in the paper).
        depth: blocks per stage.
        types: "s" (SHSA) or "i" (convolution only) per stage.
        stem_convs: number of stride-2 Conv-BN layers in the stem (4 = the paper's
            16x patchify for 224 px; 2 gives 8x8 tokens at 32 px).
    """

    def __init__(
        self, *, img_size: int = 32, in_chans: int = 3, num_classes: int = 10, embed_dim=(32, 48, 64),
        partial_dim=(8, 12, 16), qk_dim=(16, 16, 16), depth=(1, 2, 2), types=("i", "s", "s"), stem_convs: int = 2,
    ):
        super().__init__()
        check_positive_int("img_size", img_size)
        check_positive_int("stem_convs", stem_convs)
        if img_size < 2 ** stem_convs:
            fail("img_size", f"at least 2^stem_convs = {2 ** stem_convs} (the stem's stride)", img_size)
        check_positive_int("num_classes", num_classes)
        if not (len(embed_dim) == len(partial_dim) == len(qk_dim) == len(depth) == len(types)):
            fail("embed_dim, partial_dim, qk_dim, depth, types", "sequences of one length (one entry per stage)",
                 f"lengths {[len(embed_dim), len(partial_dim), len(qk_dim), len(depth), len(types)]}")
        if any(t not in ("s", "i") for t in types):
            fail("types", 'entries "s" (SHSA) or "i" (no attention)', describe(types))
        stem = embed_dim[0]
        chs = [in_chans] + [stem // 2 ** (stem_convs - 1 - i) for i in range(stem_convs)]
        if min(chs[1:]) < 1:
            fail("stem_convs", f"at most log2(embed_dim[0]={stem}) + 1", stem_convs)
        layers = []
        for i in range(stem_convs):
            layers.append(Conv2dNorm(chs[i], chs[i + 1], 3, 2, 1))
            if i < stem_convs - 1:
                layers.append(nn.ReLU())
        self.patch_embed = nn.Sequential(*layers)
        stages, prev = [], stem
        for i in range(len(embed_dim)):
            stages.append(StageBlock(prev, embed_dim[i], qk_dim[i], partial_dim[i], types[i], depth[i]))
            prev = embed_dim[i]
        self.stages = nn.Sequential(*stages)
        self.head = NormLinear(embed_dim[-1], num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> final feature map (B, embed_dim[-1], H', W') (stored channels-last)."""
        # oneDNN's convolutions and their backward are 20-50% faster on channels-last tensors for
        # these thin layers (depthwise 3x3, 1x1 on small maps); BatchNorm, GroupNorm, SHSA's split/cat
        # and attention keep that layout. The first stem Conv-BN stays NCHW: reordering the 3-channel
        # image and a channels-last BatchNorm over few channels cost more than they save there.
        # Same values; only the memory order (and fp32 rounding) differs.
        for i, layer in enumerate(self.patch_embed):
            if i == 1:
                x = x.contiguous(memory_format=torch.channels_last)
            x = layer(x)
        return self.stages(x.contiguous(memory_format=torch.channels_last))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, in_chans, H, W) -> logits (B, num_classes) from the average-pooled map."""
        return self.head(self.forward_features(x).mean((2, 3)))


SHVIT_CONFIGS = {
    # 32 px: 4x stem -> 8x8 tokens, stages at 8x8 (conv only), 4x4, 2x2; p ~ C/4 as in S1-S4.
    "tiny": dict(embed_dim=(32, 48, 64), partial_dim=(8, 12, 16), depth=(1, 2, 2), types=("i", "s", "s"), stem_convs=2),
    "small": dict(embed_dim=(48, 96, 128), partial_dim=(12, 24, 32), depth=(2, 3, 3), types=("i", "s", "s"),
                  stem_convs=2),
}


@register_model("shvit_tiny", paper="P29")
def shvit_tiny(**kwargs) -> SHViT:
    """SHViT tiny for 32 px CPU runs: 4x stem, widths 32/48/64, SHSA on a quarter of the channels."""
    return SHViT(**{**SHVIT_CONFIGS["tiny"], **kwargs})


@register_model("shvit_small", paper="P29")
def shvit_small(**kwargs) -> SHViT:
    """SHViT small for 32 px CPU runs: 4x stem, widths 48/96/128."""
    return SHViT(**{**SHVIT_CONFIGS["small"], **kwargs})
