"""Shared test settings: deterministic seeds, one thread for reproducible timing-free tests."""
import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")

# The tests use small tensors: one intra-op thread is as fast on a quiet 2-core machine and up to
# 30x faster on a busy one (two OpenMP threads wait on the loaded core), and results do not depend
# on the thread count's reduction order.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
