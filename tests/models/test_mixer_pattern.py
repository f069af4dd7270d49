"""attnlab.models.mixer_pattern: mixer patterns expand and cycle over the depth, kwargs shared or per name,
bad patterns named, and a backbone's layers get the pattern and num_heads."""
from __future__ import annotations

import pytest
import torch

from attnlab.models import SequenceModel, resolve_mixers


def test_patterns_expand_and_cycle_over_depth():
    assert [n for n, _ in resolve_mixers("softmax", 3)] == ["softmax"] * 3
    assert [n for n, _ in resolve_mixers("softmax,identity", 5)] == ["softmax", "identity"] * 2 + ["softmax"]
    assert [n for n, _ in resolve_mixers("identity*2,softmax", 3)] == ["identity", "identity", "softmax"]
    specs = resolve_mixers([("softmax", {"num_heads": 2}), "identity"], 2)
    assert specs == [("softmax", {"num_heads": 2}), ("identity", {})]


def test_mixer_kwargs_shared_or_per_name():
    assert resolve_mixers("softmax", 2, {"qk_norm": True}) == [("softmax", {"qk_norm": True})] * 2
    per = resolve_mixers("softmax,identity", 2, {"softmax": {"qk_norm": True}})
    assert per == [("softmax", {"qk_norm": True}), ("identity", {})]
    # a layer's own kwargs win over the shared ones
    assert resolve_mixers([("softmax", {"qk_norm": False})], 1, {"qk_norm": True}) == [("softmax", {"qk_norm": False})]


@pytest.mark.parametrize("bad, exc, match", [
    ("sofmax", KeyError, "did you mean softmax"),
    ("softmax,identity,softmax", ValueError, "at most depth=2"),
    ("", ValueError, "mixer"),
    ("softmax*x", ValueError, "repeat count"),
    (3, TypeError, "mixer"),
])
def test_bad_patterns_are_named(bad, exc, match):
    with pytest.raises(exc, match=match):
        resolve_mixers(bad, 2)


def test_layers_get_the_pattern_and_num_heads():
    m = SequenceModel(vocab_size=11, dim=32, depth=3, num_heads=2, mixer="softmax_qknorm,identity")
    kinds = [type(b.mixer).__name__ for b in m.blocks]
    assert kinds == ["MultiHeadAttention", "IdentityMixer", "MultiHeadAttention"]
    assert m.blocks[0].mixer.num_heads == 2 and not isinstance(m.blocks[0].mixer.q_norm, torch.nn.Identity)


def test_with_rope_sets_rope_where_the_mixer_takes_it_and_keeps_explicit_settings():
    from attnlab.models.mixer_pattern import with_rope

    layers = [("softmax", {}), ("deltanet", {}), ("sliding_window", {"rope": False})]
    assert with_rope(layers) == [("softmax", {"rope": True}), ("deltanet", {}), ("sliding_window", {"rope": False})]
    with pytest.raises(ValueError, match=r"pos: expected 'rope' with at least one mixer that takes rope="):
        with_rope([("mamba", {})])


def test_refuse_context_names_the_layer():
    from attnlab.models.mixer_pattern import refuse_context

    refuse_context([("softmax", {})], "X")
    with pytest.raises(ValueError, match=r"mixer: expected mixers that need no extra context \(X provides none\), "
                                         r"received layer 1: 'rnd_emb_qk' needs \['random_stream'\]"):
        refuse_context([("softmax", {}), ("rnd_emb_qk", {})], "X")
