"""SequenceModel: causal LM by perturbing the future, a bidirectional classifier that ignores padding, heads,
positions, bad input and bad configs named."""
from __future__ import annotations

import pytest
import torch

from attnlab.models import SequenceModel


def test_lm_is_causal_by_perturbing_the_future():
    torch.manual_seed(0)
    m = SequenceModel(vocab_size=20, dim=32, depth=2, num_heads=4, mixer="softmax", head="lm").eval()
    x = torch.randint(0, 20, (2, 12))
    y = x.clone()
    y[:, 7:] = (y[:, 7:] + 5) % 20
    out_x, out_y = m(x), m(y)
    torch.testing.assert_close(out_x[:, :7], out_y[:, :7], rtol=0, atol=1e-6)
    assert (out_x[:, 7:] - out_y[:, 7:]).abs().max() > 1e-3


def test_bidirectional_classifier_sees_every_position_and_ignores_padding():
    torch.manual_seed(0)
    m = SequenceModel(vocab_size=20, dim=32, depth=2, mixer="softmax", head="class", num_classes=3).eval()
    assert not m.causal
    x = torch.randint(0, 20, (2, 10))
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[:, 6:] = False
    y = x.clone()
    y[:, 6:] = (y[:, 6:] + 3) % 20  # change only padded positions
    torch.testing.assert_close(m(x, key_padding_mask=mask), m(y, key_padding_mask=mask), rtol=0, atol=1e-6)
    z = x.clone()
    z[:, 0] = (z[:, 0] + 1) % 20  # a real token changes the output
    assert (m(x, key_padding_mask=mask) - m(z, key_padding_mask=mask)).abs().max() > 1e-4
    # padded = the same sequence cut to its real tokens
    torch.testing.assert_close(m(x, key_padding_mask=mask), m(x[:, :6]), rtol=1e-5, atol=1e-5)


def test_identity_mixer_model_sees_no_other_position():
    m = SequenceModel(vocab_size=20, dim=16, depth=2, mixer="identity", head="lm", pos="none").eval()
    x = torch.randint(0, 20, (1, 8))
    y = x.clone()
    y[0, 0] = (y[0, 0] + 1) % 20
    torch.testing.assert_close(m(x)[:, 1:], m(y)[:, 1:], rtol=0, atol=0)


def test_vector_input_regression_head_and_sinusoidal_positions():
    m = SequenceModel(in_dim=6, dim=16, depth=1, mixer="softmax", head="regression", out_dim=2, pos="sinusoidal")
    out = m(torch.randn(3, 9, 6))
    assert out.shape == (3, 9, 2) and torch.isfinite(out).all()
    assert "pos_embed" not in dict(m.named_parameters())


@pytest.mark.parametrize("bad, match", [
    (torch.randint(0, 5, (2, 3, 1)), "token ids of shape"),
    (torch.full((1, 4), 50), r"token ids in \[0, 10\)"),
    (torch.randint(0, 5, (1, 40)), "max_len=32"),
])
def test_sequence_model_bad_input_is_named(bad, match):
    m = SequenceModel(vocab_size=10, dim=16, depth=1, max_len=32)
    with pytest.raises(ValueError, match=match):
        m(bad)


def test_sequence_model_bad_config_is_named():
    with pytest.raises(ValueError, match="exactly one"):
        SequenceModel(vocab_size=10, in_dim=3)
    with pytest.raises(ValueError, match="num_classes"):
        SequenceModel(in_dim=3, head="class")
    with pytest.raises(ValueError, match="head"):
        SequenceModel(vocab_size=10, head="seq2seq")


def test_position_offset_shifts_the_positions_a_shard_is_given():
    # no mixing, no MLP: each output depends on its own token and position only, so the second half of a
    # sequence given alone at offset 12 equals the whole sequence's second half
    m = SequenceModel(vocab_size=10, dim=8, depth=1, mixer="identity", ffn="none", max_len=24).eval()
    x = torch.randint(0, 10, (2, 24))
    whole = m(x)
    m.position_offset = 12
    torch.testing.assert_close(m(x[:, 12:]), whole[:, 12:], rtol=0, atol=0)
    m.position_offset = 0
    assert (m(x[:, 12:]) - whole[:, 12:]).abs().max() > 1e-3  # control: offset 0 is not the same
    m.position_offset = 13
    with pytest.raises(ValueError, match=r"at most max_len=24 positions \(from position_offset=13\)"):
        m(x[:, 12:])


def test_sequence_parallel_is_stored_and_changes_nothing_in_one_process():
    torch.manual_seed(0)
    plain = SequenceModel(vocab_size=10, dim=8, depth=2, num_heads=2, max_len=16)
    torch.manual_seed(0)
    sp = SequenceModel(vocab_size=10, dim=8, depth=2, num_heads=2, max_len=16, sequence_parallel="hybrid")
    x = torch.randint(0, 10, (2, 16))
    assert sp.sequence_parallel == "hybrid" and plain.sequence_parallel is None
    torch.testing.assert_close(sp(x), plain(x), rtol=0, atol=0)


@pytest.mark.parametrize("kw, match", [
    (dict(sequence_parallel="zigzag"), "sequence_parallel: expected one of"),
    (dict(sequence_parallel="ring", head="class", num_classes=3), "per-token head"),
    (dict(sequence_parallel="ulysses", mixer="softmax,linear_attention"),
     "every mixer is softmax attention .* mixer 'linear_attention'"),
])
def test_sequence_parallel_refusals(kw, match):
    with pytest.raises(ValueError, match=match):
        SequenceModel(**{"vocab_size": 10, "dim": 8, "depth": 2, "num_heads": 2, **kw})
