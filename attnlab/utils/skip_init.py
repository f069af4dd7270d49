"""Build modules without initialising their weights, to count parameters fast.

Initialising the default configs of the vision designs (tens of millions of weights through
``trunc_normal_``, whose ``erfinv`` is slow on a CPU) takes seconds; ``attnlab list`` only needs
their parameter counts. Inside :func:`skip_init` every ``torch.nn.init`` function returns its
tensor untouched, so parameters keep whatever ``torch.empty`` gave them: only for counting or
shapes, never for a model that will be run.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["skip_init"]


def _keep(tensor, *args, **kwargs):
    return tensor


@contextlib.contextmanager
def skip_init() -> Iterator[None]:
    """Inside the block, ``torch.nn.init.*_`` functions (``trunc_normal_``, ``kaiming_uniform_``, ...) do nothing.

    Code that initialises through them (as ``nn.Linear.reset_parameters`` and timm-style
    ``_init_weights`` do) then builds in the time it takes to allocate. Restored on exit.
    """
    init = torch.nn.init
    names = [n for n in dir(init) if n.endswith("_") and not n.startswith("_") and callable(getattr(init, n))]
    saved = {n: getattr(init, n) for n in names}
    try:
        for n in names:
            setattr(init, n, _keep)
        yield
    finally:
        for n, fn in saved.items():
            setattr(init, n, fn)
