"""The torchvision shim: idempotent, and torchvision's Python side imports after it where torchvision is installed."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from attnlab.utils.torchvision_shim import define_torchvision_schemas


def test_idempotent_and_torchvision_imports_afterwards():
    define_torchvision_schemas()
    define_torchvision_schemas()  # a second call changes nothing (a second DEF of the schemas would raise)
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision not installed: the shim has nothing to do")
    torch._C._dispatch_find_schema_or_throw("torchvision::nms", "")  # defined, by torchvision or the shim
    import torchvision.transforms  # noqa: F401  (crashed with "operator torchvision::nms does not exist")
