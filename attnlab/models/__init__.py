"""Backbones taking any mixer per layer, and the papers' named designs.

    from attnlab.models import SequenceModel, ViT, build_for_task, create, available
    lm = SequenceModel(vocab_size=128, dim=64, depth=4, mixer="deltanet*3,softmax", head="lm")
    vit = ViT(img_size=32, num_classes=10, mixer="softmax")
    convit = create("convit_tiny", img_size=32, num_classes=10)

``register_model`` is defined before the design modules are imported: they
import it from here.
"""
from attnlab.models.registry import (  # noqa: I001
    ModelInfo, available, available_info, count_parameters, create, get_info, register_model,
)

from attnlab.layers import MixerBlock  # noqa: E402
from attnlab.models.mixer_pattern import resolve_mixers  # noqa: E402
from attnlab.models.factory import build_for_task  # noqa: E402
from attnlab.models.icl_attention import ICLAttention  # noqa: E402
from attnlab.models.scan_snap import ScanSnapModel  # noqa: E402
from attnlab.models.att_svm import SVMAttention  # noqa: E402
from attnlab.models.sequence import SequenceModel  # noqa: E402
from attnlab.models.vit import ViT  # noqa: E402

# Named designs (importing a module registers its models). Add one line per module.
from attnlab.models import convit  # noqa: E402,F401
from attnlab.models import crossvit  # noqa: E402,F401
from attnlab.models import tnt  # noqa: E402,F401
from attnlab.models import shvit  # noqa: E402,F401
from attnlab.models import spectformer  # noqa: E402,F401
from attnlab.models import activator  # noqa: E402,F401
from attnlab.models import path_ensemble  # noqa: E402,F401
from attnlab.models import biformer  # noqa: E402,F401
from attnlab.models import s2aformer  # noqa: E402,F401
from attnlab.models import hyena_vit  # noqa: E402,F401
from attnlab.models import dinat  # noqa: E402,F401

__all__ = [
    "SequenceModel", "ViT", "ICLAttention", "ScanSnapModel", "SVMAttention", "MixerBlock", "build_for_task",
    "resolve_mixers",
    "create", "available", "available_info", "get_info", "ModelInfo", "register_model", "count_parameters",
]
