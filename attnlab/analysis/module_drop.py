"""Dropping attention modules, MLPs or whole blocks of a decoder (P17, LLM-Drop): a dropped module becomes the identity.

In a pre-norm block, h' = h + A(norm1 h) and h'' = h' + M(norm2 h'). Dropping the attention
module replaces A by a :class:`DroppedSublayer` whose output is zero, so h' = h exactly; dropping
the MLP does the same for M; dropping a block drops both, so the block returns its input. The
model keeps its structure (state dicts, hooks and module names are unchanged for the rest), the
dropped module's weights are kept aside and :meth:`DroppedModules.restore` puts them back.

Decoding keeps working: a dropped Hugging Face attention module still appends a one-number
placeholder per token to its layer of the KV cache (shape (B, 1, n, 1), the real layer holds
(B, H_kv, n, d)), because Hugging Face reads the sequence length of a cache from its layers;
``generate()`` and step-by-step decoding with ``past_key_values`` / ``cache`` then give the same
logits as a full forward pass of the dropped model (tested).

    plan = DropPlan(attn=(3, 5))                       # or choose_drops(scores, 2, "attn")
    with drop_modules(model, plan):
        ppl = perplexity(model, batches)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attnlab.analysis.decoder_layout import DecoderLayout, find_layout
from attnlab.utils.checks import describe, fail

__all__ = ["DropPlan", "DroppedSublayer", "DroppedModules", "drop_modules"]


@dataclass(frozen=True)
class DropPlan:
    """Which sub-layers to drop, by block index: ``attn`` (attention modules) and ``mlp`` (MLPs).

    A block appears in both when the whole block is dropped (:attr:`blocks`).
    """

    attn: tuple[int, ...] = ()
    mlp: tuple[int, ...] = ()

    def __post_init__(self):
        for name in ("attn", "mlp"):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or not all(
                    isinstance(i, int) and not isinstance(i, bool) for i in value):
                fail(name, "a tuple of block indices (ints)", describe(value), TypeError)
            object.__setattr__(self, name, tuple(sorted(set(value))))

    @property
    def blocks(self) -> tuple[int, ...]:
        """Blocks whose attention and MLP are both dropped (the block is the identity)."""
        return tuple(sorted(set(self.attn) & set(self.mlp)))

    @property
    def size(self) -> int:
        """Number of sub-layers dropped (a block counts twice)."""
        return len(self.attn) + len(self.mlp)

    def describe(self) -> str:
        """Short text, e.g. ``"attn [3, 5]; mlp []"``."""
        return f"attn {list(self.attn)}; mlp {list(self.mlp)}"


class DroppedSublayer(nn.Module):
    """Stands in for a dropped attention module or MLP: returns zeros shaped like its input (B, N, C).

    Inside the block's residual sum this makes the sub-layer the identity. ``tuple_output``: return
    ``(zeros, None)`` as Hugging Face attention modules do; ``cache_layer``: the layer index under
    which a Hugging Face KV cache passed as ``cache`` / ``past_key_values`` / ``past_key_value`` gets its
    (B, 1, n, 1) placeholder (see the module docstring). ``replaced``: the class name of the original.
    """

    def __init__(self, replaced: str, *, tuple_output: bool = False, cache_layer: int | None = None):
        super().__init__()
        self.replaced, self.tuple_output, self.cache_layer = replaced, tuple_output, cache_layer

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        """Zeros like ``hidden_states``; other arguments are accepted and ignored (the cache gets its placeholder)."""
        if self.cache_layer is not None:
            cache = next((kwargs[k] for k in ("cache", "past_key_values", "past_key_value") if kwargs.get(k) is not None),
                         None)
            cache = getattr(cache, "self_attention_cache", cache)  # encoder-decoder caches keep it inside
            if cache is not None and hasattr(cache, "update"):
                b, n = hidden_states.shape[:2]
                placeholder = hidden_states.new_zeros(b, 1, n, 1)
                cache.update(placeholder, placeholder, self.cache_layer)
        zero = torch.zeros_like(hidden_states)
        return (zero, None) if self.tuple_output else zero

    def extra_repr(self) -> str:
        return f"replaced={self.replaced}"


def _check_indices(arg: str, indices: tuple[int, ...], depth: int) -> None:
    bad = [i for i in indices if not 0 <= i < depth]
    if bad:
        fail(arg, f"block indices in [0, {depth})", f"{list(indices)} ({bad} out of range)")


class DroppedModules:
    """The sub-layers of ``plan`` replaced in ``model`` (in place) by :class:`DroppedSublayer`; undo with :meth:`restore`.

    Also a context manager: ``with drop_modules(model, plan): ...`` restores on exit.
    """

    def __init__(self, model: nn.Module, plan: DropPlan, layout: DecoderLayout | None = None):
        if not isinstance(plan, DropPlan):
            fail("plan", "an attnlab.analysis.DropPlan", describe(plan), TypeError)
        layout = layout or find_layout(model)
        _check_indices("plan.attn", plan.attn, layout.depth)
        _check_indices("plan.mlp", plan.mlp, layout.depth)
        if plan.mlp and layout.mlp is None:
            fail("plan.mlp", "no MLP indices (these blocks have no MLP)", list(plan.mlp))
        self.model, self.plan, self.layout = model, plan, layout
        self._saved: list[tuple[nn.Module, str, nn.Module]] = []
        hf = layout.kind == "hf"
        for attr, indices, is_attn in ((layout.attn, plan.attn, True), (layout.mlp, plan.mlp, False)):
            for i in indices:
                block = layout.blocks[i]
                original = getattr(block, attr)
                if isinstance(original, DroppedSublayer):
                    continue  # dropped earlier: stays dropped, restored by whoever dropped it
                layer = getattr(original, "layer_idx", i) if (hf and is_attn) else None
                stand_in = DroppedSublayer(type(original).__name__, tuple_output=hf and is_attn, cache_layer=layer)
                setattr(block, attr, stand_in)
                self._saved.append((block, attr, original))

    def restore(self) -> None:
        """Put the original sub-layers back (idempotent)."""
        while self._saved:
            block, attr, original = self._saved.pop()
            setattr(block, attr, original)

    def __enter__(self) -> "DroppedModules":
        return self

    def __exit__(self, *exc) -> None:
        self.restore()


def drop_modules(model: nn.Module, plan: DropPlan, *, layout: DecoderLayout | None = None) -> DroppedModules:
    """Drop the sub-layers of ``plan`` from ``model`` in place; returns the handle that restores them.

    ``layout`` defaults to :func:`~attnlab.analysis.decoder_layout.find_layout` (attnlab blocks or a
    supported Hugging Face family). ValueError for indices outside [0, L) or MLP indices on blocks
    without MLPs.
    """
    return DroppedModules(model, plan, layout)
