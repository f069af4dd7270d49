"""Path-ensemble ViT: the ViT rewritten as its parallel paths, with path pruning and EnsembleScale (P31).

Chang et al. 2023, "Revisiting Vision Transformer from the View of Path Ensemble".
A pre-norm block ``x' = x + MSA(x); y = x' + FFN(x')`` is the same function as
three parallel paths out of ``x``::

    y = x + a + f,   a = MSA(LN1 x),   f = FFN(LN2 (x + a))

(identity, attention, and the FFN path fed by the first two). Unrolling the
identities over L blocks, the final token features are an explicit ensemble of
2L + 1 path outputs: ``x_L = x_0 + sum_l (a_l + f_l)``; path ``k`` (0 = the
embedding, ``2l + 1`` = block l's attention, ``2l + 2`` = its FFN) is longer the
later it ends. Each path has two jobs: feed the classifier directly, and feed
the later (longer) paths. :class:`PathEnsembleViT` separates the two: the
stream the blocks read is unchanged, while the classifier reads

    z = sum_k  m_k * s_k * p_k

with ``m_k`` in {0, 1} (**path pruning**: a pruned path still feeds the later
blocks but no longer votes) and ``s_k`` a learnable per-channel weight
(**EnsembleScale**, initialised to 1). With nothing pruned and EnsembleScale
off, ``z = x_L`` and the model is exactly ``attnlab.models.ViT`` with the same
weights (tested); the module names are the ViT's, so ViT state dicts load.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from attnlab.utils.checks import describe, fail
from attnlab.models import register_model
from attnlab.layers import MixerBlock
from attnlab.models.vit import ViT

__all__ = ["block_paths", "PathEnsembleViT", "path_ensemble_tiny", "path_ensemble_small"]


def block_paths(block: MixerBlock, x: torch.Tensor, grid: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The attention and FFN paths (a, f) of a pre-norm :class:`MixerBlock` at input x (B, N, C).

    ``block(x) == x + a + f`` (same dropout / stochastic depth as the block's own forward).
    """
    a = block.mixer(block.norm1(x), grid=tuple(grid) if (grid is not None and block.uses_grid) else None)
    a = block.drop_path(block.drop(a))
    if block.ffn is None:
        return a, torch.zeros_like(a)
    return a, block.drop_path(block.ffn(block.norm2(x + a)))


class PathEnsembleViT(ViT):
    """ViT whose classifier reads a weighted, pruned sum of its 2L + 1 paths (P31); (B, C, H, W) -> (B, classes).

    Args: those of :class:`attnlab.models.ViT`, plus
        ensemble_scale: learn a per-channel weight ``s_k`` per path (EnsembleScale; init 1).
        prune: path indices or names (``"embed"``, ``"attn3"``, ``"ffn0"``, see :meth:`path_names`)
            whose direct contribution to the classifier is removed. Changeable later with
            :meth:`set_pruned` (e.g. to ablate paths of a trained model at evaluation).
    """

    def __init__(self, *, ensemble_scale: bool = True, prune: Iterable[int | str] = (), **vit_kwargs):
        super().__init__(**vit_kwargs)
        dim = self.head.in_features
        self.num_paths = 2 * len(self.blocks) + 1
        self.ensemble_scale = nn.Parameter(torch.ones(self.num_paths, dim)) if ensemble_scale else None
        self.register_buffer("path_mask", torch.ones(self.num_paths), persistent=True)
        self.set_pruned(prune)

    def path_names(self) -> list[str]:
        """Names of the paths in order: ``embed``, then ``attn{l}``, ``ffn{l}`` per block l."""
        return ["embed"] + [f"{kind}{i}" for i in range(len(self.blocks)) for kind in ("attn", "ffn")]

    def _index(self, p: int | str) -> int:
        names = self.path_names()
        if isinstance(p, str) and p in names:
            return names.index(p)
        if isinstance(p, int) and not isinstance(p, bool) and 0 <= p < self.num_paths:
            return p
        fail("prune", f"path indices in [0, {self.num_paths}) or names such as {names[:3]}", describe(p))
        raise AssertionError  # unreachable

    def set_pruned(self, prune: Iterable[int | str]) -> None:
        """Remove the direct (classifier) contribution of the given paths; all others are restored."""
        if isinstance(prune, (str, int)):
            prune = [prune]
        idx = [self._index(p) for p in prune]
        if len(set(idx)) == self.num_paths:
            fail("prune", f"at most {self.num_paths - 1} of the {self.num_paths} paths", f"all {len(idx)}")
        mask = torch.ones(self.num_paths)
        mask[idx] = 0.0
        self.path_mask.copy_(mask)

    def pruned(self) -> list[str]:
        """Names of the pruned paths."""
        return [n for n, m in zip(self.path_names(), self.path_mask.tolist()) if m == 0.0]

    def _weights(self) -> torch.Tensor | None:
        """(P, 1 or C) weights m_k * s_k of the paths, or None when the sum is the plain stream."""
        if self.ensemble_scale is None:
            return None if bool(self.path_mask.all()) else self.path_mask[:, None]
        return self.ensemble_scale * self.path_mask[:, None]

    def paths(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The 2L + 1 path outputs (each (B, N[+1], C)) for images x; their sum is the last block's output."""
        h = self._embed(x)
        out = [h]
        for blk in self.blocks:
            a, f = block_paths(blk, h, self._grid())
            out += [a, f]
            h = h + a + f
        return out

    def _grid(self):
        return None if self.cls_token is not None else self.grid

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        h = self.patch_embed(x)
        if self.cls_token is not None:
            h = torch.cat([self.cls_token.expand(h.shape[0], -1, -1), h], dim=1)
        if self.pos_embed is not None:
            h = h + self.pos_embed
        return h

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> normalised ensemble features z (B, N[+1], C)."""
        w = self._weights()
        h = self._embed(x)
        if w is None:  # plain ViT: the stream is the ensemble
            for blk in self.blocks:
                h = blk(h, grid=self._grid())
            return self.norm(h)
        z = w[0] * h
        for i, blk in enumerate(self.blocks):
            a, f = block_paths(blk, h, self._grid())
            z = z + w[2 * i + 1] * a + w[2 * i + 2] * f
            h = h + a + f
        return self.norm(z)

    def no_weight_decay(self) -> set[str]:
        """Position embedding, class token and the EnsembleScale weights are not decayed."""
        return super().no_weight_decay() | {"ensemble_scale"}


PATH_ENSEMBLE_CONFIGS = {
    "tiny": dict(patch_size=4, dim=64, depth=6, num_heads=4, mlp_ratio=4.0),
    "small": dict(patch_size=4, dim=128, depth=8, num_heads=4, mlp_ratio=4.0),
}


@register_model("path_ensemble_tiny", paper="P31")
def path_ensemble_tiny(**kwargs) -> PathEnsembleViT:
    """Path-ensemble ViT tiny for 32 px: width 64, 6 blocks (13 paths), 4 heads, EnsembleScale on."""
    return PathEnsembleViT(**{**PATH_ENSEMBLE_CONFIGS["tiny"], **kwargs})


@register_model("path_ensemble_small", paper="P31")
def path_ensemble_small(**kwargs) -> PathEnsembleViT:
    """Path-ensemble ViT small for 32 px: width 128, 8 blocks (17 paths), 4 heads, EnsembleScale on."""
    return PathEnsembleViT(**{**PATH_ENSEMBLE_CONFIGS["small"], **kwargs})
