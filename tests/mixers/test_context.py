"""attnlab.mixers.context: the declared kinds and the checks of a given context."""
from __future__ import annotations

import pytest
import torch

from attnlab.mixers.context import CONTEXT_KINDS, check_context, check_context_kinds


def test_kinds_are_checked():
    assert check_context_kinds(("embeddings",)) == ("embeddings",)
    with pytest.raises(TypeError, match=r"context: expected a tuple of distinct context kinds"):
        check_context_kinds(("embeddings", "embeddings"))
    assert set(CONTEXT_KINDS) == {"token_ids", "embeddings", "random_stream", "text_stream"}


def test_context_is_checked_per_kind():
    ok = check_context("M", ("token_ids", "random_stream"), {"token_ids": torch.zeros(2, 3, dtype=torch.long),
                                                             "random_stream": torch.zeros(1, 3, 4), "extra": 1},
                       2, 3, torch.device("cpu"))
    assert set(ok) == {"token_ids", "random_stream"}
    with pytest.raises(ValueError, match=r"context\['token_ids'\]: expected integer token ids of shape \(B, N\) = \(2, 3\)"):
        check_context("M", ("token_ids",), {"token_ids": torch.zeros(2, 3)}, 2, 3, torch.device("cpu"))
    with pytest.raises(ValueError, match=r"context\['embeddings'\]: expected a float tensor of shape \(2, N=3"):
        check_context("M", ("embeddings",), {"embeddings": torch.zeros(1, 3, 4)}, 2, 3, torch.device("cpu"))
    with pytest.raises(TypeError, match=r"context: expected a mapping with 'embeddings' .*: M needs it"):
        check_context("M", ("embeddings",), [1], 2, 3, torch.device("cpu"))
