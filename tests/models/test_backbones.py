"""Backbones: mixer patterns, SequenceModel / ViT behaviour (causality, padding, heads), build_for_task, errors."""
from __future__ import annotations

import pytest
import torch

from attnlab import models
from attnlab.models import SequenceModel, ViT, build_for_task, resolve_mixers
from attnlab.tasks import TaskSpec


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


def test_glu_ffn_has_about_the_mlp_parameters():
    mlp = SequenceModel(vocab_size=10, dim=48, depth=1, ffn="mlp")
    glu = SequenceModel(vocab_size=10, dim=48, depth=1, ffn="glu")
    none = SequenceModel(vocab_size=10, dim=48, depth=1, ffn="none")
    assert abs(models.count_parameters(glu) - models.count_parameters(mlp)) < 0.02 * models.count_parameters(mlp)
    assert models.count_parameters(none) < models.count_parameters(mlp) - 48 * 48 * 7


def test_vit_passes_the_patch_grid_to_mixers_that_use_it():
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self, mixer):
            super().__init__()
            self.inner = mixer

        def forward(self, x, **kw):
            seen.append(kw.get("grid"))
            return self.inner(x, **kw)

    v = ViT(img_size=16, patch_size=4, in_chans=1, num_classes=3, dim=32, depth=1, mixer="spectral_gating")
    assert v.blocks[0].uses_grid
    v.blocks[0].mixer = Spy(v.blocks[0].mixer)
    out = v(torch.randn(2, 1, 16, 16))
    assert seen == [(4, 4)] and out.shape == (2, 3)


def test_vit_cls_pool_refuses_grid_mixers_and_wrong_images():
    with pytest.raises(ValueError, match="pool"):
        ViT(img_size=16, mixer="spectral_gating", pool="cls")
    v = ViT(img_size=16, in_chans=3, num_classes=4, dim=32, depth=1, pool="cls")
    assert v(torch.randn(2, 3, 16, 16)).shape == (2, 4)
    with pytest.raises(ValueError, match=r"x: expected images of shape \(B, 3, 16, 16\)"):
        v(torch.randn(2, 3, 20, 20))
    with pytest.raises(ValueError, match="img_size"):
        ViT(img_size=18, patch_size=4)


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


def test_build_for_task_matches_each_kind_of_spec():
    lm = build_for_task(TaskSpec("tokens", "lm", seq_len=16, vocab_size=30, num_classes=30, causal=True), dim=32)
    assert isinstance(lm, SequenceModel) and lm.causal and lm(torch.randint(0, 30, (2, 16))).shape == (2, 16, 30)
    reg = build_for_task(TaskSpec("vectors", "regression", seq_len=9, in_dim=4, out_dim=1), dim=32)
    assert not reg.causal and reg(torch.randn(2, 9, 4)).shape == (2, 9, 1)
    img = build_for_task(TaskSpec("image", "class", img_size=(16, 16), in_chans=1, num_classes=7), dim=32)
    assert isinstance(img, ViT) and img(torch.randn(2, 1, 16, 16)).shape == (2, 7)
    cls = build_for_task(TaskSpec("tokens", "class", seq_len=8, vocab_size=5, num_classes=2, causal=True), dim=32)
    assert cls.pool == "last"


def test_registry_create_and_errors():
    m = models.create("convit_tiny", img_size=16, num_classes=3)
    assert m(torch.randn(1, 3, 16, 16)).shape == (1, 3)
    with pytest.raises(KeyError, match="did you mean convit_tiny"):
        models.create("convit_tinyy")
    with pytest.raises(TypeError, match="convit_tiny"):
        models.create("convit_tiny", not_a_kwarg=1)


def test_count_parameters_counts_shared_tensors_once():
    lin = torch.nn.Linear(4, 4)
    net = torch.nn.Sequential(lin, lin)
    assert models.count_parameters(net) == 20
