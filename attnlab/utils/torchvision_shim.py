"""Importing torchvision's Python side beside the CPU build of torch (timm and transformers need it).

The torchvision wheels on PyPI are CUDA builds: their compiled ``_C.so`` fails to load beside
the CPU torch, after which ``torchvision/_meta_registrations.py`` crashes on import with
``operator torchvision::nms does not exist``. Both timm and Hugging Face ``transformers``
import torchvision when it is installed, so both fail the same way. :func:`define_torchvision_schemas`
defines the two op schemas that file registers fake kernels for (``nms``, ``qnms``) before the
first torchvision import; torchvision's Python parts then import and run, and only its compiled
ops (``torchvision.ops.nms``, ``roi_align``, ...) stay unusable (attnlab never calls them).
Where torchvision is absent or loads normally, nothing is changed.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

__all__ = ["define_torchvision_schemas"]

_SHIM: list = []  # keeps the torch.library handle alive (dropping it would unregister the schemas)


def define_torchvision_schemas() -> None:
    """Define ``torchvision::nms`` / ``qnms`` so torchvision's meta registrations import without its _C library.

    Idempotent: a working torchvision build, an absent torchvision or an earlier call leave torch unchanged.
    """
    if _SHIM:
        return
    try:
        torch._C._dispatch_find_schema_or_throw("torchvision::nms", "")
        has_nms = True
    except RuntimeError:
        has_nms = False
    spec = importlib.util.find_spec("torchvision") if not has_nms else None
    if spec is None and not has_nms:  # no torchvision: nothing will import it
        _SHIM.append(None)
        return
    if not has_nms and spec.submodule_search_locations:
        # A CPU torchvision defines the ops when its compiled library loads; only shim if that fails.
        for lib_path in Path(list(spec.submodule_search_locations)[0]).glob("_C*.so"):
            try:
                torch.ops.load_library(str(lib_path))
                has_nms = True
            except (OSError, RuntimeError):
                pass
    if has_nms:  # a working torchvision build or an earlier shim already defined them
        _SHIM.append(None)
        return
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _SHIM.append(lib)
