"""Repro deltanet (P12): quick mode end to end on the real task (associative_recall) and models."""
from __future__ import annotations

import torch

from attnlab.repro.base import VERDICTS, ReproContext


def test_quick_run(tmp_path):
    from attnlab.repro import deltanet

    out = deltanet.run(ReproContext(quick=True, out_dir=tmp_path, progress=False))
    assert out.verdict in VERDICTS
    final = out.measured["final"]
    assert set(final) | set(out.measured["skipped"]) == set(deltanet.MODELS)
    assert {"linear_attention", "deltanet", "softmax"} <= set(final)
    assert all(0.0 <= v <= 1.0 for v in final.values())
    assert all(len(c) >= 2 for c in out.measured["curves"].values())
    assert out.plots and out.plots[0].endswith(".png")


def _check_causal(model, vocab):
    x = torch.randint(0, vocab, (2, 20))
    y = model(x)
    x2 = x.clone()
    x2[:, 12:] = torch.randint(0, vocab, (2, 8))
    y2 = model(x2)
    torch.testing.assert_close(y2[:, :12], y[:, :12], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(y2[:, 12:], y[:, 12:])


def test_hybrid_patterns_are_causal():
    """The P12 hybrids as backbone patterns: 3 DeltaNet + 1 softmax, and DeltaNet / sliding window alternating."""
    from attnlab.models import SequenceModel

    torch.manual_seed(0)
    model = SequenceModel(vocab_size=17, dim=16, depth=4, num_heads=2, mixer="deltanet*3,softmax",
                          max_len=32, causal=True).eval()
    names = [type(m).__name__ for m in model.modules() if getattr(m, "is_token_mixer", False)]
    assert names.count("DeltaNet") == 3 and len(names) == 4
    _check_causal(model, 17)
    model = SequenceModel(vocab_size=17, dim=16, depth=4, num_heads=2, mixer="deltanet,sliding_window",
                          mixer_kwargs={"sliding_window": {"window": 4}}, max_len=32, causal=True).eval()
    names = [type(m).__name__ for m in model.modules() if getattr(m, "is_token_mixer", False)]
    assert names.count("DeltaNet") == 2 and len(names) == 4
    _check_causal(model, 17)
