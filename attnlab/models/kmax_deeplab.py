"""kMaX-DeepLab (P25, Yu et al. ECCV 2022): a mask transformer whose cross-attention is a k-means step; and the same
decoder with ordinary softmax cross-attention (Mask2Former style) as its baseline.

The model (:class:`KMaXDeepLab`) is a small convolutional pixel encoder with a two-scale pixel decoder
(strides 4 and 2 of the image), then a transformer decoder of L object queries, the *cluster centres*:
``layers`` decoder layers at stride 4, then ``layers`` at stride 2. Each decoder layer (:class:`KMaXLayer`,
after the paper's and its official code's ``kMaXTransformerLayer``):

1. predicts, from the queries, class logits (``num_classes + 1``, the last is void) and mask logits
   ``norm(kernel . l2normalise(pixel feature))`` at every pixel (:class:`MaskPredictor`) - the mask logits of
   every layer are supervised (the task's loss reads them all);
2. updates the queries by cross-attention with the pixels: **k-means** (:class:`KMeansCrossAttention`: each
   pixel goes to the query with the largest mask logit, an argmax over the queries with no gradient, and each
   query adds the sum of its pixels' values, :func:`attnlab.ops.kmeans_attention.kmeans_update`) or
   **softmax** (:class:`SoftmaxCrossAttention`: multi-head attention of the queries over all pixels, a softmax
   over the pixels), followed by a norm and a projection into a residual;
3. query self-attention and an FFN, each a residual with a GELU after it.

A final predictor reads the last queries. Output: the ``"masks"`` dict of :mod:`attnlab.tasks.panoptic`, mask
logits upsampled (bilinear) to the image, the final prediction first and every layer's in ``"aux"``.

Deviations from the paper (CPU scale): GroupNorm everywhere the paper uses (sync) BatchNorm, since the
batches here are a few images on one CPU and BatchNorm's statistics would be noise (the mask logits' one-channel
norm becomes a per-image GroupNorm(1, 1)); a 5-conv pixel encoder instead of a ResNet/ConvNeXt, no axial
attention in the pixel decoder, two scales (strides 4 and 2) instead of three (32, 16, 8), widths 32-128
instead of 256-2048, and no auxiliary semantic head or instance-discrimination loss.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from attnlab.models.registry import register_model
from attnlab.ops.attention import attention
from attnlab.ops.kmeans_attention import kmeans_update
from attnlab.utils.checks import check_choice, check_positive_int, describe, fail

__all__ = ["KMaXDeepLab", "KMaXLayer", "KMeansCrossAttention", "SoftmaxCrossAttention", "MaskPredictor",
           "PixelEncoder", "CROSS_ATTENTIONS", "kmax_tiny", "mask2former_tiny", "group_norm"]

#: the cross-attentions a decoder layer can use
CROSS_ATTENTIONS = ("kmeans", "softmax")


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm over ``channels`` in groups of about 8 channels (``gcd(C, C // 8)`` groups): the paper's BatchNorm here."""
    return nn.GroupNorm(math.gcd(channels, max(1, channels // 8)), channels)


class _TokensNorm(nn.Module):
    """A GroupNorm over the channels of (B, L, C) tokens (normalises each sample's channel groups over all L)."""

    def __init__(self, channels: int, init: float = 1.0):
        super().__init__()
        self.norm = group_norm(channels)
        nn.init.constant_(self.norm.weight, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), group_norm(cout)]
    return nn.Sequential(*layers, nn.GELU()) if act else nn.Sequential(*layers)


class PixelEncoder(nn.Module):
    """Images (B, in_chans, S, S) -> pixel features at stride 4 (B, dim, S/4, S/4) and stride 2 (B, dim, S/2, S/2).

    Five 3x3 convolutions (two with stride 2), then the stride-2 decoder feature fuses the stride-2 encoder
    feature with the upsampled stride-4 one (a 1x1 convolution over both).
    """

    def __init__(self, in_chans: int = 3, dim: int = 64):
        super().__init__()
        half = max(8, dim // 2)
        self.stem = nn.Sequential(_conv(in_chans, half), _conv(half, dim, stride=2))
        self.down = nn.Sequential(_conv(dim, dim), _conv(dim, dim, stride=2), _conv(dim, dim))
        self.fuse = _conv(2 * dim, dim, k=1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, S, S) -> (stride-4 features, stride-2 features)."""
        f2 = self.stem(images)
        f4 = self.down(f2)
        up = F.interpolate(f4, size=f2.shape[-2:], mode="bilinear", align_corners=False)
        return f4, self.fuse(torch.cat([f2, up], dim=1))


class MaskPredictor(nn.Module):
    """Class and mask logits of the queries (kMaX's predictor).

    Pixel head: depthwise 5x5 conv, 1x1 conv to ``mask_dim``, L2-normalised over channels. Query heads: a
    linear mask kernel (``mask_dim``) and linear class logits (``num_classes + 1``, biased towards void as in
    the paper). Mask logits ``<kernel_l, pixel_n>``, then a per-image GroupNorm(1, 1) (the paper's one-channel
    BatchNorm, scale initialised to 0.1). Returns mask logits (B, L, h w) and class logits (B, L, C + 1).
    """

    def __init__(self, pixel_dim: int, query_dim: int, num_classes: int, mask_dim: int = 32):
        super().__init__()
        self.pixel_head = nn.Sequential(_conv(pixel_dim, pixel_dim, k=5, groups=pixel_dim),
                                        nn.Conv2d(pixel_dim, mask_dim, 1))
        self.mask_kernel = nn.Linear(query_dim, mask_dim)
        self.class_head = nn.Linear(query_dim, num_classes + 1)
        nn.init.trunc_normal_(self.class_head.weight, std=0.01)
        with torch.no_grad():  # bias towards void: P(void) = 0.9 at initialisation
            self.class_head.bias.zero_()
            self.class_head.bias[-1] = math.log(num_classes * 0.9 / 0.1)
        self.logit_norm = nn.GroupNorm(1, 1)
        nn.init.constant_(self.logit_norm.weight, 0.1)

    def forward(self, queries: torch.Tensor, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """queries (B, L, query_dim), pixels (B, pixel_dim, h, w) -> mask logits (B, L, h w), class logits."""
        p = F.normalize(self.pixel_head(pixels).flatten(2), dim=1)  # (B, mask_dim, h w)
        logits = torch.einsum("blc,bcn->bln", self.mask_kernel(queries), p)
        return self.logit_norm(logits[:, None]).squeeze(1), self.class_head(queries)


class KMeansCrossAttention(nn.Module):
    """k-means cross-attention: queries take the sum of the values of the pixels assigned to them (argmax of the mask
    logits over the queries; no gradient through the assignment), normalised and projected: the update (B, L, query_dim).

    ``forward(query_space (B, L, d), pixel_space (B, N, d), mask_logits (B, L, N))``. The values are a linear map of
    the pixel features; the update is GroupNorm'ed (the paper's BatchNorm), projected, and GroupNorm'ed with its
    scale initialised to zero (so a new layer starts as the identity, as the paper's ``norm_init=0``).
    """

    def __init__(self, dim: int, value_dim: int, query_dim: int):
        super().__init__()
        self.value = nn.Linear(dim, value_dim, bias=False)
        self.norm = _TokensNorm(value_dim)
        self.out = nn.Linear(value_dim, query_dim, bias=False)
        self.out_norm = _TokensNorm(query_dim, init=0.0)

    def forward(self, query_space: torch.Tensor, pixel_space: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
        """The queries' update (B, L, query_dim)."""
        v = self.value(pixel_space)[:, None]  # (B, 1, N, value_dim): one head
        update = kmeans_update(mask_logits[:, None], v)[:, 0]  # (B, L, value_dim)
        return self.out_norm(self.out(self.norm(update)))


class SoftmaxCrossAttention(nn.Module):
    """Softmax cross-attention of the queries over all pixels (the Mask2Former-style baseline of kMaX), same shapes
    and the same norms and projections around it as :class:`KMeansCrossAttention`; ``mask_logits`` is unused."""

    def __init__(self, dim: int, value_dim: int, query_dim: int, num_heads: int = 4):
        super().__init__()
        if value_dim % num_heads or dim % num_heads:
            fail("num_heads", f"a divisor of the widths {dim} and {value_dim}", num_heads)
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, value_dim, bias=False)
        self.norm = _TokensNorm(value_dim)
        self.out = nn.Linear(value_dim, query_dim, bias=False)
        self.out_norm = _TokensNorm(query_dim, init=0.0)

    def forward(self, query_space: torch.Tensor, pixel_space: torch.Tensor, mask_logits: torch.Tensor | None = None
                ) -> torch.Tensor:
        """The queries' update (B, L, query_dim)."""
        h = self.num_heads
        q = rearrange(self.q(query_space), "b l (h d) -> b h l d", h=h)
        k = rearrange(self.k(pixel_space), "b n (h d) -> b h n d", h=h)
        v = rearrange(self.value(pixel_space), "b n (h d) -> b h n d", h=h)
        update = rearrange(attention(q, k, v), "b h l d -> b l (h d)")
        return self.out_norm(self.out(self.norm(update)))


class KMaXLayer(nn.Module):
    """One decoder layer: predict masks and classes, cross-attention update, query self-attention, FFN (module doc).

    ``forward(queries (B, L, query_dim), pixels (B, pixel_dim, h, w))`` -> (new queries, (mask logits (B, L, h w),
    class logits (B, L, C + 1))).
    """

    def __init__(self, *, pixel_dim: int, query_dim: int, num_classes: int, cross: str = "kmeans", dim: int = 64,
                 num_heads: int = 4, ffn_dim: int = 128, mask_dim: int = 32):
        super().__init__()
        check_choice("cross", cross, CROSS_ATTENTIONS)
        self.cross_kind = cross
        self.num_heads = num_heads
        self.pixel_in = nn.Sequential(nn.Conv2d(pixel_dim, dim, 1, bias=False), group_norm(dim), nn.GELU())
        self.query_in = nn.Sequential(nn.Linear(query_dim, dim, bias=False), _TokensNorm(dim), nn.GELU())
        self.predictor = MaskPredictor(dim, dim, num_classes, mask_dim)
        self.cross = (KMeansCrossAttention(dim, 2 * dim, query_dim) if cross == "kmeans"
                      else SoftmaxCrossAttention(dim, 2 * dim, query_dim, num_heads))
        self.qkv = nn.Linear(dim, 4 * dim, bias=False)  # q, k of width dim; v of width 2 dim (the paper's expansions)
        self.attn_norm = _TokensNorm(2 * dim)
        self.attn_out = nn.Sequential(nn.Linear(2 * dim, query_dim, bias=False), _TokensNorm(query_dim, init=0.0))
        self.ffn = nn.Sequential(nn.Linear(query_dim, ffn_dim, bias=False), _TokensNorm(ffn_dim), nn.GELU(),
                                 nn.Linear(ffn_dim, query_dim, bias=False), _TokensNorm(query_dim, init=0.0))

    def forward(self, queries: torch.Tensor, pixels: torch.Tensor):
        """See the class docstring."""
        pix = self.pixel_in(F.gelu(pixels))
        qs = self.query_in(queries)
        mask_logits, class_logits = self.predictor(qs, pix)
        queries = queries + self.cross(qs, pix.flatten(2).transpose(1, 2), mask_logits)
        d = qs.shape[-1]
        q, k, v = self.qkv(qs).split([d, d, 2 * d], dim=-1)
        q, k, v = (rearrange(t, "b l (h e) -> b h l e", h=self.num_heads) for t in (q, k, v))
        attn = self.attn_norm(rearrange(attention(q, k, v), "b h l e -> b l (h e)"))
        queries = F.gelu(queries + self.attn_out(F.gelu(attn)))
        queries = F.gelu(queries + self.ffn(queries))
        return queries, (mask_logits, class_logits)


class KMaXDeepLab(nn.Module):
    """kMaX-DeepLab at CPU scale: images (B, in_chans, S, S) -> the ``"masks"`` dict of :mod:`attnlab.tasks.panoptic`.

    Args:
        img_size, in_chans: input images (S divisible by 4).
        num_classes: classes without void (the task's ``spec.num_classes``).
        num_queries: L cluster centres.
        cross: ``"kmeans"`` (kMaX) or ``"softmax"`` (the baseline).
        layers: decoder layers per scale (stride 4, then stride 2).
        pixel_dim, query_dim, dim, num_heads, ffn_dim, mask_dim: widths and heads.
    """

    def __init__(self, *, img_size: int = 32, in_chans: int = 3, num_classes: int = 4, num_queries: int = 8,
                 cross: str = "kmeans", layers: int = 2, pixel_dim: int = 64, query_dim: int = 64, dim: int = 64,
                 num_heads: int = 4, ffn_dim: int = 128, mask_dim: int = 32):
        super().__init__()
        check_positive_int("img_size", img_size)
        if img_size % 4:
            fail("img_size", "a multiple of 4 (the pixel encoder's stride)", img_size)
        self.img_size = img_size
        self.num_classes = check_positive_int("num_classes", num_classes)
        check_positive_int("num_queries", num_queries)
        check_positive_int("layers", layers)
        self.cross = check_choice("cross", cross, CROSS_ATTENTIONS)
        self.encoder = PixelEncoder(in_chans, pixel_dim)
        self.queries = nn.Parameter(torch.randn(1, num_queries, query_dim) * query_dim**-0.5)
        kw = dict(pixel_dim=pixel_dim, query_dim=query_dim, num_classes=num_classes, cross=cross, dim=dim,
                  num_heads=num_heads, ffn_dim=ffn_dim, mask_dim=mask_dim)
        self.layers = nn.ModuleList(KMaXLayer(**kw) for _ in range(2 * layers))
        self.final_query = nn.Sequential(nn.Linear(query_dim, dim, bias=False), _TokensNorm(dim), nn.GELU())
        self.final_pixel = nn.Sequential(nn.Conv2d(pixel_dim, dim, 1, bias=False), group_norm(dim), nn.GELU())
        self.final = MaskPredictor(dim, dim, num_classes, mask_dim)

    def no_weight_decay(self) -> set[str]:
        """The learned cluster centres (read by attnlab.train)."""
        return {"queries"}

    def _full(self, mask_logits: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        b, l, _ = mask_logits.shape
        up = F.interpolate(mask_logits.reshape(b, l, *hw), size=(self.img_size,) * 2, mode="bilinear",
                           align_corners=False)
        return up.flatten(2)

    def forward(self, images: torch.Tensor) -> dict:
        """(B, C, S, S) -> {"mask_logits" (B, L, S*S), "class_logits" (B, L, C+1), "aux": [one per layer]}."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[-1] != self.img_size \
                or images.shape[-2] != self.img_size:
            fail("images", f"(B, C, {self.img_size}, {self.img_size})", describe(images))
        f4, f2 = self.encoder(images)
        queries = self.queries.expand(images.shape[0], -1, -1)
        aux = []
        half = len(self.layers) // 2
        for i, layer in enumerate(self.layers):
            pixels = f4 if i < half else f2
            queries, (m, c) = layer(queries, pixels)
            aux.append({"mask_logits": self._full(m, pixels.shape[-2:]), "class_logits": c})
        m, c = self.final(self.final_query(queries), self.final_pixel(f2))
        return {"mask_logits": self._full(m, f2.shape[-2:]), "class_logits": c, "aux": aux}


@register_model("kmax_tiny", paper="P25")
def kmax_tiny(**kwargs) -> KMaXDeepLab:
    """kMaX-DeepLab tiny for 32 px panoptic segmentation: 8 queries, 2 + 2 k-means decoder layers, widths 64."""
    return KMaXDeepLab(**{"cross": "kmeans", **kwargs})


@register_model("mask2former_tiny", paper="P25")
def mask2former_tiny(**kwargs) -> KMaXDeepLab:
    """kMaX's baseline: the kmax_tiny network with softmax cross-attention over the pixels (Mask2Former style)."""
    return KMaXDeepLab(**{"cross": "softmax", **kwargs})
