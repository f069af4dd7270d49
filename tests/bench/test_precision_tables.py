"""The bf16 tables: candidates timed round-robin with wall and CPU time, each item's candidates really run."""
from __future__ import annotations

import torch

from attnlab.bench.precision_tables import interleaved_wall_cpu, item_attention, item_delta_rule, item_layer


def test_wall_and_cpu_medians_of_every_candidate():
    calls = []
    res = interleaved_wall_cpu({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=2)
    assert calls == ["a", "b"] * 3  # one warm-up round, then two timed rounds
    assert set(res) == {"a", "b"} and all(w >= 0 and c >= 0 for w, c in res.values())


def test_items_build_fp32_and_bf16_candidates_that_run_at_small_sizes():
    for fns, dtypes in ((item_attention(16), 2), (item_delta_rule(32), 4), (item_layer(8, batch=1, dim=16, heads=2), 2)):
        assert len(fns) == dtypes
        for fn in fns.values():
            fn()  # forward and backward
    assert any(k.startswith("bf16") for k in item_attention(16))
    torch.manual_seed(0)
