"""``build_for_task(spec, ...)``: the backbone that fits a task's spec."""
from __future__ import annotations

from torch import nn

from attnlab.utils.checks import fail
from attnlab.models.sequence import SequenceModel
from attnlab.models.vit import ViT

__all__ = ["build_for_task"]


def build_for_task(spec, *, mixer: object = "softmax", dim: int = 64, depth: int = 2, num_heads: int = 4,
                   **kwargs) -> nn.Module:
    """A :class:`SequenceModel` or :class:`ViT` whose input and head match ``spec`` (an ``attnlab.tasks.TaskSpec``).

    Token / vector tasks get a :class:`SequenceModel` (``max_len = spec.seq_len``,
    causal iff ``spec.causal``); image tasks a :class:`ViT` (patch size 4 unless
    given). ``kwargs`` go to the backbone (e.g. ``ffn="glu"``, ``mixer_kwargs=...``).
    """
    if spec.input == "video" or spec.output == "frames":
        fail("spec", "a token, vector or image task (a video task takes a named design, e.g. bidirectional_vad_tiny)",
             f"input {spec.input!r}, output {spec.output!r}")
    common = dict(mixer=mixer, dim=dim, depth=depth, num_heads=num_heads)
    if spec.output not in ("lm", "class", "regression"):
        fail("spec.output", "'lm', 'class' or 'regression' for a generic backbone (a 'masks' or 'anomaly_map' task "
             "needs its own model, e.g. attnlab.models.create('kmax_tiny'))", repr(spec.output))
    if spec.input == "image":
        h, w = spec.img_size
        if h != w:
            fail("spec.img_size", "a square image for ViT", spec.img_size)
        return ViT(img_size=h, in_chans=spec.in_chans, num_classes=spec.num_classes, **{**common, **kwargs})
    io = {"vocab_size": spec.vocab_size} if spec.input == "tokens" else {"in_dim": spec.in_dim}
    head = {"lm": "lm", "class": "class", "regression": "regression"}[spec.output]
    out = {"out_dim": spec.out_dim} if head == "regression" else {"num_classes": spec.num_classes}
    kwargs.setdefault("max_len", spec.seq_len)
    kwargs.setdefault("causal", spec.causal)
    if head == "class" and spec.causal:
        kwargs.setdefault("pool", "last")
    return SequenceModel(**io, head=head, **out, **{**common, **kwargs})
