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


# ---- pos="rope" and the context the mixers may declare (P08) ------------------------------------


def test_rope_positions_go_into_every_mixer_that_takes_them():
    torch.manual_seed(0)
    m = SequenceModel(vocab_size=20, dim=16, depth=3, num_heads=2, mixer="deltanet,softmax,sliding_window", pos="rope",
                      max_len=64)
    assert m.pos_embed is None
    assert [type(b.mixer.rope).__name__ if hasattr(b.mixer, "rope") else None for b in m.blocks] == \
        [None, "RotaryEmbedding", "RotaryEmbedding"]
    # an explicit setting wins
    m2 = SequenceModel(vocab_size=20, dim=16, depth=1, num_heads=2, mixer="softmax", pos="rope",
                       mixer_kwargs={"rope": {"base": 50.0}})
    assert m2.blocks[0].mixer.rope.base == 50.0
    with pytest.raises(ValueError, match=r"pos: expected 'rope' with at least one mixer that takes rope="):
        SequenceModel(vocab_size=20, dim=16, depth=1, mixer="identity", pos="rope")


def test_rope_model_sees_order_and_its_lm_is_causal():
    torch.manual_seed(0)
    m = SequenceModel(vocab_size=20, dim=16, depth=2, num_heads=2, mixer="softmax", pos="rope", head="class",
                      num_classes=3).eval()
    x = torch.randint(0, 20, (1, 9))
    assert (m(x) - m(x.flip(1))).abs().max() > 1e-4  # without positions a mean-pooled softmax model is order-blind
    lm = SequenceModel(vocab_size=20, dim=16, depth=2, num_heads=2, mixer="softmax", pos="rope").eval()
    y = x.clone()
    y[:, 5:] = (y[:, 5:] + 1) % 20
    torch.testing.assert_close(lm(x)[:, :5], lm(y)[:, :5], atol=1e-6, rtol=0)


def test_alibi_biases_go_into_every_mixer_that_takes_them_and_the_lm_stays_causal():
    torch.manual_seed(0)
    m = SequenceModel(vocab_size=20, dim=16, depth=3, num_heads=2, mixer="deltanet,softmax,softmax_qknorm",
                      pos="alibi").eval()
    assert m.pos_embed is None
    assert [getattr(b.mixer, "alibi_slopes", None) is not None for b in m.blocks] == [False, True, True]
    x = torch.randint(0, 20, (1, 9))
    y = x.clone()
    y[:, 5:] = (y[:, 5:] + 1) % 20
    torch.testing.assert_close(m(x)[:, :5], m(y)[:, :5], atol=1e-6, rtol=0)
    cls = SequenceModel(vocab_size=20, dim=16, depth=2, num_heads=2, mixer="softmax", pos="alibi", head="class",
                        num_classes=3, causal=False).eval()
    assert (cls(x) - cls(x.roll(2, 1))).abs().max() > 1e-4  # the biases give a pooled model its order ...
    # ... but the symmetric bidirectional bias -m|i - j| is the same for the reversed sequence: reversal-blind
    torch.testing.assert_close(cls(x.flip(1)), cls(x), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"pos: expected 'alibi' with at least one mixer that takes alibi="):
        SequenceModel(vocab_size=20, dim=16, depth=1, mixer="identity", pos="alibi")


@pytest.mark.parametrize("mixer, kw", [("static_emb_qk", {}), ("rnd_emb_qk", {}), ("fixed_seq_qk", {}),
                                        ("rnd_table_qk", {"vocab_size": 20})])
def test_context_mixers_get_their_context_and_stay_causal(mixer, kw):
    torch.manual_seed(0)
    m = SequenceModel(vocab_size=20, dim=16, depth=2, num_heads=2, mixer=[(mixer, kw), ("softmax", {})],
                      fixed_sequence=torch.arange(40) % 20).eval()
    assert m.context_kinds == m.blocks[0].context_kinds
    x = torch.randint(0, 20, (2, 12))
    y = x.clone()
    y[:, 7:] = (y[:, 7:] + 3) % 20
    out_x, out_y = m(x), m(y)
    torch.testing.assert_close(out_x[:, :7], out_y[:, :7], atol=1e-6, rtol=0)
    assert (out_x[:, 7:] - out_y[:, 7:]).abs().max() > 1e-4
    (out_x.sum()).backward()
    assert all(p.grad is not None for n, p in m.named_parameters() if "blocks.0.mixer" in n)


