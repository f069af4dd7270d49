"""Registry-wide contract tests: every registered mixer gets these for free.

Each mixer is exercised at its registry ``test_kwargs`` / ``test_grid`` size:
gradcheck in float64, causality by perturbing future tokens, key-padding
invariance (random, NaN and inf content in padded positions, leading padding, a fully
padded sequence), batch independence, state-dict round trip, gradients reaching every
trainable parameter, bf16 (module and input in bf16, and CPU autocast with fp32
weights) against fp32 within the registry's ``bf16_tol``, the dtype rule, and a clear
error for every bad input of the contract; decoding steps equal to the causal forward (mixers with a
decoding path).

A mixer that declares extra context (``capabilities.context``, e.g. P08's ``static_emb_qk``) runs
inside :class:`_WithContext`, which hands it a fixed random context of the right kinds for each input
shape, so that every test here applies to it unchanged; what the context itself must satisfy
(causality in the context, errors when it is missing) is tested below and in the mixer's own tests.
"""
from __future__ import annotations

import copy
import inspect
import math

import pytest
import torch
from torch import nn

import attnlab.mixers as mixers

INFOS = mixers.available()
NAMES = [i.name for i in INFOS]


def _context(kinds, batch, n, dim, dtype, vocab, seed=0):
    """A fixed random context of the given kinds for inputs of (batch, n) tokens of width dim."""
    g = torch.Generator().manual_seed(seed)
    # drawn in fp32 and cast, so that a bf16 copy of a mixer sees the same context as its fp32 original
    make = {"token_ids": lambda: torch.randint(0, vocab, (batch, n), generator=g),
            "embeddings": lambda: torch.randn(batch, n, dim, generator=g).to(dtype),
            "random_stream": lambda: torch.randn(1, n, dim, generator=g).to(dtype),
            "text_stream": lambda: torch.randn(1, n, dim, generator=g).to(dtype)}
    return {k: make[k]() for k in kinds}


class _WithContext(nn.Module):
    """Runs a context mixer with a fixed random context per input shape (seeded: two calls on equal shapes
    get the same context); inputs that are not (B, N, C) float tensors go to the mixer without one, so that
    its own checks of x raise first."""

    def __init__(self, mixer, vocab):
        super().__init__()
        self.mixer, self.vocab = mixer, vocab
        self.capabilities = mixer.capabilities

    def weight_dtype(self):
        """The wrapped mixer's parameter dtype (the contract's dtype rule reads it)."""
        return self.mixer.weight_dtype()

    def forward(self, x, **kw):
        if isinstance(x, torch.Tensor) and x.dim() == 3 and x.is_floating_point():
            kw["context"] = _context(self.capabilities.context, x.shape[0], x.shape[1], x.shape[2], x.dtype,
                                     self.vocab)
        return self.mixer(x, **kw)


def _build(info, dtype=torch.float64):
    torch.manual_seed(0)
    m = mixers.create(info.name, info.test_dim, **info.test_kwargs).to(dtype)
    if info.capabilities.context:
        m = _WithContext(m, info.test_kwargs.get("vocab_size", 16))
    return m.eval()


def _shape(info):
    if info.test_grid is not None:
        return math.prod(info.test_grid), tuple(info.test_grid)
    return info.test_len, None


def _modes(info):
    caps = info.capabilities
    return ([False] if caps.bidirectional else []) + ([True] if caps.causal else [])


def _input(info, batch=2, dtype=torch.float64, requires_grad=False):
    n, grid = _shape(info)
    x = torch.randn(batch, n, info.test_dim, dtype=dtype, requires_grad=requires_grad)
    return x, grid


@pytest.mark.parametrize("name", NAMES)
def test_declares_a_mode_and_a_summary(name):
    info = mixers.get_info(name)
    assert info.capabilities.causal or info.capabilities.bidirectional
    assert info.summary, f"{name}: the class needs a docstring"


