"""Datasets and generators, deterministic from a seed, no downloads.

``create(name, **kw)`` builds a registered task; ``available()`` lists them.
"""
from attnlab.tasks.base import Batch, Task, TaskSpec
from attnlab.tasks.registry import available, create, register

# Task modules (importing registers them). Add one line per module.
from attnlab.tasks import recall  # noqa: E402,F401
from attnlab.tasks import icl_regression  # noqa: E402,F401
from attnlab.tasks import char_lm  # noqa: E402,F401
from attnlab.tasks import digits  # noqa: E402,F401
from attnlab.tasks import shapes  # noqa: E402,F401
from attnlab.tasks import selective_copy  # noqa: E402,F401
from attnlab.tasks import far_cue  # noqa: E402,F401
from attnlab.tasks import scan_snap  # noqa: E402,F401

__all__ = ["Task", "TaskSpec", "Batch", "create", "available", "register"]
