"""The scale-out benchmarks: the communication volumes by hand, and (slow: real processes) one tiny run of each."""
from __future__ import annotations

import pytest

from attnlab.bench.distributed import compare_wall, ddp_throughput, sp_communication_bytes, sp_memory


@pytest.mark.parametrize("kind, n, world, mib", [
    # E = 8 heads * N/W * 64 fp32; Ulysses 12 E (W-1)/W, ring (6 (W-1) + 2) E
    ("ulysses", 16384, 2, 12 * 8 * 8192 * 64 * 4 / 2 / 2**20),   # 96 MiB
    ("ring", 16384, 2, 8 * 8 * 8192 * 64 * 4 / 2**20),             # 128 MiB
    ("ring", 16384, 4, 20 * 8 * 4096 * 64 * 4 / 2**20),            # 160 MiB
])
def test_communication_volume(kind, n, world, mib):
    assert sp_communication_bytes(kind, n, world) == int(mib * 2**20)


def test_unknown_kind():
    with pytest.raises(ValueError, match="kind: expected 'ulysses' or 'ring'"):
        sp_communication_bytes("zigzag", 64, 2)


@pytest.mark.slow  # starts processes for every arm: 30-90 s
def test_tiny_runs_measure_every_arm(tmp_path):
    rows = sp_memory(256)
    assert [r["kind"] for r in rows] == ["single", "ulysses", "ring"] and all(r["peak_mib_per_rank"] >= 0 for r in rows)
    rows = ddp_throughput(steps=2, batch=4, seq_len=32, dim=16, depth=1)
    assert [r["world"] for r in rows] == [1, 2] and all(r["tokens_per_s_per_process"] > 0 for r in rows)
    rows = compare_wall("smoke", 0.5, out_dir=str(tmp_path))
    assert [r["workers"] for r in rows] == [1, 2] and rows[0]["qualities"] == rows[1]["qualities"]
