"""Datasets and generators, deterministic from a seed, no downloads.

``create(name, **kw)`` builds a registered task; ``available()`` lists them.
"""
from attnlab.tasks.base import Batch, Task, TaskSpec
from attnlab.tasks.registry import available, create, register

# Task modules (importing registers them). Add one line per module.

__all__ = ["Task", "TaskSpec", "Batch", "create", "available", "register"]
