"""FIT: Far-reaching Interleaved Transformers (P27, Chen & Li 2023): the network, its layout strings, and models.

:class:`FIT` works on data tokens already in groups, (B, t n, dim) = t groups of n, with m latent tokens per
group that persist across its blocks. A layout string such as ``"(2)4(2)"`` lists the blocks: a number in
parentheses is a count of *local* layers (transformer layers within each group), the number after it a
count of *global* layers (transformer layers over all t m latents). In a block with global layers the
latents first read their group (cross-attention, LayerNorm on both sides, no MLP), then the global layers
run, then, unless it is the last block, the tokens read their group's latents back. ``"(2)4(2)"`` is
``[(2 local, 4 global), (2 local, 0 global)]`` (a trailing ``)`` gets a 0, as in the paper's code).

Positions as in the paper: a learned embedding of the position inside the group for the tokens, a learned
embedding per latent (per group and latent index). ``causal=True`` is the autoregressive variant (FITAR):
causal local layers, block-causal global layers, and the tokens of group j read the latents of group j - 1
(group 0 reads nothing).

Models: :class:`FITImageClassifier` (patch grid in square windows; registered ``fit_tiny``) and
:class:`FITSequenceModel` (token sequences in spans; ``"class"`` head, or a causal ``"lm"`` head; registered
``fit_seq_tiny``).
"""
from __future__ import annotations

import re

import torch
from torch import nn

from attnlab.layers import MixerBlock, PatchEmbed
from attnlab.mixers.fit import FITLocalAttention, GroupCrossAttention, LatentLayer, check_window
from attnlab.models.registry import register_model
from attnlab.ops.grouped_attention import window_order
from attnlab.utils.checks import check_choice, check_positive_int, describe, fail

__all__ = ["parse_layout", "FIT", "FITImageClassifier", "FITSequenceModel", "fit_tiny", "fit_seq_tiny"]


def parse_layout(layout: object) -> list[tuple[int, int]]:
    """FIT's layout string as (local layers, global layers) per block: ``"(2)4(2)"`` -> ``[(2, 4), (2, 0)]``.

    Every block but the last needs global layers (else two local runs would simply be one); ValueError
    naming ``layout`` otherwise.
    """
    if not isinstance(layout, str):
        fail("layout", "a string such as '(2)4(2)'", describe(layout), TypeError)
    text = layout + "0" if layout.endswith(")") else layout
    if not re.fullmatch(r"(\(\d+\)\d+)+", text):
        fail("layout", "blocks '(local)global' such as '(2)4(2)' or '(1)2'", repr(layout))
    blocks = [(int(a), int(b)) for a, b in re.findall(r"\((\d+)\)(\d+)", text)]
    if any(g == 0 for _, g in blocks[:-1]):
        fail("layout", "global layers (> 0) in every block but the last", repr(layout))
    if all(l_ == 0 for l_, _ in blocks) and all(g == 0 for _, g in blocks):
        fail("layout", "at least one layer", repr(layout))
    return blocks


