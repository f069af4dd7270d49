"""Building blocks shared by the backbones and the named designs.

Module and parameter names follow timm's (``fc1``/``fc2``, ``proj``, ...) so that
timm state dicts load into attnlab's designs with a documented key mapping
(``attnlab.models.timm_compat``). timm itself cannot be a hard dependency here
(it imports torchvision, whose PyPI wheels are CUDA builds), so these few
layers are written out.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from attnlab.utils.checks import check_choice, check_positive_int, describe, fail

__all__ = ["DropPath", "Mlp", "GluMlp", "PatchEmbed", "make_norm", "make_ffn", "FFN_CHOICES", "NORM_CHOICES"]

FFN_CHOICES = ("mlp", "glu", "none")
NORM_CHOICES = ("layernorm", "rmsnorm")


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): zero a residual branch per sample with probability ``drop_prob``.

    x (B, ...) -> (B, ...); kept samples are scaled by 1 / (1 - drop_prob) in training; identity in eval.
    """

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        if not 0.0 <= float(drop_prob) < 1.0:
            fail("drop_prob", "a number in [0, 1)", drop_prob)
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Drop whole samples of ``x`` in training."""
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class Mlp(nn.Module):
    """Two-layer MLP over channels: fc2(drop(act(fc1 x))); x (..., in_features) -> (..., out_features)."""

    def __init__(
        self, in_features: int, hidden_features: int | None = None, out_features: int | None = None,
        act_layer: type[nn.Module] = nn.GELU, bias: bool = True, drop: float = 0.0,
    ):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.norm = nn.Identity()
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in) -> (..., out)."""
        return self.drop2(self.fc2(self.norm(self.drop1(self.act(self.fc1(x))))))


class GluMlp(nn.Module):
    """Gated MLP (SwiGLU, Shazeer 2020): fc2(act(x W_gate) * (x W_value)); x (..., C) -> (..., C).

    ``fc1`` produces value and gate halves (``2 * hidden_features`` outputs).
    """

    def __init__(
        self, in_features: int, hidden_features: int, out_features: int | None = None,
        act_layer: type[nn.Module] = nn.SiLU, bias: bool = True, drop: float = 0.0,
    ):
        super().__init__()
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, 2 * hidden_features, bias=bias)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in) -> (..., out)."""
        value, gate = self.fc1(x).chunk(2, dim=-1)
        return self.drop2(self.fc2(self.drop1(value * self.act(gate))))


class PatchEmbed(nn.Module):
    """Image to patch tokens: (B, in_chans, H, W) -> (B, (H/p)(W/p), embed_dim) by a stride-p convolution
    (its weights; computed as one GEMM on the flattened patches).

    ``grid`` is (H/p, W/p). Images whose size differs from ``img_size`` are refused
    with a clear error (the position embeddings of the models are built for it).
    """

    def __init__(self, img_size: int | tuple[int, int] = 32, patch_size: int = 4, in_chans: int = 3,
                 embed_dim: int = 64, norm_layer: type[nn.Module] | None = None, bias: bool = True):
        super().__init__()
        img = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        check_positive_int("patch_size", patch_size)
        check_positive_int("in_chans", in_chans)
        for s in img:
            check_positive_int("img_size", s)
            if s % patch_size:
                fail("img_size", f"a multiple of patch_size={patch_size}", img_size)
        self.img_size = img
        self.patch_size = (patch_size, patch_size)
        self.in_chans = in_chans
        self.grid_size = (img[0] // patch_size, img[1] // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias=bias)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, N, embed_dim)."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            fail("x", f"an image batch (B, {self.in_chans}, {self.img_size[0]}, {self.img_size[1]})", describe(x))
        if x.shape[1] != self.in_chans or tuple(x.shape[2:]) != self.img_size:
            fail("x", f"images of shape (B, {self.in_chans}, {self.img_size[0]}, {self.img_size[1]})", describe(x))
        # A stride-p, size-p convolution is one GEMM on the flattened patches; done that way the
        # tokens come out contiguous (conv -> flatten -> transpose leaves a transposed view whose
        # layout elementwise ops propagate, so every later LayerNorm/Linear copies it) and the
        # fwd + bwd is 5-40 % faster than the oneDNN convolution on this CPU. Same weights.
        ph, pw = self.patch_size
        patches = rearrange(x, "b c (h p1) (w p2) -> b (h w) (c p1 p2)", p1=ph, p2=pw)
        return self.norm(F.linear(patches, self.proj.weight.flatten(1), self.proj.bias))


def make_norm(kind: str, dim: int, eps: float = 1e-5) -> nn.Module:
    """``"layernorm"`` or ``"rmsnorm"`` over the last dim."""
    check_choice("norm", kind, NORM_CHOICES)
    return nn.LayerNorm(dim, eps=eps) if kind == "layernorm" else nn.RMSNorm(dim, eps=eps)


def make_ffn(kind: str, dim: int, mlp_ratio: float, drop: float = 0.0) -> nn.Module | None:
    """The block's channel mixer: ``"mlp"`` (GELU, hidden ``mlp_ratio * dim``), ``"glu"`` or ``"none"``.

    ``"glu"`` is SwiGLU with hidden width ``2/3 * mlp_ratio * dim`` (rounded), so it
    has about the parameters of the MLP of the same ratio (the usual convention).
    """
    check_choice("ffn", kind, FFN_CHOICES)
    if kind == "none" or mlp_ratio == 0:
        return None
    if not mlp_ratio > 0:
        fail("mlp_ratio", "a number > 0", mlp_ratio)
    if kind == "mlp":
        return Mlp(dim, max(int(round(mlp_ratio * dim)), 1), drop=drop)
    return GluMlp(dim, max(int(round(2 * mlp_ratio * dim / 3)), 1), drop=drop)
