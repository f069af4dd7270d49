"""The bf16 tables: candidates timed round-robin with wall and CPU time, each item's candidates really run."""
from __future__ import annotations

import torch

from attnlab.bench.precision_tables import interleaved_wall_cpu, item_attention, item_delta_rule, item_layer, ratio_rows


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


def test_ratio_rows_against_the_same_configuration_and_the_fastest_fp32():
    # hand-written times (wall s, CPU s): fp32 is fastest at C=32 (CPU 0.100), bf16 at C=64
    res = {"fp32 chunkwise C=32": (0.110, 0.100), "fp32 chunkwise C=64": (0.130, 0.120),
           "bf16 chunkwise C=32": (0.080, 0.080), "bf16 chunkwise C=64": (0.055, 0.050)}
    rows = {key: (same, best) for key, _, _, same, best in ratio_rows("delta_rule", res)}
    assert rows["fp32 chunkwise C=32"] == ("1 | 1", "")
    assert rows["bf16 chunkwise C=64"] == ("2.36 | 2.40", "2.00 | 2.00")  # the target's ratio: 0.100 / 0.050
    assert rows["bf16 chunkwise C=32"] == ("1.38 | 1.25", "1.38 | 1.25")
    layer = {"fp32 hand-written": (0.2, 0.2), "fp32 softmax mixer": (0.25, 0.25)}
    assert [r[3] for r in ratio_rows("layer", layer)] == ["1.00 | 1.00", "0.80 | 0.80"]
