"""Benchmark cases for the video mechanisms (P30 Isomer's fusion, P21's frame attention).

* ``isomer_fusion``: the four fusion stages of the ZVOS segmenter alone (``IsomerSegmenter.fuse_all``
  on random per-stage appearance and motion maps; batch 16 as the ``isomer`` reproduction), Isomer
  (CST at stages 1-2, SGST at 3-4) against the vanilla transformer fusion, at frame sizes N = side^2
  pixels: 1024 (32 px, the reproduction's size: 1024 / 256 / 64 / 16 tokens per stage) and 4096
  (64 px, 4x the pixels). P30 reports the gap growing with resolution (13x at 512 px).
* ``frame_attention``: P21's ConvTSA op (B=8, 32 channels, 4 heads, 8x8 maps) over N frames, the
  SDPA path against the per-frame-pair loops it is tested against.

Both declare ``threads`` (default 1, applied by the worker).
"""
from __future__ import annotations

import torch

from attnlab.bench.inputs import grid_side
from attnlab.bench.registry import register_case
from attnlab.bench.thunks import Impls
from attnlab.ops.frame_attention import frame_attention, frame_attention_reference

FUSIONS = {"isomer": "isomer_tiny", "vanilla": "vanilla_fusion_tiny"}


@register_case(
    "isomer_fusion",
    description="Isomer's fusion stages (CST, CST, SGST, SGST) vs vanilla transformer fusion, batch 16, on the "
    "4 stages of an N = side^2 px frame (strides 1-8)",
    sizes=(1024, 4096),
    reference="vanilla",
    ops=("attnlab.models.isomer.IsomerSegmenter", "attnlab.mixers.context_sharing.ContextSharing",
         "attnlab.mixers.gathering_scattering.GatheringScattering", "attnlab.mixers.softmax.MultiHeadAttention"),
    tests=("tests/models/test_isomer.py", "tests/mixers/test_context_sharing.py",
           "tests/mixers/test_gathering_scattering.py", "tests/ops/test_context_sharing.py",
           "tests/ops/test_gathering_scattering.py"),
    tiny=(256, {"batch": 2}),
    size_rule="square",
    params={"batch": 16, "threads": 1},
)
def setup_isomer_fusion(n, dtype, mode, *, batch) -> Impls:
    """Impls ``isomer`` and ``vanilla``: each model's fusion stages on the same random stage inputs (seed 0)."""
    from attnlab import models

    side = grid_side(n)
    impls = Impls(mode)
    for impl, name in FUSIONS.items():
        torch.manual_seed(0)
        model = models.create(name, img_size=side).to(dtype).train()
        apps, mots = model.stage_inputs(batch, requires_grad=mode == "fwdbwd")
        impls.add(impl, lambda m=model, a=apps, b=mots: torch.cat([o.flatten(1) for o in m.fuse_all(a, b)], 1),
                  apps + mots)
    return impls


@register_case(
    "frame_attention",
    description="P21's ConvTSA op over N frames (B=8, C=32, 4 heads, 8x8 maps): SDPA path vs the per-frame-pair loops",
    sizes=(6, 12),
    reference="reference",
    ops=("attnlab.ops.frame_attention.frame_attention",),
    tests=("tests/ops/test_frame_attention.py",),
    tiny=(3, {"batch": 2, "channels": 4, "side": 3, "heads": 2}),
    oracle="reference",
    agree=("sdpa",),
    params={"batch": 8, "channels": 32, "side": 8, "heads": 4, "threads": 1},
)
def setup_frame_attention(n, dtype, mode, *, batch, channels, side, heads) -> Impls:
    """Impls ``sdpa`` (:func:`frame_attention`) and ``reference`` (loops) on the same q, k, v maps."""
    g = torch.Generator().manual_seed(0)
    q, k, v = qkv = [torch.randn(batch, n, channels, side, side, generator=g, dtype=dtype)
                     .requires_grad_(mode == "fwdbwd") for _ in range(3)]
    impls = Impls(mode)
    impls.add("sdpa", lambda: frame_attention(q, k, v, num_heads=heads), qkv)
    impls.add("reference", lambda: frame_attention_reference(q, k, v, num_heads=heads), qkv)
    return impls
