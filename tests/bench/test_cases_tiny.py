"""Every registered benchmark case runs at its tiny size, and its implementations agree with its oracle.

A benchmark that times a wrong answer is worthless: for each case and mode, every available
implementation's thunk runs, its outputs are finite, and the implementations the case lists in
``agree`` give the oracle implementation's output (and, in fwd+bwd, input gradients) to the
case's stated tolerance: largest absolute difference <= tolerance x the oracle's largest entry.
Compiled FlexAttention takes tens of seconds to compile, so the implementations in ``COMPILED``
run in the slow test only.
"""
from __future__ import annotations

import pytest
import torch

from attnlab.bench.registry import available_cases

#: implementations that compile on first call (tens of seconds): checked under -m slow
COMPILED = {"flex"}

CASES = available_cases()
RUNS = [(name, mode) for name, case in CASES.items() for mode in case.modes]


def _relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(1e-12)).item()


def _check_case(name: str, mode: str, which) -> list[str]:
    """Run the impls of ``name`` selected by ``which(impl)``; return the names checked against the oracle."""
    case = CASES[name]
    n, overrides = case.tiny
    torch.manual_seed(0)
    impls = case.setup(n, torch.float32, mode, **case.setup_params(overrides))
    assert impls.thunks, f"{name} {mode}: no implementation runs here (skipped: {impls.skipped})"
    assert case.reference in impls.thunks or case.reference in impls.skipped, \
        f"{name}: the ratio baseline {case.reference!r} is neither built nor skipped"
    selected = [impl for impl in impls.thunks if which(impl)]
    for impl in selected:
        impls.thunks[impl]()  # as timed
        outs = impls.thunks[impl].outputs()
        assert all(torch.isfinite(o).all() for o in outs), f"{name} {mode} {impl}: non-finite output or gradient"
    checked = []
    if case.oracle is not None and case.oracle in impls.thunks:
        truth = impls.thunks[case.oracle].outputs()
        for impl in case.agree:
            if impl not in impls.thunks or impl not in selected:
                continue
            outs = impls.thunks[impl].outputs()
            assert len(outs) == len(truth)
            for i, (o, t) in enumerate(zip(outs, truth)):
                what = "output" if i == 0 else f"grad of input {i - 1}"
                assert o.shape == t.shape, f"{name} {mode} {impl}: {what} shape {tuple(o.shape)} vs {tuple(t.shape)}"
                err = _relative_error(o, t)
                assert err <= case.tolerance, f"{name} {mode} {impl}: {what} off by {err:.2e} > {case.tolerance:.0e}"
            checked.append(impl)
    return checked


# NATTEN's CPU path (when installed) warns about its own deprecated argument and its eager Flex call
@pytest.mark.filterwarnings("ignore:return_lse is deprecated:FutureWarning")
@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile:UserWarning")
@pytest.mark.parametrize("name,mode", RUNS, ids=[f"{n}-{m}" for n, m in RUNS])
def test_every_case_runs_tiny_and_agrees_with_its_oracle(name, mode):
    checked = _check_case(name, mode, lambda impl: impl not in COMPILED)
    case = CASES[name]
    if case.oracle is not None:
        # at least the attnlab op itself is checked wherever the case has an oracle
        assert checked, f"{name} {mode}: nothing was compared with the oracle {case.oracle!r}"


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n, c in CASES.items() if "fwd" in c.modes and "flex" in c.agree])
def test_compiled_flex_agrees_with_the_oracle(name):
    assert _check_case(name, "fwd", lambda impl: impl in COMPILED or impl == CASES[name].oracle) == ["flex"]


def test_every_case_states_a_tiny_run_and_a_checked_oracle_when_it_has_a_reference_impl():
    for name, case in CASES.items():
        assert case.tiny[0] >= 1 and set(case.tiny[1]) <= set(case.params), name
        assert case.tolerance <= 1e-3, f"{name}: tolerance {case.tolerance} is too loose to catch a wrong answer"
        if case.oracle is not None:
            assert case.agree and case.oracle not in case.agree, name


def test_a_wrong_answer_is_caught(monkeypatch):
    """The check is not vacuous: an implementation off by 1e-3 relative fails it."""
    from attnlab.bench import attention as attention_cases

    real = attention_cases.attention
    monkeypatch.setattr(attention_cases, "attention", lambda *a, **kw: real(*a, **kw) * (1 + 1e-3))
    with pytest.raises(AssertionError, match="attention fwd attnlab: output off by"):
        _check_case("attention", "fwd", lambda impl: True)
