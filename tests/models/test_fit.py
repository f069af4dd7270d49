"""The FIT network (P27): layout strings, where information can flow (local-only vs interleaved), the autoregressive
variant's causality, the registered models."""
from __future__ import annotations

import pytest
import torch

from attnlab.models import create
from attnlab.models.fit import FIT, FITSequenceModel, parse_layout


@pytest.mark.parametrize("text, blocks", [
    ("(2)4(2)", [(2, 4), (2, 0)]), ("(1)2", [(1, 2)]), ("(3)", [(3, 0)]), ("(1)1(1)1(2)", [(1, 1), (1, 1), (2, 0)]),
    ("(0)2(1)", [(0, 2), (1, 0)]),
])
def test_parse_layout(text, blocks):
    assert parse_layout(text) == blocks


@pytest.mark.parametrize("text", ["2(2)", "(2)0(2)", "(a)2", "", "(0)0", "(2)4(2"])
def test_bad_layouts_are_named(text):
    with pytest.raises(ValueError, match="layout: expected"):
        parse_layout(text)


def _influence(net: FIT, src_group: int, dst_token: int) -> float:
    """|d (w . out[dst_token]) / d x[group src_group]| summed, fp64, for a random w (the sum of a LayerNorm's
    output is constant)."""
    x = torch.randn(1, net.num_groups * net.group_size, net.x_pos.shape[-1], dtype=torch.float64, requires_grad=True)
    out, _ = net(x)
    w = torch.randn(out.shape[-1], dtype=torch.float64)
    (g,) = torch.autograd.grad((out[0, dst_token] * w).sum(), x)
    n = net.group_size
    return g[0, src_group * n:(src_group + 1) * n].abs().sum().item()


def test_groups_talk_only_through_latents_and_the_read_back():
    torch.manual_seed(0)
    kw = dict(num_groups=4, group_size=3, dim=8, num_heads=2, latents_per_group=2)
    local = FIT("(2)", **kw).double()
    assert _influence(local, 3, 0) == 0.0 and _influence(local, 0, 1) > 0
    interleaved = FIT("(1)1(1)", **kw).double()
    assert _influence(interleaved, 3, 0) > 1e-6
    last_global = FIT("(1)2", **kw).double()  # the last block's latents are not read back: tokens stay local
    assert _influence(last_global, 3, 0) == 0.0


def test_the_autoregressive_variant_is_causal_and_reaches_back_across_groups():
    torch.manual_seed(0)
    lm = FITSequenceModel(vocab_size=7, seq_len=24, group_size=4, head="lm", layout="(1)2(1)", dim=16, num_heads=2,
                          latents_per_group=2).double()
    tokens = torch.randint(0, 7, (2, 24))
    out = lm(tokens)
    assert out.shape == (2, 24, 7)
    for cut in (1, 4, 5, 13, 23):
        t2 = tokens.clone()
        t2[:, cut:] = (t2[:, cut:] + 3) % 7
        torch.testing.assert_close(lm(t2)[:, :cut], out[:, :cut], atol=1e-12, rtol=0)
    # a token of group 3 sees group 0 (through the shifted latents); no token sees a later group
    net = lm.fit
    assert _influence(net, 0, 14) > 1e-6 and _influence(net, 1, 3) == 0.0 and _influence(net, 2, 7) == 0.0


def test_registered_models_learn_a_fixed_batch_and_every_parameter_gets_a_gradient(train_fixed_batch):
    torch.manual_seed(0)
    model = create("fit_seq_tiny", seq_len=128, group_size=16, dim=32, latent_dim=32, num_heads=2)
    tokens = torch.randint(0, 16, (16, 128))
    labels = torch.arange(16) % 2
    first, last = train_fixed_batch(model, lambda m: torch.nn.functional.cross_entropy(m(tokens), labels), 30)
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    assert last < 0.5 * first


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="group_size: expected a divisor of seq_len=100"):
        FITSequenceModel(vocab_size=5, seq_len=100, group_size=16, num_classes=2)
    with pytest.raises(ValueError, match=r"x: expected grouped tokens \(B, t n, dim\) with t n = 2 x 3"):
        FIT("(1)", num_groups=2, group_size=3, dim=8, num_heads=2)(torch.randn(1, 7, 8))
    with pytest.raises(ValueError, match="grid: expected sides divisible by the window"):
        create("fit_tiny", img_size=24, patch_size=2, window=5)