@pytest.mark.parametrize("name", NAMES)
def test_output_shape_dtype_and_finite(name):
    info = mixers.get_info(name)
    for dtype in (torch.float32, torch.float64):
        m = _build(info, dtype)
        x, grid = _input(info, dtype=dtype)
        for causal in _modes(info):
            y = m(x, grid=grid, causal=causal)
            assert y.shape == x.shape and y.dtype == x.dtype
            assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_float64(name):
    info = mixers.get_info(name)
    m = _build(info)
    x, grid = _input(info, batch=1, requires_grad=True)
    for causal in _modes(info):
        assert torch.autograd.gradcheck(lambda t: m(t, grid=grid, causal=causal), (x,), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", [i.name for i in INFOS if i.capabilities.causal])
def test_causal_perturbing_future_changes_nothing_before(name):
    info = mixers.get_info(name)
    m = _build(info)
    x, grid = _input(info)
    n = x.shape[1]
    cut = n // 2
    y = m(x, grid=grid, causal=True)
    x2 = x.clone()
    x2[:, cut:] += torch.randn_like(x2[:, cut:]) * 3.0
    y2 = m(x2, grid=grid, causal=True)
    torch.testing.assert_close(y2[:, :cut], y[:, :cut], atol=1e-10, rtol=1e-10)
    assert not torch.allclose(y2[:, cut:], y[:, cut:]), "future tokens changed but their own outputs did not"


@pytest.mark.parametrize("name", [i.name for i in INFOS if i.capabilities.recurrent])
def test_decoding_steps_equal_the_causal_forward(name):
    """Every mixer with a decoding path (``recurrent``): stepping token by token from ``init_state`` gives the
    causal forward's outputs (fp64, 1e-10)."""
    info = mixers.get_info(name)
    m = _build(info)
    x, grid = _input(info)
    _assert_steps_equal_forward(m, x, m(x, grid=grid, causal=True))


def _assert_steps_equal_forward(m, x, y):
    """Stepping ``m`` token by token over x (B, N, C) from ``init_state`` gives ``y`` (fp64, 1e-10)."""
    state = m.init_state(x.shape[0], dtype=x.dtype)
    steps = []
    for x_t in x.unbind(1):
        y_t, state = m.step(x_t, state)
        steps.append(y_t)
    torch.testing.assert_close(torch.stack(steps, 1), y, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name", [i.name for i in INFOS if i.capabilities.key_padding_mask])
def test_padded_keys_do_not_affect_real_tokens(name):
    info = mixers.get_info(name)
    m = _build(info)
    x, grid = _input(info)
    n = x.shape[1]
    mask = torch.ones(2, n, dtype=torch.bool)
    mask[0, n - 3 :] = False
    mask[1, n - 1] = False
    for causal in _modes(info):
        y = m(x, grid=grid, causal=causal, key_padding_mask=mask)
        x2 = x.clone()
        x2[~mask] = torch.randn_like(x2[~mask]) * 5.0
        y2 = m(x2, grid=grid, causal=causal, key_padding_mask=mask)
        torch.testing.assert_close(y2[mask], y[mask], atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_batch_elements_are_independent(name):
    info = mixers.get_info(name)
    m = _build(info)
    x, grid = _input(info, batch=3)
    for causal in _modes(info):
        y = m(x, grid=grid, causal=causal)
        x2 = x.clone()
        x2[1:] = torch.randn_like(x2[1:])
        y2 = m(x2, grid=grid, causal=causal)
        torch.testing.assert_close(y2[0], y[0], atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    info = mixers.get_info(name)
    m = _build(info)
    torch.manual_seed(123)
    m2 = mixers.create(info.name, info.test_dim, **info.test_kwargs).to(torch.float64).eval()
    if info.capabilities.context:
        m2 = _WithContext(m2, info.test_kwargs.get("vocab_size", 16))
    m2.load_state_dict(m.state_dict())
    x, grid = _input(info)
    causal = _modes(info)[0]
    torch.testing.assert_close(m2(x, grid=grid, causal=causal), m(x, grid=grid, causal=causal), atol=0, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_reaches_every_trainable_parameter(name):
    info = mixers.get_info(name)
    m = _build(info).train()
    x, grid = _input(info, requires_grad=True)
    y = m(x, grid=grid, causal=_modes(info)[-1])
    (y * torch.randn_like(y)).sum().backward()
    for pname, p in m.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name}: parameter {pname} got no gradient"


@pytest.mark.parametrize("name", [i.name for i in INFOS if i.capabilities.key_padding_mask])
def test_non_finite_padding_never_reaches_real_tokens(name):
    """Padding is often uninitialised memory: NaN / inf there may not reach a real token, forward or backward.

    Masks: leading and trailing pads, one in the middle, and a fully padded sequence (no real token: its
    outputs must still be finite)."""
    info = mixers.get_info(name)
    m = _build(info)
    x, grid = _input(info, batch=3)
    n = x.shape[1]
    mask = torch.ones(3, n, dtype=torch.bool)
    mask[0, :2] = False
    mask[0, -1] = False
    mask[1, n // 2] = False
    mask[2] = False
    params = [p for p in m.parameters() if p.requires_grad]
    for causal in _modes(info):
        y = m(x, grid=grid, causal=causal, key_padding_mask=mask)
        for bad in (math.nan, math.inf, -math.inf):
            x2 = x.clone()
            x2[~mask] = bad
            x2.requires_grad_(True)
            y2 = m(x2, grid=grid, causal=causal, key_padding_mask=mask)
            assert torch.isfinite(y2).all(), f"{name}: non-finite output with {bad} in padded positions"
            torch.testing.assert_close(y2[mask], y[mask], atol=1e-10, rtol=1e-10)
            grads = torch.autograd.grad((y2[mask] * torch.randn_like(y2[mask])).sum(), [x2] + params,
                                        allow_unused=True)
            assert all(g is None or torch.isfinite(g).all() for g in grads), f"{name}: non-finite gradient"
            assert (grads[0][~mask] == 0).all()


# ---- precision: bf16 and autocast -------------------------------------------


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """|a - b| / |b| in Frobenius norm, computed in fp64."""
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def _out_and_grads(m, x, grid, causal, upstream, *, autocast=False):
    """Output and gradients of (y * upstream).sum() w.r.t. x and the trainable parameters."""
    x = x.detach().requires_grad_(True)
    params = [p for p in m.parameters() if p.requires_grad]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = m(x, grid=grid, causal=causal)
    gx, *gp = torch.autograd.grad(y, [x] + params, upstream.to(y.dtype), allow_unused=True)
    return y, gx, gp


@pytest.mark.parametrize("name", NAMES)
def test_bf16_module_and_input_agree_with_fp32(name):
    """``.to(torch.bfloat16)`` with bf16 input: a bf16 output within the registry's bf16_tol of fp32."""
    info = mixers.get_info(name)
    m = _build(info, torch.float32)
    mb = copy.deepcopy(m).to(torch.bfloat16)
    x, grid = _input(info, dtype=torch.float32)
    up = torch.randn_like(x)
    tol_y, tol_g = info.bf16_tol
    for causal in _modes(info):
        y, gx, _ = _out_and_grads(m, x, grid, causal, up)
        yb, gxb, _ = _out_and_grads(mb, x.bfloat16(), grid, causal, up)
        assert yb.dtype == gxb.dtype == torch.bfloat16
        assert torch.isfinite(yb).all() and torch.isfinite(gxb).all()
        assert _rel(yb, y) <= tol_y, f"{name} causal={causal}: bf16 output off by {_rel(yb, y):.4f} > {tol_y}"
        assert _rel(gxb, gx) <= tol_g, f"{name} causal={causal}: bf16 input grad off by {_rel(gxb, gx):.4f} > {tol_g}"


@pytest.mark.parametrize("name", NAMES)
def test_autocast_bf16_agrees_with_fp32_and_keeps_fp32_weights(name):
    """Under CPU autocast with fp32 weights: an fp32 output (x's dtype), fp32 gradients for the master weights,
    output and gradients within the registry's bf16_tol of fp32."""
    info = mixers.get_info(name)
    m = _build(info, torch.float32)
    x, grid = _input(info, dtype=torch.float32)
    up = torch.randn_like(x)
    tol_y, tol_g = info.bf16_tol
    for causal in _modes(info):
        y, gx, gp = _out_and_grads(m, x, grid, causal, up)
        ya, gxa, gpa = _out_and_grads(m, x, grid, causal, up, autocast=True)
        assert ya.dtype == gxa.dtype == torch.float32
        assert all(g is None or g.dtype == torch.float32 for g in gpa)
        assert _rel(ya, y) <= tol_y, f"{name} causal={causal}: autocast output off by {_rel(ya, y):.4f} > {tol_y}"
        assert _rel(gxa, gx) <= tol_g, f"{name} causal={causal}: autocast input grad off by {_rel(gxa, gx):.4f}"
        used = [(a, b) for a, b in zip(gpa, gp) if a is not None and b is not None]
        if used:
            flat_a, flat_b = (torch.cat([t.flatten() for t in side]) for side in zip(*used))
            assert _rel(flat_a, flat_b) <= tol_g, f"{name}: autocast weight grads off by {_rel(flat_a, flat_b):.4f}"


@pytest.mark.parametrize("name", NAMES)
def test_input_dtype_must_match_the_weights_outside_autocast(name):
    """One behaviour for all: bf16 (or fp64) input into an fp32 mixer is a TypeError naming x, unless under
    autocast (tested above); a mixer without parameters takes any floating dtype and returns it."""
    info = mixers.get_info(name)
    m = _build(info, torch.float32)
    x, grid = _input(info, dtype=torch.float32)
    causal = _modes(info)[0]
    if m.weight_dtype() is None:
        assert m(x.bfloat16(), grid=grid, causal=causal).dtype == torch.bfloat16
        return
    for wrong in (torch.bfloat16, torch.float64):
        with pytest.raises(TypeError, match=r"x: expected dtype torch.float32 \(the mixer's parameters"):
            m(x.to(wrong), grid=grid, causal=causal)


# ---- bad input -------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_gets_a_clear_error(name):
    info = mixers.get_info(name)
    m = _build(info, torch.float32)
    n, grid = _shape(info)
    c = info.test_dim
    x = torch.randn(2, n, c)
    with pytest.raises(ValueError, match=r"x: expected a tensor of rank 3"):
        m(x[0], grid=grid)
    with pytest.raises(ValueError, match=r"x: expected channel dim C="):
        m(torch.randn(2, n, c + 1), grid=grid)
    with pytest.raises(TypeError, match=r"x: expected a floating-point tensor"):
        m(torch.ones(2, n, c, dtype=torch.long), grid=grid)
    with pytest.raises(TypeError, match=r"x: expected a torch.Tensor"):
        m(x.tolist(), grid=grid)
    with pytest.raises(TypeError, match=r"causal: expected a bool"):
        m(x, grid=grid, causal="yes")
    caps = info.capabilities
    if not caps.causal:
        with pytest.raises(ValueError, match=r"causal: expected False"):
            m(x, grid=grid, causal=True)
    if not caps.bidirectional:
        with pytest.raises(ValueError, match=r"causal: expected True"):
            m(x, grid=grid, causal=False)
    causal = _modes(info)[0]
    with pytest.raises(ValueError, match=r"grid: expected a grid whose product equals"):
        m(x, grid=(n + 1,) if 1 in caps.grid_dims else (n + 1, 1, 1)[: caps.grid_dims[0]], causal=causal)
    if caps.grid == "required":
        with pytest.raises(ValueError, match=r"grid: expected a spatial shape"):
            m(x, causal=causal)
    mask = torch.ones(2, n, dtype=torch.bool)
    if caps.key_padding_mask:
        with pytest.raises(TypeError, match=r"key_padding_mask: expected a bool tensor"):
            m(x, grid=grid, causal=causal, key_padding_mask=mask.float())
        with pytest.raises(ValueError, match=r"key_padding_mask: expected shape \(B, N\)"):
            m(x, grid=grid, causal=causal, key_padding_mask=mask[:, :-1])
    else:
        with pytest.raises(ValueError, match=r"key_padding_mask: expected None"):
            m(x, grid=grid, causal=causal, key_padding_mask=mask)


# ---- extra context (P08's deconstructed attentions) ---------------------------------------------

CONTEXT_NAMES = [i.name for i in INFOS if i.capabilities.context]


@pytest.mark.parametrize("name", CONTEXT_NAMES)
def test_context_mixer_is_causal_in_its_context_too(name):
    """Perturbing the future of the context (token ids, embeddings, stream states) changes nothing before it."""
    info = mixers.get_info(name)
    m = _build(info).mixer
    x, _ = _input(info)
    b, n, c = x.shape
    ctx = _context(info.capabilities.context, b, n, c, x.dtype, info.test_kwargs.get("vocab_size", 16))
    y = m(x, causal=True, context=ctx)
    cut = n // 2
    ctx2 = _context(info.capabilities.context, b, n, c, x.dtype, info.test_kwargs.get("vocab_size", 16), seed=1)
    ctx2 = {k: torch.cat([ctx[k][:, :cut], ctx2[k][:, cut:]], 1) for k in ctx}
    y2 = m(x, causal=True, context=ctx2)
    torch.testing.assert_close(y2[:, :cut], y[:, :cut], atol=1e-10, rtol=1e-10)
    assert (y2[:, cut:] - y[:, cut:]).abs().max() > 1e-6, "the context does not reach the outputs"


@pytest.mark.parametrize("name", CONTEXT_NAMES)
def test_context_mixer_without_its_context_gets_a_clear_error(name):
    info = mixers.get_info(name)
    m = _build(info, torch.float32).mixer
    x, _ = _input(info, dtype=torch.float32)
    kind = info.capabilities.context[0]
    with pytest.raises(TypeError, match=rf"context: expected a mapping with '{kind}'.*needs it, received NoneType"):
        m(x, causal=True)
    with pytest.raises(ValueError, match=rf"context: expected a mapping with '{kind}'"):
        m(x, causal=True, context={})


@pytest.mark.parametrize("name", [n for n in NAMES if n not in CONTEXT_NAMES][:3])
def test_mixer_without_context_refuses_one(name):
    info = mixers.get_info(name)
    m = _build(info, torch.float32)
    x, grid = _input(info, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"context: expected None: .* needs no context"):
        m(x, grid=grid, causal=_modes(info)[0], context={"embeddings": x})


# ---- RoPE (the rope= option of the mixers whose scores are query-key dot products) -------------

ROPE_NAMES = [i.name for i in INFOS if "rope" in inspect.signature(i.cls.__init__).parameters]


def test_the_expected_mixers_take_rope():
    assert {"softmax", "softmax_qknorm", "sliding_window", "ssa", "combiner_fixed", "combiner_axial", "sea",
            "taylor_attention", "static_emb_qk", "rnd_emb_qk", "fixed_seq_qk", "rnd_table_qk"} <= set(ROPE_NAMES)


@pytest.mark.parametrize("name", ROPE_NAMES)
def test_rope_option_changes_the_output_keeps_causality_and_decoding(name):
    info = mixers.get_info(name)
    torch.manual_seed(0)
    kw = {**info.test_kwargs, "rope": True}
    rotated = mixers.create(info.name, info.test_dim, **kw).double().eval()
    plain = mixers.create(info.name, info.test_dim, **info.test_kwargs).double().eval()
    plain.load_state_dict(rotated.state_dict())
    if info.capabilities.context:
        rotated, plain = (_WithContext(m, info.test_kwargs.get("vocab_size", 16)) for m in (rotated, plain))
    x, grid = _input(info)
    causal = _modes(info)[-1]
    y = rotated(x, grid=grid, causal=causal)
    assert (y - plain(x, grid=grid, causal=causal)).abs().max() > 1e-4, "rope=True changed nothing"
    if info.capabilities.causal:
        x2 = x.clone()
        x2[:, x.shape[1] // 2:] += 3.0
        torch.testing.assert_close(rotated(x2, grid=grid, causal=True)[:, : x.shape[1] // 2],
                                   rotated(x, grid=grid, causal=True)[:, : x.shape[1] // 2], atol=1e-10, rtol=1e-10)
    if info.capabilities.recurrent:
        _assert_steps_equal_forward(rotated, x, rotated(x, causal=True))


# ---- ALiBi (the alibi= option of the softmax mixers: a linear bias on the logits, Press et al. 2022) ----------

ALIBI_NAMES = [i.name for i in INFOS if "alibi" in inspect.signature(i.cls.__init__).parameters]


def test_the_expected_mixers_take_alibi():
    assert {"softmax", "softmax_qknorm"} <= set(ALIBI_NAMES)


@pytest.mark.parametrize("name", ALIBI_NAMES)
def test_alibi_option_is_the_op_on_the_mixers_heads_keeps_causality_padding_and_decoding(name):
    from einops import rearrange

    from attnlab.ops.alibi import alibi_attention_reference, alibi_slopes

    info = mixers.get_info(name)
    torch.manual_seed(0)
    biased = mixers.create(info.name, info.test_dim, **{**info.test_kwargs, "alibi": True}).double().eval()
    plain = mixers.create(info.name, info.test_dim, **info.test_kwargs).double().eval()
    plain.load_state_dict(biased.state_dict())
    x, grid = _input(info)
    for causal in _modes(info):
        y = biased(x, grid=grid, causal=causal)
        assert (y - plain(x, grid=grid, causal=causal)).abs().max() > 1e-4, "alibi=True changed nothing"
        # the mixer is the literal ALiBi attention on its own heads, then its output projection
        q, k, v = biased._qkv(x)
        o = alibi_attention_reference(q, k, v, alibi_slopes(biased.num_heads), causal=causal)
        torch.testing.assert_close(y, biased.proj(rearrange(o, "b h n d -> b n (h d)")), atol=1e-12, rtol=1e-12)
    half = x.shape[1] // 2
    x2 = x.clone()
    x2[:, half:] += 3.0
    torch.testing.assert_close(biased(x2, causal=True)[:, :half], biased(x, causal=True)[:, :half], atol=1e-10,
                               rtol=1e-10)
    # padded keys change nothing for the real tokens
    pad = torch.ones(x.shape[:2], dtype=torch.bool)
    pad[:, -2:] = False
    x3 = x.clone()
    x3[:, -2:] = 100.0
    torch.testing.assert_close(biased(x3, causal=False, key_padding_mask=pad)[:, :-2],
                               biased(x, causal=False, key_padding_mask=pad)[:, :-2], atol=1e-10, rtol=1e-10)
    _assert_steps_equal_forward(biased, x, biased(x, causal=True))


def test_alibi_refuses_rope_and_non_bools():
    with pytest.raises(ValueError, match=r"alibi: expected False when rope is set"):
        mixers.create("softmax", 16, num_heads=2, alibi=True, rope=True)
    with pytest.raises(TypeError, match=r"alibi: expected a bool, received"):
        mixers.create("softmax", 16, num_heads=2, alibi=1)
