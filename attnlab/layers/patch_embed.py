"""Image to patch tokens: PatchEmbed (timm's module names) and the (img_size, patch_size) check of the designs."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from attnlab.utils.checks import check_positive_int, describe, fail

__all__ = ["PatchEmbed", "check_img_patch"]


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




def check_img_patch(img_size: int, patch_size: int) -> tuple[int, int]:
    """Validate an (img_size, patch_size) pair; returns the patch grid (H/p, W/p)."""
    check_positive_int("img_size", img_size)
    check_positive_int("patch_size", patch_size)
    if img_size % patch_size:
        fail("patch_size", f"a divisor of img_size={img_size}", patch_size)
    return img_size // patch_size, img_size // patch_size
