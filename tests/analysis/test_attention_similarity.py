"""Attention similarity tool: hand-computed values, edge cases, differentiability, recorder comparison."""
from __future__ import annotations

import math

import pytest
import torch

from attnlab.analysis.attention_similarity import (
    attention_js,
    attention_kl,
    attention_maps,
    compare_maps,
    compare_recordings,
    mass_recall,
    topk_overlap,
)
from attnlab.ops.recording import record_attention

P = torch.tensor([[0.5, 0.3, 0.2, 0.0], [0.25, 0.25, 0.25, 0.25]], dtype=torch.float64)
Q = torch.tensor([[0.1, 0.6, 0.3, 0.0], [0.25, 0.25, 0.25, 0.25]], dtype=torch.float64)


def test_kl_matches_hand_computation():
    row0 = 0.5 * math.log(0.5 / 0.1) + 0.3 * math.log(0.3 / 0.6) + 0.2 * math.log(0.2 / 0.3)
    assert float(attention_kl(P, Q, eps=1e-12)) == pytest.approx(row0 / 2, rel=1e-9)
    assert float(attention_kl(P, P, eps=1e-12)) == pytest.approx(0.0, abs=1e-9)


def test_kl_is_finite_when_other_misses_keys_and_skips_empty_rows():
    ref = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    other = torch.tensor([[0.0, 1.0], [0.5, 0.5]], dtype=torch.float64)
    value = float(attention_kl(ref, other, eps=1e-6))
    # one row counts (the empty reference row is skipped): about -ln(eps)
    assert value == pytest.approx(-math.log(1e-6 / (1 + 2e-6)), rel=1e-6)


def test_kl_is_a_usable_distillation_loss():
    torch.manual_seed(0)
    target = torch.softmax(torch.randn(2, 3, 5, 7, dtype=torch.float64), -1)
    logits = torch.zeros(2, 3, 5, 7, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.1)
    start = float(attention_kl(target, torch.softmax(logits, -1)).detach())
    for _ in range(300):
        opt.zero_grad()
        attention_kl(target, torch.softmax(logits, -1)).backward()
        opt.step()
    assert float(attention_kl(target, torch.softmax(logits, -1)).detach()) < 0.01 * start


def test_js_is_symmetric_bounded_and_maximal_for_disjoint_rows():
    assert float(attention_js(P, Q)) == pytest.approx(float(attention_js(Q, P)), rel=1e-12)
    a = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    assert float(attention_js(a, b)) == pytest.approx(math.log(2), rel=1e-12)
    assert float(attention_js(a, a)) == 0.0


def test_topk_overlap_hand_cases():
    # row 0: top-2 {0, 1} vs {1, 2} -> 1/2; row 1: all tied -> both pick the same first two -> 1
    assert topk_overlap(P, Q, 2) == pytest.approx(0.75)
    # a causal row with one visible key counts against k_i = 1
    ref = torch.tensor([[1.0, 0.0, 0.0]])
    assert topk_overlap(ref, torch.tensor([[0.9, 0.1, 0.0]]), 2) == 1.0
    assert topk_overlap(ref, torch.tensor([[0.1, 0.9, 0.0]]), 2) == 0.0


def test_topk_overlap_does_not_credit_zeros_of_a_sparse_map():
    ref = torch.tensor([[0.4, 0.3, 0.2, 0.1]])
    sparse = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert topk_overlap(ref, sparse, 3) == pytest.approx(1 / 3)


def test_mass_recall():
    ref = torch.tensor([[0.5, 0.3, 0.2, 0.0]])
    assert mass_recall(ref, torch.tensor([[0.0, 0.5, 0.5, 0.0]])) == pytest.approx(0.5)
    assert mass_recall(ref, ref) == pytest.approx(1.0)


def test_compare_recordings_of_two_models():
    from attnlab.models import SequenceModel

    torch.manual_seed(0)
    kw = dict(vocab_size=11, dim=16, depth=2, num_heads=2, max_len=32)
    dense = SequenceModel(mixer="softmax", **kw).eval()
    combiner = SequenceModel(mixer="combiner_fixed", mixer_kwargs={"block_size": 4}, **kw).eval()
    combiner.load_state_dict(dense.state_dict())
    x = torch.randint(0, 11, (2, 20))
    with torch.no_grad(), record_attention(dense) as rec_a:
        dense(x)
    with torch.no_grad(), record_attention(combiner) as rec_b:
        combiner(x)
    same = compare_recordings(rec_a, rec_a, k=4)
    diff = compare_recordings(rec_a, rec_b, k=4)
    assert set(same) == {"blocks.0.mixer", "blocks.1.mixer"}
    for lab in same:
        assert same[lab]["kl"] == pytest.approx(0.0, abs=1e-4) and same[lab]["topk_overlap"] == 1.0  # eps smoothing
        assert diff[lab]["kl"] > 1e-3 and diff[lab]["js"] > 1e-4
        assert diff[lab]["mass_recall"] == pytest.approx(1.0)  # Combiner has full support
    maps = attention_maps(dense, x)
    assert set(maps) == set(same) and maps["blocks.0.mixer"].shape == (2, 2, 20, 20)
    torch.testing.assert_close(maps["blocks.1.mixer"], rec_a.last("blocks.1.mixer"))


def test_compare_maps_and_errors():
    out = compare_maps(P, Q, k=2)
    assert set(out) == {"kl", "js", "topk_overlap", "mass_recall"}
    with pytest.raises(ValueError, match=r"other: expected shape"):
        attention_kl(P, Q[:, :3])
    with pytest.raises(ValueError, match=r"reference: expected at least one row with positive mass"):
        attention_kl(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(TypeError, match=r"reference: expected a torch.Tensor"):
        topk_overlap([[1.0]], Q, 1)
    with pytest.raises(ValueError, match=r"k: expected a positive int"):
        topk_overlap(P, Q, 0)
    with pytest.raises(TypeError, match=r"reference, other: expected two AttentionRecorder"):
        compare_recordings({}, {})
