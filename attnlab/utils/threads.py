"""torch's intra-op thread count for a block of work, restored afterwards.

Small models train faster on one thread than on two on this project's 2-core CPU (a second
OpenMP thread waits on the busy core), so reproductions and ``attnlab compare`` run their
training single-threaded without changing the caller's setting.
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

__all__ = ["torch_threads", "single_threaded"]


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Inside the block torch uses ``n`` intra-op threads (None: unchanged); the previous count is restored."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def single_threaded(fn):
    """Decorator: run ``fn`` inside :func:`torch_threads` ``(1)``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch_threads(1):
            return fn(*args, **kwargs)

    return wrapper
