"""Shared test settings and fixtures.

Settings: one torch intra-op thread, a fixed torch seed before every test, matplotlib's Agg backend.

Fixtures:

- ``assert_close``: the one helper for comparing a fast path with its reference, forward and
  backward (see :func:`_assert_close` for the full contract)::

      def test_fast_matches_reference(assert_close):
          q, k, v = (torch.randn(2, 3, 17, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
          assert_close(fast(q, k, v), reference(q, k, v), atol=1e-10, rtol=1e-10, grads_of=[q, k, v])

  Modules with their own parameters (a fast mixer and a reference module holding the same weights)
  pass the two parameter lists as a pair: ``grads_of=(list(fast.parameters()), list(ref.parameters()))``.

- ``transformers_module`` / ``hf_lm``: Hugging Face ``transformers`` (an optional extra) and tiny randomly
  initialised causal LMs of each family the analysis tools support (``hf_lm("llama")``; nothing is
  downloaded, ``HF_HUB_OFFLINE=1``); a test using them is skipped, with the install command as the
  reason, where transformers is not installed.
"""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")

# The tests use small tensors: one intra-op thread is as fast on a quiet 2-core machine and up to
# 30x faster on a busy one (two OpenMP threads wait on the loaded core), and results do not depend
# on the thread count's reduction order.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def _tensors(x, name: str) -> list[torch.Tensor]:
    items = list(x) if isinstance(x, (list, tuple)) else [x]
    for i, t in enumerate(items):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a tensor or a sequence of tensors, received {type(t).__name__} at {i}")
    return items


def _compare(a: torch.Tensor, e: torch.Tensor, *, atol: float, rtol: float, equal_nan: bool, label: str) -> None:
    # Compared in the wider dtype: a fp32 fast path is checked against a fp64 reference at fp64.
    dtype = torch.promote_types(a.dtype, e.dtype)
    torch.testing.assert_close(a.detach().to(dtype), e.detach().to(dtype), atol=atol, rtol=rtol, equal_nan=equal_nan,
                               msg=lambda m: f"{label}: {m}")


