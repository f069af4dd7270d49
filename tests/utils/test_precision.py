"""The precision helpers: the two op policies under CPU autocast, outside it, and the precision names."""
from __future__ import annotations

import pytest
import torch

from attnlab.utils.precision import (
    check_precision,
    fp32_op,
    lower_precision_op,
    precision_context,
    upcast,
)


@lower_precision_op
def _matmul_op(a, b, *, scale=1.0):
    """Records the dtypes it sees and whether autocast was on inside."""
    _matmul_op.seen = (a.dtype, b.dtype, torch.is_autocast_enabled("cpu"))
    return (a @ b) * scale


@fp32_op
def _scan_op(a, b, extra=None):
    _scan_op.seen = (a.dtype, b.dtype, None if extra is None else extra.dtype, torch.is_autocast_enabled("cpu"))
    return a * b, (a + b).sum()


def test_lower_precision_op_casts_fp32_to_the_autocast_dtype_and_turns_autocast_off_inside():
    a, b = torch.randn(3, 4), torch.randn(4, 2, dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = _matmul_op(a, b.bfloat16(), scale=2.0)
    assert _matmul_op.seen == (torch.bfloat16, torch.bfloat16, False) and out.dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _matmul_op(a.double(), b)  # fp64 is left alone, as autocast does
    assert _matmul_op.seen[:2] == (torch.float64, torch.float64)
    out = _matmul_op(a, b.float())
    assert _matmul_op.seen == (torch.float32, torch.float32, False) and out.dtype == torch.float32


def test_fp32_op_computes_low_precision_in_fp32():
    a, b = torch.randn(5), torch.randn(5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, total = _scan_op(a.bfloat16(), b)
    assert _scan_op.seen == (torch.float32, torch.float32, None, False)
    assert out.dtype == total.dtype == torch.float32  # torch's fp32-listed ops return fp32 under autocast
    out, total = _scan_op(a.bfloat16(), b.bfloat16(), extra=torch.ones(2, dtype=torch.float64))
    assert _scan_op.seen == (torch.float32, torch.float32, torch.float64, False)
    assert out.dtype == total.dtype == torch.bfloat16  # cast back outside autocast
    torch.testing.assert_close(out.float(), (a.bfloat16().float() * b.bfloat16().float()).bfloat16().float())
    _scan_op(a.bfloat16(), b)  # mixed dtypes outside autocast: only the first one's dtype is converted
    assert _scan_op.seen[:2] == (torch.float32, torch.float32)
    _scan_op(a, b.bfloat16())
    assert _scan_op.seen[:2] == (torch.float32, torch.bfloat16)  # left for the op's own dtype check


def test_precision_names_and_context():
    assert check_precision("p", "bf16") == "bf16"
    with pytest.raises(ValueError, match=r"precision: expected one of \['fp32', 'bf16'\], received str 'fp16'"):
        check_precision("precision", "fp16")
    with precision_context("bf16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with precision_context("fp32"):
        assert not torch.is_autocast_enabled("cpu")
    assert upcast(torch.ones(1, dtype=torch.bfloat16)).dtype == torch.float32
    assert upcast(torch.ones(1, dtype=torch.float64)).dtype == torch.float64
