"""Token mixers behind one contract: x (B, N, C) -> (B, N, C).

``create(name, dim, **kw)`` builds a registered mixer; ``available()`` lists them
with their capabilities and paper ids. Each family lives in its own module; the
imports below register them.
"""
from attnlab.mixers.base import Capabilities, TokenMixer
from attnlab.mixers.registry import MixerInfo, available, create, get_info, register

# Families (importing a module registers its mixers). Add one line per module.
from attnlab.mixers import identity  # noqa: E402,F401
from attnlab.mixers import softmax  # noqa: E402,F401
from attnlab.mixers import spectral_gating  # noqa: E402,F401
from attnlab.mixers import activator_glu  # noqa: E402,F401
from attnlab.mixers import gpsa  # noqa: E402,F401
from attnlab.mixers import linear_attention  # noqa: E402,F401
from attnlab.mixers import deltanet  # noqa: E402,F401
from attnlab.mixers import random_features  # noqa: E402,F401
from attnlab.mixers import bilevel_routing  # noqa: E402,F401
from attnlab.mixers import strip_attention  # noqa: E402,F401
from attnlab.mixers import ssa  # noqa: E402,F401
from attnlab.mixers import hyena  # noqa: E402,F401
from attnlab.mixers import hyena_nd  # noqa: E402,F401
from attnlab.mixers import mamba  # noqa: E402,F401
from attnlab.mixers import s4d  # noqa: E402,F401
from attnlab.mixers import mamba2d  # noqa: E402,F401
from attnlab.mixers import combiner  # noqa: E402,F401
from attnlab.mixers import sea  # noqa: E402,F401
from attnlab.mixers import neighborhood  # noqa: E402,F401
from attnlab.mixers import sliding_window  # noqa: E402,F401
from attnlab.mixers import axial  # noqa: E402,F401
from attnlab.mixers import fit  # noqa: E402,F401
from attnlab.mixers import deconstructed_qk  # noqa: E402,F401
from attnlab.mixers import taylor_attention  # noqa: E402,F401
from attnlab.mixers import self_gated_attention  # noqa: E402,F401
from attnlab.mixers import gated_mlp  # noqa: E402,F401
from attnlab.mixers import complex_attention  # noqa: E402,F401
from attnlab.mixers import context_sharing  # noqa: E402,F401
from attnlab.mixers import gathering_scattering  # noqa: E402,F401

__all__ = ["TokenMixer", "Capabilities", "MixerInfo", "create", "available", "get_info", "register"]
