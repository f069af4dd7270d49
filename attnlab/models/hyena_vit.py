"""Hyena N-D ViT and the Hyena-then-attention hybrid (Zimerman & Wolf 2023, P15).

A ViT (``attnlab.models.ViT``: patch embedding, learned position embedding,
pre-norm blocks, mean pooling) whose token mixer is the N-dimensional Hyena
operator ``attnlab.mixers`` ``"hyena_nd"`` (implicit N-D filters, FFT
convolution over the patch grid, data-controlled gating) in the first
``num_hyena`` blocks and softmax attention after. ``num_hyena=depth`` is the
attention-free Hyena-ViT; ``num_hyena=depth // 2`` is the paper's best hybrid
("Hyena N-D for the first layers, attention after"); ``num_hyena=0`` is a plain
ViT. Mean pooling replaces the official code's token-0 readout (the grid has no
class token).
"""
from __future__ import annotations

from attnlab.utils.checks import fail
from attnlab.models import register_model
from attnlab.models.vit import ViT

__all__ = ["HyenaViT", "hyena_vit_tiny", "hyena_hybrid_tiny", "hyena_vit_small", "hyena_hybrid_small"]


class HyenaViT(ViT):
    """ViT with ``hyena_nd`` in the first ``num_hyena`` blocks and ``attention`` after; (B, C, H, W) -> (B, classes).

    Args: those of :class:`attnlab.models.ViT` (``pool`` is always ``"mean"``), plus
        num_hyena: Hyena blocks at the bottom (default: all).
        hyena_kwargs: kwargs of the ``hyena_nd`` mixer (order, filter_mode, kernel, filter_width, ...).
        attention: mixer of the top blocks (default ``"softmax"``).
    """

    def __init__(self, *, depth: int = 4, num_hyena: int | None = None, hyena_kwargs: dict | None = None,
                 attention: str = "softmax", **vit_kwargs):
        num_hyena = depth if num_hyena is None else num_hyena
        if isinstance(num_hyena, bool) or not isinstance(num_hyena, int) or not 0 <= num_hyena <= depth:
            fail("num_hyena", f"an int in [0, depth={depth}]", repr(num_hyena))
        if "mixer" in vit_kwargs or "pool" in vit_kwargs:
            fail("vit_kwargs", "no 'mixer' / 'pool' (set by HyenaViT)", sorted(vit_kwargs))
        pattern = [("hyena_nd", dict(hyena_kwargs or {}))] * num_hyena + [(attention, {})] * (depth - num_hyena)
        super().__init__(depth=depth, mixer=pattern, pool="mean", **vit_kwargs)
        self.num_hyena = num_hyena


HYENA_CONFIGS = {
    "tiny": dict(patch_size=4, dim=64, depth=4, num_heads=4),
    "small": dict(patch_size=4, dim=128, depth=6, num_heads=4),
}


@register_model("hyena_vit_tiny", paper="P15")
def hyena_vit_tiny(**kwargs) -> HyenaViT:
    """Attention-free Hyena N-D ViT for 32 px: width 64, 4 Hyena blocks, patch 4 (8x8 grid)."""
    return HyenaViT(**{**HYENA_CONFIGS["tiny"], **kwargs})


@register_model("hyena_hybrid_tiny", paper="P15")
def hyena_hybrid_tiny(**kwargs) -> HyenaViT:
    """Hybrid for 32 px: width 64, 2 Hyena N-D blocks then 2 attention blocks."""
    return HyenaViT(**{**HYENA_CONFIGS["tiny"], "num_hyena": 2, **kwargs})


@register_model("hyena_vit_small", paper="P15")
def hyena_vit_small(**kwargs) -> HyenaViT:
    """Attention-free Hyena N-D ViT: width 128, 6 blocks."""
    return HyenaViT(**{**HYENA_CONFIGS["small"], **kwargs})


@register_model("hyena_hybrid_small", paper="P15")
def hyena_hybrid_small(**kwargs) -> HyenaViT:
    """Hybrid: width 128, 3 Hyena N-D blocks then 3 attention blocks."""
    return HyenaViT(**{**HYENA_CONFIGS["small"], "num_hyena": 3, **kwargs})
