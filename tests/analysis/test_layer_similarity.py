"""attnlab.analysis.layer_similarity: the similarity matrix on hand-built models, the window and group pickers, the
heatmap, bad input named."""
from __future__ import annotations

import pytest
import torch

from attnlab.analysis import (attention_similarity_matrix, consecutive_similarity, most_similar_window,
                              plot_similarity_heatmap, similar_groups)
from attnlab.models import SequenceModel


def test_matrix_is_symmetric_with_unit_diagonal_and_sees_copied_layers():
    torch.manual_seed(0)
    m = SequenceModel(vocab_size=20, dim=16, depth=4, num_heads=2, mixer="softmax").eval()
    with torch.no_grad():  # layers 1 and 2 get the same attention weights and see the same inputs up to the block
        m.blocks[2].mixer.qkv.weight.copy_(m.blocks[1].mixer.qkv.weight)
        m.blocks[2].norm1.load_state_dict(m.blocks[1].norm1.state_dict())
    probes = [torch.randint(0, 20, (3, 10)) for _ in range(2)]
    sim, labels = attention_similarity_matrix(m, probes)
    assert labels == [f"blocks.{i}.mixer" for i in range(4)]
    torch.testing.assert_close(sim, sim.T, atol=1e-12, rtol=0)
    torch.testing.assert_close(sim.diagonal(), torch.ones(4, dtype=torch.float64), atol=1e-12, rtol=0)
    assert ((sim > 0) & (sim <= 1 + 1e-12)).all()
    # the cosine of two maps by hand, for one probe and two layers
    from attnlab import record_attention
    with record_attention(m) as rec:
        m(probes[0])
    a, b = (rec.last(f"blocks.{i}.mixer").double().mean(1).flatten(1) for i in (0, 3))
    by_hand = torch.nn.functional.cosine_similarity(a, b, dim=1).mean()
    one, _ = attention_similarity_matrix(m, probes[:1])
    assert abs(one[0, 3] - by_hand) < 1e-12


def test_pickers_on_a_hand_written_matrix():
    sim = torch.tensor([[1.0, 0.2, 0.1, 0.1, 0.0],
                        [0.2, 1.0, 0.9, 0.8, 0.1],
                        [0.1, 0.9, 1.0, 0.95, 0.2],
                        [0.1, 0.8, 0.95, 1.0, 0.3],
                        [0.0, 0.1, 0.2, 0.3, 1.0]], dtype=torch.float64)
    cs = consecutive_similarity(sim)
    assert cs["pairs"] == pytest.approx([0.2, 0.9, 0.95, 0.3])
    assert cs["inner"] == pytest.approx(0.925) and cs["outer"] == pytest.approx(0.25)
    assert most_similar_window(sim, 2) == (2, 3)
    assert most_similar_window(sim, 3) == (1, 2, 3)
    assert similar_groups(sim, 0.85) == [(1, 2)]  # layer 3 is 0.8 from layer 1: a group of one is dropped
    assert similar_groups(sim, 0.75) == [(1, 2, 3)]
    with pytest.raises(ValueError, match=r"size: expected 2 <= size <= 3"):
        most_similar_window(sim, 4)
    with pytest.raises(ValueError, match=r"sim: expected a square \(L, L\) similarity matrix"):
        consecutive_similarity(torch.ones(2, 3))
    fig = plot_similarity_heatmap(sim, title="t")
    assert fig.axes and fig.axes[0].get_title() == "t"


def test_model_without_attention_maps_is_named():
    m = SequenceModel(vocab_size=5, dim=8, depth=2, mixer="identity")
    with pytest.raises(ValueError, match=r"model: expected a model whose mixers record attention maps"):
        attention_similarity_matrix(m, [torch.zeros(1, 4, dtype=torch.long)])
