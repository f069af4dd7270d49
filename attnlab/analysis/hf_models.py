"""Hugging Face ``transformers`` decoders for the analysis tools: an optional dependency, loaded from disk only.

``transformers`` is an optional extra (``pip install -e ".[hf]" -c constraints.txt``); nothing in
attnlab imports it at module level. :func:`import_transformers` imports it (through the
torchvision shim, since transformers imports torchvision when it is installed, see
``attnlab.utils.torchvision_shim``) or raises ImportError with the install command.

Weights are never downloaded: :func:`load_hf_causal_lm` reads a local folder (``save_pretrained``
output) or a model name already in the local Hugging Face cache (``local_files_only=True``).

:data:`HF_FAMILIES` lists the decoder families whose blocks the drop tool knows: where the blocks
live and what their attention and MLP sub-layers are called. All of them are sequential pre-norm
blocks, h' = h + attn(norm1 h), h'' = h' + mlp(norm2 h').
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from attnlab.utils.checks import fail
from attnlab.utils.torchvision_shim import define_torchvision_schemas

__all__ = ["HF_FAMILIES", "HF_INSTALL", "import_transformers", "transformers_available", "is_hf_model",
           "hf_model_type", "load_hf_causal_lm", "load_hf_tokenizer"]

#: how to install the optional dependency (the constraints file keeps the CPU torch)
HF_INSTALL = 'pip install -e ".[hf]" -c constraints.txt'

#: model_type -> (paths tried for the block list, attention attribute, MLP attribute)
HF_FAMILIES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "llama": (("model.layers", "layers"), "self_attn", "mlp"),
    "mistral": (("model.layers", "layers"), "self_attn", "mlp"),
    "qwen2": (("model.layers", "layers"), "self_attn", "mlp"),
    "qwen3": (("model.layers", "layers"), "self_attn", "mlp"),
    "gpt2": (("transformer.h", "h"), "attn", "mlp"),
}


def import_transformers():
    """The ``transformers`` module (its progress bars off); ImportError naming the install command if it is absent."""
    define_torchvision_schemas()
    try:
        import transformers
    except Exception as e:  # noqa: BLE001 - any import failure means "not usable here"
        raise ImportError(f"transformers: expected an importable transformers, received {type(e).__name__}: {e}. "
                          f"Install it with: {HF_INSTALL}") from e
    transformers.utils.logging.disable_progress_bar()
    return transformers


def transformers_available() -> tuple[bool, str]:
    """(True, version) if :func:`import_transformers` works here, else (False, reason with the install command)."""
    try:
        return True, import_transformers().__version__
    except ImportError as e:
        return False, str(e)


def is_hf_model(model: object) -> bool:
    """True for a Hugging Face ``PreTrainedModel`` (duck-typed: a ``config`` with a ``model_type``)."""
    return isinstance(model, nn.Module) and isinstance(getattr(getattr(model, "config", None), "model_type", None), str)


def hf_model_type(model: nn.Module) -> str:
    """The model's ``config.model_type``; ValueError naming the supported families if it is not one of them."""
    kind = model.config.model_type
    if kind not in HF_FAMILIES:
        fail("model", f"a Hugging Face decoder of a supported family ({', '.join(sorted(HF_FAMILIES))})",
             f"model_type {kind!r} ({type(model).__name__})")
    return kind


def load_hf_causal_lm(name_or_path: str, *, arg: str = "name_or_path") -> nn.Module:
    """``AutoModelForCausalLM`` from a local folder or the local Hugging Face cache (never downloaded), in eval mode.

    ValueError naming ``arg`` when it is neither, and naming the supported families when its
    ``model_type`` is not in :data:`HF_FAMILIES`.
    """
    transformers = import_transformers()
    try:
        config = transformers.AutoConfig.from_pretrained(name_or_path, local_files_only=True)
    except (OSError, ValueError) as e:
        fail(arg, "a local Hugging Face model folder or a model name in the local Hugging Face cache "
             "(attnlab never downloads weights)", f"{name_or_path!r} ({type(e).__name__}: {str(e).splitlines()[0]})")
    if config.model_type not in HF_FAMILIES:
        fail(arg, f"a Hugging Face decoder of a supported family ({', '.join(sorted(HF_FAMILIES))})",
             f"model_type {config.model_type!r} in {name_or_path!r}")
    model = transformers.AutoModelForCausalLM.from_pretrained(name_or_path, local_files_only=True)
    return model.eval()


def load_hf_tokenizer(name_or_path: str):
    """The tokenizer saved with the model, or None when the folder / cache entry has none."""
    transformers = import_transformers()
    if Path(name_or_path).is_dir() and not any(Path(name_or_path).glob("tokenizer*")):
        return None
    try:
        return transformers.AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
    except (OSError, ValueError, TypeError):
        return None
