"""Helpers shared by the per-mixer tests (fixtures that return functions; test modules never import each other)."""
from __future__ import annotations

import pytest
import torch
from einops import rearrange

import attnlab.mixers as mixers
from attnlab.ops.recording import record_attention


@pytest.fixture
def softmax_and():
    """``softmax_and(name, dim=16, heads=4, **kw) -> (teacher, student, missing keys)``: fp64, eval.

    The student (mixer ``name``) loads the softmax teacher's weights (``strict=False``); no key
    of the teacher may be unexpected for it.
    """

    def build(name, dim=16, heads=4, **kw):
        torch.manual_seed(0)
        teacher = mixers.create("softmax", dim, num_heads=heads).double().eval()
        student = mixers.create(name, dim, num_heads=heads, **kw).double().eval()
        missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
        assert not unexpected
        return teacher, student, missing

    return build


@pytest.fixture
def heads_io():
    """``(qkv, out)``: a mixer's q, k, v heads (3, B, H, N, d) from x, and its output projection of o (B, H, N, d)."""

    def qkv(m, x):
        return rearrange(m.qkv(x), "b n (three h d) -> three b h n d", three=3, h=m.num_heads)

    def out(m, o):
        return m.proj(rearrange(o, "b h n d -> b n (h d)"))

    return qkv, out


@pytest.fixture
def decode():
    """``decode(m, x) -> (B, N, C)``: token-by-token ``m.step`` from ``m.init_state``; the state may not grow."""

    def run(m, x):
        state = m.init_state(x.shape[0], dtype=x.dtype)
        sizes = None
        outs = []
        for x_t in x.unbind(1):
            y_t, state = m.step(x_t, state)
            flat = [t for t in (state.values() if isinstance(state, dict) else [state])]
            now = sum(t.numel() for t in flat)
            assert sizes is None or now == sizes, "decoding state grew with t"
            sizes = now
            outs.append(y_t)
        return torch.stack(outs, 1)

    return run


@pytest.fixture
def recorded_causal_maps():
    """``recorded_causal_maps(name, kw) -> probs (1, 2, 18, 18)`` of a causal call inside ``record_attention``.

    Checks what every recording mixer must give: rows that sum to 1, nothing above the
    diagonal, and the same output as outside the recording block.
    """

    def run(name, kw):
        torch.manual_seed(0)
        m = mixers.create(name, 16, num_heads=2, **kw).double().eval()
        x = torch.randn(1, 18, 16, dtype=torch.float64)
        with record_attention(m) as rec:
            y = m(x, causal=True)
        probs = rec.last(type(m).__name__)
        assert probs.shape == (1, 2, 18, 18)
        torch.testing.assert_close(probs.sum(-1), torch.ones(1, 2, 18, dtype=torch.float64), atol=1e-12, rtol=0)
        assert (probs[..., ~torch.ones(18, 18, dtype=torch.bool).tril()] == 0).all()
        torch.testing.assert_close(m(x, causal=True), y, atol=1e-12, rtol=1e-12)
        return probs

    return run


@pytest.fixture
def period2_lm_losses():
    """``period2_lm_losses(mixer, mixer_kwargs) -> [loss per step]``: 20 Adam steps of a 1-layer LM, period-2 data."""

    def run(name, mixer_kwargs):
        from attnlab.models import SequenceModel

        torch.manual_seed(0)
        model = SequenceModel(vocab_size=8, dim=32, depth=1, num_heads=2, mixer=name, max_len=64,
                              mixer_kwargs=mixer_kwargs)
        # period-2 sequences: every token after the second is the one two steps back
        g = torch.Generator().manual_seed(1)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        losses = []
        for _ in range(20):
            seq = torch.randint(0, 8, (16, 2), generator=g).repeat(1, 24)
            logits = model(seq[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits[:, 1:].reshape(-1, 8), seq[:, 2:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    return run


@pytest.fixture
def softmax_like():
    """``softmax_like(dim, heads, qkv_weight, qkv_bias, proj) -> softmax mixer`` (fp64) with those weights."""

    def build(dim, heads, src_qkv_weight, src_qkv_bias, proj):
        m = mixers.create("softmax", dim, num_heads=heads, qkv_bias=True).double()
        with torch.no_grad():
            m.qkv.weight.copy_(src_qkv_weight)
            m.qkv.bias.copy_(src_qkv_bias)
            m.proj.load_state_dict(proj.state_dict())
        return m

    return build


@pytest.fixture
def vit_gradients():
    """``vit_gradients(mixer, mixer_kwargs) -> [grad per parameter]`` of one classification loss of a tiny ViT."""

    def run(mixer, kw):
        from attnlab.models import ViT

        torch.manual_seed(0)
        model = ViT(img_size=16, patch_size=4, in_chans=1, num_classes=3, dim=16, depth=2, num_heads=2, mixer=mixer,
                    mixer_kwargs=kw)
        x, y = torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 0])
        torch.nn.functional.cross_entropy(model(x), y).backward()
        return [p.grad for p in model.parameters()]

    return run


@pytest.fixture
def future_influence():
    """``future_influence(m, causal) -> float``: total |d out_0 / d x_t| over the later tokens t >= 1 (fp64, N = 10)."""

    def run(m, causal):
        x = torch.randn(1, 10, m.dim, dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(m(x, causal=causal)[0, 0].sum(), x)
        return g[0, 1:].abs().sum().item()

    return run
