"""timm interop for the vision designs: importing timm on a CPU-only torch, and weight key mappings.

**Importing timm.** timm imports torchvision at its top level. The torchvision
wheels on PyPI are CUDA builds: their ``_C.so`` fails to load beside the CPU
torch, after which ``torchvision/_meta_registrations.py`` crashes with
``operator torchvision::nms does not exist``. :func:`import_timm` defines the
two op schemas that file registers fake kernels for (``nms``, ``qnms``; see
``attnlab.utils.torchvision_shim``) before the first torchvision import, so
torchvision's Python parts and all of timm import and run; only torchvision's
compiled ops (``torchvision.ops.nms``, ``roi_align``, ...) stay unusable, and
attnlab never calls them. Install route
(pinned so pip never swaps the CPU torch for a CUDA one)::

    pip install "timm==1.0.31" "torchvision==0.28.0" -c <(echo torch==2.13.0)

**Key mappings.** attnlab's ConViT, CrossViT, TNT and SHViT keep timm's module
names, so most keys are identical. :data:`KEY_MAPPINGS` documents, per design,
the rules that turn a timm ``state_dict`` into an attnlab one, and
:func:`load_timm_state_dict` applies them and loads strictly. The only real
rewrite is TNT: timm's attention has separate ``qk`` and ``v`` projections and
attnlab's TNT uses the shared softmax mixer with one fused ``qkv``.
"""
from __future__ import annotations

import importlib
import re
from typing import Callable

import torch
from torch import nn

from attnlab.utils.torchvision_shim import define_torchvision_schemas

__all__ = ["import_timm", "timm_available", "KEY_MAPPINGS", "convert_timm_state_dict", "load_timm_state_dict"]

INSTALL_HINT = 'pip install "timm==1.0.31" "torchvision==0.28.0" -c <(echo torch==2.13.0)'

def import_timm():
    """Return the ``timm`` module, importing it through the torchvision shim.

    Raises:
        ImportError: timm or torchvision is not installed, or cannot be
            imported even with the shim; the message gives the install command.
    """
    define_torchvision_schemas()
    try:
        return importlib.import_module("timm")
    except Exception as e:  # noqa: BLE001
        raise ImportError(
            f"timm: expected an importable timm (with torchvision), received {type(e).__name__}: {e}. "
            f"Install it with: {INSTALL_HINT}"
        ) from e


def timm_available() -> tuple[bool, str]:
    """(True, version) if :func:`import_timm` works here, else (False, reason)."""
    try:
        timm = import_timm()
    except ImportError as e:
        return False, str(e)
    return True, timm.__version__


def _tnt_fuse_qk_v(sd: dict) -> dict:
    """timm TNT attention: ``attn_*.qk`` (2C, C) + ``attn_*.v`` (C, C) -> ``attn_*.qkv`` (3C, C).

    timm reshapes qk as (2, heads, d) and v as (heads, d), so concatenating the
    rows gives exactly the (3, heads, d) layout of attnlab's softmax mixer.
    """
    out = {}
    for k, v in sd.items():
        m = re.match(r"(.*attn_(?:in|out))\.qk\.(weight|bias)$", k)
        if m:
            out[f"{m.group(1)}.qkv.{m.group(2)}"] = torch.cat([v, sd[f"{m.group(1)}.v.{m.group(2)}"]], dim=0)
        elif re.match(r".*attn_(?:in|out)\.v\.(weight|bias)$", k):
            continue
        else:
            out[k] = v
    return out


#: Per design: the list of rules (documentation) and the function applying them.
KEY_MAPPINGS: dict[str, tuple[list[str], Callable[[dict], dict]]] = {
    "convit": (
        [
            "identical keys: patch_embed.proj, cls_token, pos_embed, blocks.{i}.{norm1,attn,norm2,mlp}, norm, head",
            "GPSA blocks: attn.{qk,v,proj,pos_proj,gating_param}; MHSA blocks: attn.{qkv,proj}",
            "timm's embed_dim is per head (x num_heads); attnlab's embed_dim is the full width",
        ],
        dict,
    ),
    "crossvit": (
        [
            "identical keys: patch_embed.{b}.proj, cls_token_{b}, pos_embed_{b}, norm.{b}, head.{b}",
            "blocks.{k}.blocks.{b}.{j}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}",
            "blocks.{k}.projs.{b}.{0,2}, blocks.{k}.fusion.{b}.{norm1,attn.wq,attn.wk,attn.wv,attn.proj}, "
            "blocks.{k}.revert_projs.{b}.{0,2}",
            "build timm with img_scale=(1.0, 1.0): attnlab feeds both branches the same image",
        ],
        dict,
    ),
    "tnt": (
        [
            "identical keys except attention: blocks.{i}.attn_{in,out}.{qk,v} -> blocks.{i}.attn_{in,out}.qkv "
            "(rows concatenated [qk; v]); attn_*.proj unchanged",
        ],
        _tnt_fuse_qk_v,
    ),
    "shvit": (
        [
            "identical keys: patch_embed.{0,2,4,...}.{c,bn}, stages.{i}.downsample.*, "
            "stages.{i}.blocks.{j}.{conv.m,mixer.m.{pre_norm,qkv,proj.1},ffn.m.{pw1,pw2}}, head.{bn,l}",
            "BatchNorm running statistics are buffers and are copied too",
        ],
        dict,
    ),
}


def convert_timm_state_dict(design: str, state_dict: dict) -> dict:
    """Apply the key mapping of ``design`` (one of KEY_MAPPINGS) to a timm state dict."""
    if design not in KEY_MAPPINGS:
        raise KeyError(f"design: expected one of {sorted(KEY_MAPPINGS)}, received {design!r}")
    return KEY_MAPPINGS[design][1](dict(state_dict))


def load_timm_state_dict(model: nn.Module, design: str, state_dict: dict) -> nn.Module:
    """Load a timm ``state_dict`` of ``design`` into the attnlab ``model`` (strict) and return the model."""
    model.load_state_dict(convert_timm_state_dict(design, state_dict), strict=True)
    return model