def _split_wrt(grads_of) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``grads_of`` as (actual's tensors, expected's tensors): one shared list, or a pair of lists."""
    if (isinstance(grads_of, (list, tuple)) and len(grads_of) == 2
            and all(isinstance(side, (list, tuple)) for side in grads_of)):
        wrt_a, wrt_e = _tensors(grads_of[0], "grads_of[0]"), _tensors(grads_of[1], "grads_of[1]")
        if len(wrt_a) != len(wrt_e):
            raise ValueError(f"grads_of: expected two lists of equal length, received {len(wrt_a)} and {len(wrt_e)}")
        return wrt_a, wrt_e
    wrt = _tensors(grads_of, "grads_of")
    return wrt, wrt


def _assert_close(
    actual, expected, *, atol: float, rtol: float, grads_of=None, grad_atol: float | None = None,
    grad_rtol: float | None = None, upstream=None, equal_nan: bool = False,
) -> None:
    """Assert that ``actual`` matches ``expected`` (outputs), then that their gradients match.

    Elementwise ``|actual - expected| <= atol + rtol * |expected|`` (``torch.testing.assert_close``),
    compared in the wider of the two dtypes; shapes must be equal.

    Args:
        actual, expected: the fast path's and the reference's outputs: a tensor, or sequences of
            tensors of equal length (e.g. ``(out, lse)``), matched by position.
        atol, rtol: the stated tolerances of the outputs (required: no default to tune until green).
        grads_of: None (outputs only), or the tensors to differentiate with respect to: a sequence of
            tensors both sides depend on (shared inputs), or a pair ``(actual_wrt, expected_wrt)`` of
            equal-length sequences matched by position (each side's own parameters / input copies).
            Both sides are back-propagated from the same upstream gradient; every listed tensor must
            receive a gradient from both.
        grad_atol, grad_rtol: tolerances of the gradients (default: ``atol``, ``rtol``).
        upstream: dL/d(output), a tensor or a sequence matching the outputs. Default: standard normal
            values from a fixed seed (not ones: a backward that is wrong only in a way a plain sum
            cancels, e.g. returning the mean of the upstream gradient, passes with ones).
        equal_nan: NaN in the same places counts as equal.
    Raises:
        AssertionError naming the output (``output[i]``) or the gradient (``gradient wrt grads_of[i]``)
        that differs, with torch's mismatch report.
    """
    outs_a, outs_e = _tensors(actual, "actual"), _tensors(expected, "expected")
    if len(outs_a) != len(outs_e):
        raise AssertionError(f"actual has {len(outs_a)} outputs, expected has {len(outs_e)}")
    for i, (a, e) in enumerate(zip(outs_a, outs_e)):
        _compare(a, e, atol=atol, rtol=rtol, equal_nan=equal_nan, label=f"output[{i}]")
    if grads_of is None:
        return
    wrt_a, wrt_e = _split_wrt(grads_of)
    if upstream is None:
        g = torch.Generator().manual_seed(0)
        upstream = [torch.randn(a.shape, generator=g, dtype=torch.float64) for a in outs_a]
    ups = _tensors(upstream, "upstream")
    if len(ups) != len(outs_a):
        raise ValueError(f"upstream: expected {len(outs_a)} tensors (one per output), received {len(ups)}")
    grads = {}
    for side, outs, wrt in (("actual", outs_a, wrt_a), ("expected", outs_e, wrt_e)):
        # retain_graph: both sides may share part of the graph (a common input projection).
        grads[side] = torch.autograd.grad(outs, wrt, [u.to(o.dtype) for u, o in zip(ups, outs)], retain_graph=True,
                                          allow_unused=True)
    for i, (ga, ge) in enumerate(zip(grads["actual"], grads["expected"])):
        for side, gr in (("actual", ga), ("expected", ge)):
            if gr is None:
                raise AssertionError(f"gradient wrt grads_of[{i}]: the {side} outputs do not depend on it")
        _compare(ga, ge, atol=atol if grad_atol is None else grad_atol, rtol=rtol if grad_rtol is None else grad_rtol,
                 equal_nan=equal_nan, label=f"gradient wrt grads_of[{i}]")


@pytest.fixture
def assert_close():
    """``assert_close(actual, expected, *, atol, rtol, grads_of=None, grad_atol=None, grad_rtol=None,
    upstream=None, equal_nan=False)``: outputs, then gradients of the same upstream gradient (see _assert_close)."""
    return _assert_close



os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read when huggingface_hub is first imported: nothing may download

#: tiny configs of the Hugging Face families the analysis tools support: (config class, model class, keywords)
_LLAMA_LIKE = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=128)
HF_TINY = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", _LLAMA_LIKE),
    "mistral": ("MistralConfig", "MistralForCausalLM", _LLAMA_LIKE),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", _LLAMA_LIKE),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(_LLAMA_LIKE, head_dim=8)),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(n_embd=32, n_layer=3, n_head=4, n_positions=128)),
}


@pytest.fixture
def one_thread():
    """Torch pinned to one intra-op thread for the test, restored after.

    Tests of many tiny ops use it (``pytestmark = pytest.mark.usefixtures("one_thread")``): a second
    intra-op thread only adds wake-up latency on the shared 2-core machine.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def transformers_module():
    """The ``transformers`` module; skips the test (reason: the install command) where it is not installed."""
    from attnlab.analysis.hf_models import HF_INSTALL, import_transformers

    try:
        return import_transformers()
    except ImportError:
        pytest.skip(f"transformers not installed ({HF_INSTALL})")


@pytest.fixture
def hf_lm(transformers_module):
    """``hf_lm(family, vocab_size=64, seed=0, **config)``: a tiny random causal LM of that family (eval mode).

    Families: the keys of ``HF_TINY`` (3 layers, width 32); special token ids are unset (none outside the
    tiny vocabulary).
    """

    def build(family: str, vocab_size: int = 64, seed: int = 0, **overrides):
        config_cls, model_cls, kw = HF_TINY[family]
        config = getattr(transformers_module, config_cls)(vocab_size=vocab_size, **{**kw, **overrides})
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            setattr(config, name, None)
        torch.manual_seed(seed)
        return getattr(transformers_module, model_cls)(config).eval()

    build.families = tuple(HF_TINY)
    return build