def test_fixed_stream_layers_attend_the_same_way_for_every_input():
    torch.manual_seed(0)
    m = SequenceModel(vocab_size=20, dim=16, depth=2, num_heads=2, mixer="rnd_emb_qk,softmax").eval()
    from attnlab import record_attention
    with record_attention(m) as rec:
        m(torch.randint(0, 20, (1, 8)))
        m(torch.randint(0, 20, (1, 8)))
    first, second = rec.maps["blocks.0.mixer"]  # the input's maps only: the stream pass is not recorded
    torch.testing.assert_close(first, second, atol=1e-7, rtol=0)  # input-independent map
    a, b = rec.maps["blocks.1.mixer"]
    assert (a - b).abs().max() > 1e-4  # the standard layer's map depends on the input


def test_the_stream_is_the_model_itself_run_on_the_fixed_sequence():
    """In the text stream the fixed_seq_qk layer is standard attention on the stream: a model whose stream is the
    input itself equals a softmax model with the same weights."""
    torch.manual_seed(0)
    x = torch.randint(0, 20, (1, 10))
    m = SequenceModel(vocab_size=20, dim=16, depth=2, num_heads=2, mixer="fixed_seq_qk,softmax",
                      fixed_sequence=x[0]).eval()
    ref = SequenceModel(vocab_size=20, dim=16, depth=2, num_heads=2, mixer="softmax").eval()
    state = {k.replace("mixer.qk.weight", "mixer.qkv.weight"): v for k, v in m.state_dict().items()
             if not k.endswith("mixer.v.weight") and k != "fixed_sequence"}
    state["blocks.0.mixer.qkv.weight"] = torch.cat([m.blocks[0].mixer.qk.weight, m.blocks[0].mixer.v.weight])
    ref.load_state_dict(state)
    torch.testing.assert_close(m(x), ref(x), atol=1e-5, rtol=1e-5)


def test_context_the_model_cannot_provide_is_refused_when_built():
    with pytest.raises(ValueError, match=r"mixer: expected mixers whose context this SequenceModel can provide.*"
                                         r"layer 0: 'rnd_table_qk' needs 'token_ids'"):
        SequenceModel(in_dim=4, dim=16, mixer="rnd_table_qk", mixer_kwargs={"vocab_size": 5}, head="regression")
    with pytest.raises(ValueError, match=r"fixed_sequence: expected token ids \(L,\)"):
        SequenceModel(vocab_size=5, dim=16, mixer="fixed_seq_qk")
    with pytest.raises(ValueError, match=r"fixed_sequence: expected token ids in \[0, 5\)"):
        SequenceModel(vocab_size=5, dim=16, mixer="fixed_seq_qk", fixed_sequence=torch.arange(9))
    m = SequenceModel(vocab_size=5, dim=16, num_heads=2, mixer="fixed_seq_qk", fixed_sequence=torch.arange(4))
    with pytest.raises(ValueError, match=r"x: expected at most 4 positions \(the length of fixed_sequence\)"):
        m(torch.zeros(1, 6, dtype=torch.long))
    # vector input: the layer-0 embeddings and the random stream are there
    v = SequenceModel(in_dim=4, dim=16, num_heads=2, mixer="static_emb_qk,rnd_emb_qk", head="regression")
    assert v(torch.randn(2, 7, 4)).shape == (2, 7, 1)


@pytest.mark.parametrize("pattern", ["rnd_emb_qk,softmax", "fixed_seq_qk,static_emb_qk", "rnd_emb_qk,fixed_seq_qk"])
def test_joint_and_separate_stream_passes_agree(pattern):
    """The streams ride along as batch rows (one pass per block) except when recording: both give one result."""
    from attnlab import record_attention

    torch.manual_seed(0)
    m = SequenceModel(vocab_size=20, dim=16, depth=3, num_heads=2, mixer=pattern,
                      fixed_sequence=torch.arange(30) % 20).double().eval()
    x = torch.randint(0, 20, (3, 10))
    kpm = torch.ones(3, 10, dtype=torch.bool)
    kpm[1, 7:] = False
    joint = m(x, key_padding_mask=kpm)
    with record_attention(m):
        apart = m(x, key_padding_mask=kpm)
    torch.testing.assert_close(joint, apart, atol=1e-12, rtol=1e-12)


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
    (dict(sequence_parallel="ring", pos="rope"), "mixers without RoPE .* mixer 'softmax' using rope"),
    (dict(sequence_parallel="ring", pos="alibi"), "mixers without ALiBi .* mixer 'softmax' using alibi"),
])
def test_sequence_parallel_refusals(kw, match):
    with pytest.raises(ValueError, match=match):
        SequenceModel(**{"vocab_size": 10, "dim": 8, "depth": 2, "num_heads": 2, **kw})
