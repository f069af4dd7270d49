"""Counting the floating-point operations of a call, attention included.

``torch.utils.flop_counter.FlopCounterMode`` counts matrix products and convolutions but not the
fused CPU kernel of ``scaled_dot_product_attention``. :func:`count_flops` therefore runs the call
inside ``attnlab.record_attention``, where every attnlab attention op takes its explicit path
(``Q K^T``, softmax, ``P V`` as matrix products the counter sees), and returns the counter's total.
The values are the same computation's; only attention ops that bypass attnlab's ops are missed.
"""
from __future__ import annotations

from typing import Callable

from torch.utils.flop_counter import FlopCounterMode

from attnlab.ops.recording import record_attention

__all__ = ["count_flops"]


def count_flops(fn: Callable[..., object], *args, **kwargs) -> int:
    """FLOPs (multiply and add counted separately: a (m, k) x (k, n) product is 2 m k n) of ``fn(*args, **kwargs)``,
    forward only, counted by torch's FlopCounterMode with attnlab's attention ops on their explicit paths."""
    with record_attention(), FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())
