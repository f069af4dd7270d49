"""Where a decoder's blocks and their attention and MLP sub-layers are: attnlab models and Hugging Face families.

The module-redundancy tools (P17) observe and replace sub-layers by name, never by reaching into
a model's code. :func:`find_layout` returns a :class:`DecoderLayout`:

- attnlab models with ``blocks`` of :class:`~attnlab.layers.MixerBlock` (``mixer`` / ``ffn``:
  ``SequenceModel``, ``ViT``) or of the timm-named :class:`~attnlab.layers.Block` (``attn`` / ``mlp``);
- Hugging Face decoders of the families in :data:`~attnlab.analysis.hf_models.HF_FAMILIES`
  (Llama, Mistral, Qwen2, Qwen3: ``model.layers[i].self_attn`` / ``.mlp``; GPT-2:
  ``transformer.h[i].attn`` / ``.mlp``).

Any other model gets a ValueError saying which module names were looked for.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from attnlab.analysis.hf_models import HF_FAMILIES, hf_model_type, is_hf_model
from attnlab.layers import Block, MixerBlock
from attnlab.utils.checks import fail

__all__ = ["DecoderLayout", "find_layout", "LOOKED_FOR"]

#: what find_layout looks for, as said in its error message
LOOKED_FOR = ("attnlab: blocks[i] of MixerBlock (.mixer, .ffn) or Block (.attn, .mlp); Hugging Face "
              + "; ".join(f"{kind}: {' or '.join(p + '[i]' for p in paths)} (.{attn}, .{mlp})"
                          for kind, (paths, attn, mlp) in sorted(HF_FAMILIES.items())))


@dataclass(frozen=True)
class DecoderLayout:
    """A decoder's blocks and the attribute names of their sub-layers.

    Attributes:
        kind: ``"attnlab"`` or ``"hf"``.
        family: ``"MixerBlock"`` / ``"Block"`` for attnlab, the ``model_type`` for Hugging Face.
        blocks: the L blocks, in order.
        block_names: their qualified module names (e.g. ``"model.layers.3"``).
        attn: attribute of the attention (token-mixing) sub-layer in each block.
        mlp: attribute of the MLP sub-layer, or None when some block has none (attnlab ``ffn="none"``).
    """

    kind: str
    family: str
    blocks: tuple[nn.Module, ...]
    block_names: tuple[str, ...]
    attn: str
    mlp: str | None

    @property
    def depth(self) -> int:
        """Number of blocks L."""
        return len(self.blocks)

    def attn_module(self, i: int) -> nn.Module:
        """The attention sub-layer of block ``i``."""
        return getattr(self.blocks[i], self.attn)

    def mlp_module(self, i: int) -> nn.Module | None:
        """The MLP sub-layer of block ``i`` (None when the layout has none)."""
        return getattr(self.blocks[i], self.mlp) if self.mlp is not None else None


def _get(model: nn.Module, path: str) -> nn.Module | None:
    mod = model
    for part in path.split("."):
        mod = getattr(mod, part, None)
        if mod is None:
            return None
    return mod


def find_layout(model: object) -> DecoderLayout:
    """The :class:`DecoderLayout` of ``model``; ValueError naming the module names looked for if none fits."""
    if not isinstance(model, nn.Module):
        fail("model", "a torch.nn.Module", type(model).__name__, TypeError)
    if is_hf_model(model):
        kind = hf_model_type(model)
        paths, attn, mlp = HF_FAMILIES[kind]
        for path in paths:
            blocks = _get(model, path)
            if isinstance(blocks, nn.ModuleList) and len(blocks) and all(
                    isinstance(getattr(b, attn, None), nn.Module) and isinstance(getattr(b, mlp, None), nn.Module)
                    for b in blocks):
                return DecoderLayout("hf", kind, tuple(blocks), tuple(f"{path}.{i}" for i in range(len(blocks))),
                                     attn, mlp)
        fail("model", f"a {kind} decoder with blocks at {' or '.join(paths)} (.{attn}, .{mlp})",
             f"{type(model).__name__} without them")
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, nn.ModuleList) and len(blocks):
        for cls, attn, mlp in ((MixerBlock, "mixer", "ffn"), (Block, "attn", "mlp")):
            if all(isinstance(b, cls) for b in blocks):
                has_mlp = all(getattr(b, mlp) is not None for b in blocks)
                return DecoderLayout("attnlab", cls.__name__, tuple(blocks),
                                     tuple(f"blocks.{i}" for i in range(len(blocks))), attn, mlp if has_mlp else None)
    fail("model", f"a decoder whose blocks the drop tool can find ({LOOKED_FOR})", type(model).__name__)
