"""attnlab.mixers.base beyond the registry-wide contract tests: check_num_heads and Capabilities.as_dict."""
from __future__ import annotations

import pytest

from attnlab.mixers.base import Capabilities, check_num_heads


def test_check_num_heads_accepts_divisors_and_names_the_argument():
    assert check_num_heads(12, 3) == 3
    with pytest.raises(ValueError, match=r"num_heads: expected a divisor of dim=12, received 5"):
        check_num_heads(12, 5)
    with pytest.raises(ValueError, match=r"num_heads: expected a positive int"):
        check_num_heads(12, 0)
    with pytest.raises(TypeError, match=r"num_heads"):
        check_num_heads(12, 2.0)


def test_capabilities_as_dict_lists_every_field():
    caps = Capabilities(causal=True, grid="required", grid_dims=(2,), paper="P10")
    d = caps.as_dict()
    assert d["causal"] and d["grid"] == "required" and d["grid_dims"] == (2,) and d["paper"] == "P10"
    assert set(d) == {"causal", "bidirectional", "grid", "grid_dims", "key_padding_mask", "cross", "recurrent",
                      "complexity", "paper", "context"}


def test_capabilities_context_names_known_kinds():
    assert Capabilities(context=("embeddings", "token_ids")).context == ("embeddings", "token_ids")
    with pytest.raises(TypeError, match=r"Capabilities.context: expected a tuple of distinct context kinds"):
        Capabilities(context=("layer0",))
    with pytest.raises(TypeError, match=r"Capabilities.context"):
        Capabilities(context="embeddings")