class FIT(nn.Module):
    """The FIT network over grouped tokens: (B, t n, dim) -> (tokens (B, t n, dim), latents (B, t m, latent_dim)).

    Args:
        layout: the blocks, e.g. ``"(2)4(2)"`` (:func:`parse_layout`).
        num_groups: t; group_size: n tokens per group.
        dim, num_heads: width and heads of the data tokens' (local) layers.
        latent_dim, latent_heads: width and heads of the latents' (global) layers.
        latents_per_group: m.
        mlp_ratio: MLP hidden width over the width, local and global layers.
        causal: the autoregressive variant (module docstring).
    """

    def __init__(self, layout: str = "(2)4(2)", *, num_groups: int, group_size: int, dim: int = 64,
                 num_heads: int = 4, latent_dim: int | None = None, latent_heads: int | None = None,
                 latents_per_group: int = 1, mlp_ratio: float = 4.0, causal: bool = False):
        super().__init__()
        self.blocks_spec = parse_layout(layout)
        self.num_groups = check_positive_int("num_groups", num_groups)
        self.group_size = check_positive_int("group_size", group_size)
        self.latents_per_group = check_positive_int("latents_per_group", latents_per_group)
        latent_dim = check_positive_int("latent_dim", latent_dim if latent_dim is not None else dim)
        if not isinstance(causal, bool):
            fail("causal", "a bool", describe(causal), TypeError)
        self.causal, self.latent_dim = causal, latent_dim
        self.x_pos = nn.Parameter(torch.zeros(1, group_size, dim))
        self.latent_pos = nn.Parameter(torch.zeros(1, num_groups * latents_per_group, latent_dim))
        for p in (self.x_pos, self.latent_pos):
            nn.init.trunc_normal_(p, std=0.02)
        self.local, self.read, self.globals, self.write = (nn.ModuleList() for _ in range(4))
        for i, (n_local, n_global) in enumerate(self.blocks_spec):
            self.local.append(nn.ModuleList(
                MixerBlock(dim, FITLocalAttention(dim, num_heads, group_size=group_size), mlp_ratio=mlp_ratio)
                for _ in range(n_local)))
            self.read.append(GroupCrossAttention(latent_dim, dim, num_heads) if n_global else nn.Identity())
            self.globals.append(nn.ModuleList(LatentLayer(latent_dim, latent_heads or num_heads, mlp_ratio)
                                              for _ in range(n_global)))
            last = i == len(self.blocks_spec) - 1
            self.write.append(GroupCrossAttention(dim, latent_dim, num_heads) if n_global and not last
                              else nn.Identity())
        self.x_norm, self.latent_norm = nn.LayerNorm(dim), nn.LayerNorm(latent_dim)

    def no_weight_decay(self) -> set[str]:
        """The position embeddings (read by attnlab.train)."""
        return {"x_pos", "latent_pos"}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Grouped tokens (B, t n, dim) -> normalised tokens (B, t n, dim) and latents (B, t m, latent_dim)."""
        t, n = self.num_groups, self.group_size
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[1] != t * n:
            fail("x", f"grouped tokens (B, t n, dim) with t n = {t} x {n}", describe(x))
        b = x.shape[0]
        x = x + self.x_pos.to(x.dtype).repeat(1, t, 1)
        z = self.latent_pos.to(x.dtype).expand(b, -1, -1)
        for i, (n_local, n_global) in enumerate(self.blocks_spec):
            for blk in self.local[i]:
                x = blk(x, causal=self.causal)
            if n_global:
                z = z + self.read[i](z, x, num_groups=t)
                for layer in self.globals[i]:
                    z = layer(z, num_groups=t, causal=self.causal)
                if i < len(self.blocks_spec) - 1:
                    x = x + self.write[i](x, z, num_groups=t, shift=1 if self.causal else 0)
        return self.x_norm(x), self.latent_norm(z)


class FITImageClassifier(nn.Module):
    """FIT on an image's patch grid: patches in square windows (the groups), FIT, a linear head on the mean of the
    tokens and the mean of the latents.

    Images (B, in_chans, img_size, img_size) -> logits (B, num_classes). ``window`` (patches per side) must
    divide the grid; t = (grid / window)^2 groups of n = window^2 tokens. Other arguments go to :class:`FIT`.
    """

    def __init__(self, *, img_size: int = 32, patch_size: int = 2, in_chans: int = 3, num_classes: int = 10,
                 window: int = 4, layout: str = "(1)2(1)", dim: int = 64, **fit_kwargs):
        super().__init__()
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, dim)
        win = check_window(window)
        self.register_buffer("order", window_order(self.patch_embed.grid_size, win), persistent=False)
        groups = self.patch_embed.num_patches // (win[0] * win[1])
        self.fit = FIT(layout, num_groups=groups, group_size=win[0] * win[1], dim=dim, **fit_kwargs)
        self.head = nn.Linear(dim + self.fit.latent_dim, check_positive_int("num_classes", num_classes))

    def no_weight_decay(self) -> set[str]:
        """FIT's position embeddings."""
        return {f"fit.{n}" for n in self.fit.no_weight_decay()}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, num_classes)."""
        x, z = self.fit(self.patch_embed(images)[:, self.order])
        return self.head(torch.cat([x.mean(1), z.mean(1)], dim=-1))


class FITSequenceModel(nn.Module):
    """FIT on token sequences of ``seq_len`` = t n: spans of n tokens are the groups.

    ``head="class"``: (B, N) ids -> (B, num_classes) from the means of the tokens and of the latents;
    ``head="lm"``: the causal variant, (B, N) -> (B, N, vocab) next-token logits. Other arguments go to
    :class:`FIT`.
    """

    def __init__(self, *, vocab_size: int, seq_len: int, group_size: int = 64, head: str = "class",
                 num_classes: int | None = None, layout: str = "(1)2(1)", dim: int = 64, **fit_kwargs):
        super().__init__()
        check_positive_int("vocab_size", vocab_size)
        check_positive_int("seq_len", seq_len)
        check_positive_int("group_size", group_size)
        if seq_len % group_size:
            fail("group_size", f"a divisor of seq_len={seq_len}", group_size)
        self.head_kind = check_choice("head", head, ("class", "lm"))
        self.seq_len, self.vocab_size = seq_len, vocab_size
        self.embed = nn.Embedding(vocab_size, dim)
        self.fit = FIT(layout, num_groups=seq_len // group_size, group_size=group_size, dim=dim,
                       causal=head == "lm", **fit_kwargs)
        n_out = vocab_size if head == "lm" else num_classes
        if n_out is None:
            fail("num_classes", "an int for head='class'", None)
        width = dim if head == "lm" else dim + self.fit.latent_dim
        self.head = nn.Linear(width, check_positive_int("num_classes", n_out))

    def no_weight_decay(self) -> set[str]:
        """FIT's position embeddings."""
        return {f"fit.{n}" for n in self.fit.no_weight_decay()}

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, seq_len) ids -> (B, num_classes) or (B, seq_len, vocab_size)."""
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.shape[1] != self.seq_len \
                or tokens.is_floating_point():
            fail("tokens", f"token ids of shape (B, {self.seq_len})", describe(tokens))
        x, z = self.fit(self.embed(tokens))
        return self.head(torch.cat([x.mean(1), z.mean(1)], dim=-1) if self.head_kind == "class" else x)


FIT_TINY = dict(layout="(1)2(1)", dim=64, num_heads=4, latent_dim=64, latents_per_group=2)


@register_model("fit_tiny", paper="P27")
def fit_tiny(**kwargs) -> FITImageClassifier:
    """FIT tiny for 32 px images: patch 2 (16x16 grid) in 4x4 windows (16 groups, 2 latents each), "(1)2(1)"."""
    return FITImageClassifier(**{"patch_size": 2, "window": 4, **FIT_TINY, **kwargs})


@register_model("fit_seq_tiny", paper="P27")
def fit_seq_tiny(**kwargs) -> FITSequenceModel:
    """FIT tiny for sequences: 1024 tokens in 16 groups of 64 (2 latents each), "(1)2(1)", a class head."""
    base = {"vocab_size": 16, "seq_len": 1024, "group_size": 64, "num_classes": 2, **FIT_TINY}
    return FITSequenceModel(**{**base, **kwargs})
