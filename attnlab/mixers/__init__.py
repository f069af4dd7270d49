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
from attnlab.mixers import spectral  # noqa: E402,F401
from attnlab.mixers import glu_mixer  # noqa: E402,F401
from attnlab.mixers import gpsa  # noqa: E402,F401
from attnlab.mixers import linear  # noqa: E402,F401
from attnlab.mixers import delta  # noqa: E402,F401
from attnlab.mixers import random_features  # noqa: E402,F401
from attnlab.mixers import routing  # noqa: E402,F401
from attnlab.mixers import strip  # noqa: E402,F401
from attnlab.mixers import ssa  # noqa: E402,F401
from attnlab.mixers import hyena  # noqa: E402,F401
from attnlab.mixers import ssm  # noqa: E402,F401
from attnlab.mixers import combiner  # noqa: E402,F401
from attnlab.mixers import sea  # noqa: E402,F401
from attnlab.mixers import local  # noqa: E402,F401
from attnlab.mixers import axial  # noqa: E402,F401

__all__ = ["TokenMixer", "Capabilities", "MixerInfo", "create", "available", "get_info", "register"]
