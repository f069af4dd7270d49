"""Recording attention probabilities for analysis, through one mechanism.

``with record_attention(model) as rec: model(x)`` makes every attention op called
inside the block compute its probabilities explicitly and store them (detached) in
``rec``, labelled by the qualified name of the mixer module that called it. Fused
kernels (SDPA) do not expose probabilities, so while recording is on the ops take
their reference path; outside the block nothing changes and nothing is stored.
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn

_ACTIVE: contextvars.ContextVar["AttentionRecorder | None"] = contextvars.ContextVar("attnlab_recorder", default=None)


@dataclass
class AttentionRecorder:
    """Holds recorded attention maps.

    ``maps`` maps a label (the mixer's qualified module name, or ``"call<i>"``
    when no model was given) to the list of probability tensors recorded under
    it, each of shape (B, H, N, M) for softmax-style attention.
    """

    maps: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    #: label -> list of max |logit| (pre-softmax, after scaling) per call, as in P02's logit-growth plots
    max_logits: dict[str, list[float]] = field(default_factory=dict)
    _label_stack: list[str] = field(default_factory=list)
    _calls: int = 0

    def add(self, probs: torch.Tensor, logits: torch.Tensor | None = None) -> None:
        """Store ``probs`` (detached) and the max |logit| under the current module's label."""
        label = self._label_stack[-1] if self._label_stack else f"call{self._calls}"
        self._calls += 1
        self.maps.setdefault(label, []).append(probs.detach())
        if logits is not None:
            finite = logits.detach()[torch.isfinite(logits.detach())]
            value = finite.abs().max().item() if finite.numel() else float("nan")
            self.max_logits.setdefault(label, []).append(value)

    def last(self, label: str) -> torch.Tensor:
        """The most recent map recorded under ``label``."""
        if label not in self.maps:
            raise KeyError(f"label: expected one of {sorted(self.maps)}, received {label!r}")
        return self.maps[label][-1]


def is_recording() -> bool:
    """True inside a ``record_attention`` block."""
    return _ACTIVE.get() is not None


def record(probs: torch.Tensor, logits: torch.Tensor | None = None) -> None:
    """Called by ops: store ``probs`` (and max |logits|) if recording is on (no-op otherwise)."""
    rec = _ACTIVE.get()
    if rec is not None:
        rec.add(probs, logits)


@contextlib.contextmanager
def record_attention(model: nn.Module | None = None) -> Iterator[AttentionRecorder]:
    """Record attention probabilities of every op called inside the block.

    Args:
        model: optional module; each of its ``TokenMixer`` submodules labels the
            maps it produces with its qualified name (e.g. ``"blocks.0.mixer"``).
    Yields:
        An :class:`AttentionRecorder` whose ``maps`` fill as the model runs.
    """
    rec = AttentionRecorder()
    handles = []
    if model is not None:
        # Duck-typed so that ops never import mixers: TokenMixer sets this flag.
        for name, mod in model.named_modules():
            if getattr(mod, "is_token_mixer", False):
                label = name or type(mod).__name__

                def pre(_m, _a, _label=label):
                    rec._label_stack.append(_label)

                def post(_m, _a, _o):
                    rec._label_stack.pop()

                handles.append(mod.register_forward_pre_hook(pre))
                handles.append(mod.register_forward_hook(post))
    token = _ACTIVE.set(rec)
    try:
        yield rec
    finally:
        _ACTIVE.reset(token)
        for h in handles:
            h.remove()


@torch.no_grad()
def recorded_eval_forward(model: nn.Module, inputs: torch.Tensor) -> AttentionRecorder:
    """Run ``model(inputs)`` once in eval mode without gradients inside :func:`record_attention`.

    The analysis tools (attention maps, logit growth) all read one recorded forward pass;
    the model's train/eval mode is restored afterwards, also when the forward raises.

    Args:
        model: any module whose attention goes through attnlab's ops.
        inputs: what ``model`` takes, e.g. (B, N) token ids or (B, C, H, W) images.
    Returns:
        The :class:`AttentionRecorder` holding every map and max |logit| recorded.
    """
    was_training = model.training
    model.eval()
    try:
        with record_attention(model) as rec:
            model(inputs)
    finally:
        model.train(was_training)
    return rec
