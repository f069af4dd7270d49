"""attnlab.ops.alibi: the slopes of Press et al. (powers of two and their rule for other H), a hand-computed case,
the SDPA path against the literal reference (shapes, odd lengths, masks, chunking, fp32 / fp64, forward and
backward), fp64 gradcheck, causality by perturbing the future, decoding positions, relative positions, recording,
bf16, and bad input named.

Tolerances: fp64 1e-12, fp32 2e-6 (outputs and gradients: SDPA and the explicit softmax round differently once).
"""
from __future__ import annotations

import math

import pytest
import torch

import attnlab.ops.alibi as alibi_mod
from attnlab.ops import record_attention
from attnlab.ops.alibi import alibi_attention, alibi_attention_reference, alibi_bias, alibi_slopes

TOL = {torch.float64: 1e-12, torch.float32: 2e-6}


def _qkv(shape, dtype, seed=0, m=None):
    g = torch.Generator().manual_seed(seed)
    b, h, n, d = shape
    m = n if m is None else m
    return (torch.randn(b, h, n, d, dtype=dtype, generator=g, requires_grad=True),
            torch.randn(b, h, m, d, dtype=dtype, generator=g, requires_grad=True),
            torch.randn(b, h, m, d + 1, dtype=dtype, generator=g, requires_grad=True))


def test_slopes_are_the_papers_geometric_sequence():
    assert alibi_slopes(8).tolist() == [2.0 ** -h for h in range(1, 9)]
    assert alibi_slopes(4).tolist() == [2.0 ** (-2 * h) for h in range(1, 5)]
    assert alibi_slopes(1).tolist() == [2.0 ** -8]
    # H not a power of two: the 4-head slopes, then every other slope of the 8-head sequence (Press et al.)
    assert alibi_slopes(6).tolist() == [2.0 ** -2, 2.0 ** -4, 2.0 ** -6, 2.0 ** -8, 2.0 ** -1, 2.0 ** -3]
    assert alibi_slopes(12).tolist() == pytest.approx(
        [2.0 ** -h for h in range(1, 9)] + [2.0 ** -0.5, 2.0 ** -1.5, 2.0 ** -2.5, 2.0 ** -3.5], rel=1e-15)
    assert alibi_slopes(3).tolist() == [2.0 ** -4, 2.0 ** -8, 2.0 ** -2]


def test_hand_computed_case():
    # H = 2 (slopes 1/16, 1/256), N = 3, q = 0: the logits are the bias alone; v_j = j
    q = torch.zeros(1, 2, 3, 1, dtype=torch.float64)
    k = torch.randn(1, 2, 3, 1, dtype=torch.float64)
    v = torch.arange(3, dtype=torch.float64).reshape(1, 1, 3, 1).expand(1, 2, 3, 1)
    slopes = alibi_slopes(2)
    causal = alibi_attention(q, k, v, slopes, causal=True)
    both = alibi_attention(q, k, v, slopes, causal=False)
    for h, m in enumerate((1 / 16, 1 / 256)):
        # causal row 2 sees j = 0, 1, 2 with weights exp(-m (2 - j))
        w = [math.exp(-m * 2), math.exp(-m), 1.0]
        assert causal[0, h, 2, 0].item() == pytest.approx((w[1] + 2 * w[2]) / sum(w), abs=1e-14)
        assert causal[0, h, 0, 0].item() == 0.0  # row 0 sees only v_0 = 0
        # bidirectional row 0 sees j = 0, 1, 2 with weights exp(-m |0 - j|)
        w = [1.0, math.exp(-m), math.exp(-2 * m)]
        assert both[0, h, 0, 0].item() == pytest.approx((w[1] + 2 * w[2]) / sum(w), abs=1e-14)
    assert alibi_bias(slopes, torch.arange(3), torch.arange(3), causal=True)[0].tolist() == [
        [0.0, 1 / 16, 2 / 16], [-1 / 16, 0.0, 1 / 16], [-2 / 16, -1 / 16, 0.0]]
    assert alibi_bias(slopes, torch.arange(2), torch.arange(2), causal=False)[1].tolist() == [
        [0.0, -1 / 256], [-1 / 256, 0.0]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape, m", [((1, 1, 1, 4), None), ((2, 3, 7, 8), None), ((1, 4, 33, 16), None),
                                      ((2, 2, 5, 8), 9), ((2, 2, 9, 8), 5)])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("causal_rows", [256, 4])
def test_fast_path_matches_reference(assert_close, monkeypatch, dtype, shape, m, causal, causal_rows):
    monkeypatch.setattr(alibi_mod, "CAUSAL_CHUNK_ROWS", causal_rows)
    q, k, v = _qkv(shape, dtype, m=m)
    slopes = alibi_slopes(shape[1]).to(dtype)
    assert_close(alibi_attention(q, k, v, slopes, causal=causal),
                 alibi_attention_reference(q, k, v, slopes, causal=causal), atol=TOL[dtype], rtol=TOL[dtype],
                 grads_of=[q, k, v])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("causal", [False, True])
def test_key_padding_and_chunks_match_reference(assert_close, monkeypatch, dtype, causal):
    q, k, v = _qkv((3, 2, 11, 8), dtype, seed=1)
    kpm = torch.ones(3, 11, dtype=torch.bool)
    kpm[0, 7:] = False
    kpm[1, :] = False          # a fully padded sequence: zeros, no NaN
    kpm[2, :3] = False         # leading padding: causal rows 0-2 see nothing
    slopes = alibi_slopes(2).to(dtype)
    ref = alibi_attention_reference(q, k, v, slopes, causal=causal, key_padding_mask=kpm)
    assert_close(alibi_attention(q, k, v, slopes, causal=causal, key_padding_mask=kpm), ref, atol=TOL[dtype],
                 rtol=TOL[dtype], grads_of=[q, k, v])
    assert ref[1].abs().max() == 0 and torch.isfinite(ref).all()
    # chunks of 2 query rows (bias of 3 x 2 x 2 x 11 elements each), causal ones of 3 rows: the same result
    monkeypatch.setattr(alibi_mod, "ALIBI_CHUNK_ELEMENTS", 3 * 2 * 2 * 11)
    assert_close(alibi_attention(q, k, v, slopes, causal=causal, key_padding_mask=kpm), ref, atol=TOL[dtype],
                 rtol=TOL[dtype], grads_of=[q, k, v])
    monkeypatch.setattr(alibi_mod, "ALIBI_CHUNK_ELEMENTS", 1 << 22)
    monkeypatch.setattr(alibi_mod, "CAUSAL_CHUNK_ROWS", 3)
    assert_close(alibi_attention(q, k, v, slopes, causal=causal, key_padding_mask=kpm), ref, atol=TOL[dtype],
                 rtol=TOL[dtype], grads_of=[q, k, v])


def test_gradcheck_fp64():
    q, k, v = _qkv((1, 2, 5, 3), torch.float64, seed=2)
    kpm = torch.tensor([[True, True, True, True, False]])
    slopes = alibi_slopes(2)
    for causal in (False, True):
        assert torch.autograd.gradcheck(
            lambda q, k, v: alibi_attention(q, k, v, slopes, causal=causal, key_padding_mask=kpm), (q, k, v))


def test_causal_output_ignores_the_future():
    q, k, v = _qkv((2, 4, 12, 8), torch.float64, seed=3)
    slopes = alibi_slopes(4)
    out = alibi_attention(q, k, v, slopes, causal=True)
    q2, k2, v2 = q.detach().clone(), k.detach().clone(), v.detach().clone()
    for t in (q2, k2, v2):
        t[:, :, 6:] += 5.0
    out2 = alibi_attention(q2, k2, v2, slopes, causal=True)
    torch.testing.assert_close(out2[:, :, :6], out[:, :, :6], atol=1e-12, rtol=1e-12)
    assert (out2[:, :, 6:] - out[:, :, 6:]).abs().max() > 0.1


def test_decoding_query_uses_its_position():
    q, k, v = _qkv((2, 3, 9, 4), torch.float64, seed=4)
    slopes = alibi_slopes(3)
    full = alibi_attention(q, k, v, slopes, causal=True)
    for t in (0, 4, 8):
        step = alibi_attention(q[:, :, t:t + 1], k[:, :, :t + 1], v[:, :, :t + 1], slopes,
                               q_positions=torch.tensor([t]), k_positions=torch.arange(t + 1))
        torch.testing.assert_close(step[:, :, 0], full[:, :, t], atol=1e-12, rtol=1e-12)
    # without its position the query would sit at 0: a different result
    wrong = alibi_attention(q[:, :, 8:9], k, v, slopes, k_positions=torch.arange(9))
    assert (wrong[:, :, 0] - full[:, :, 8]).abs().max() > 1e-3


def test_only_relative_positions_matter():
    q, k, v = _qkv((1, 2, 6, 4), torch.float64, seed=5)
    slopes = alibi_slopes(2)
    base = alibi_attention(q, k, v, slopes, causal=False)
    shifted = alibi_attention(q, k, v, slopes, causal=False, q_positions=torch.arange(6) + 1000,
                              k_positions=torch.arange(6) + 1000)
    torch.testing.assert_close(shifted, base, atol=1e-12, rtol=1e-12)


def test_recording_gives_the_reference_probabilities():
    q, k, v = _qkv((1, 2, 5, 4), torch.float64, seed=6)
    slopes = alibi_slopes(2)
    with record_attention() as rec:
        out = alibi_attention(q, k, v, slopes, causal=True)
    ref, probs, _ = alibi_attention_reference(q, k, v, slopes, causal=True, return_probs=True)
    (recorded,) = rec.maps[next(iter(rec.maps))]
    torch.testing.assert_close(recorded, probs.detach(), atol=1e-14, rtol=0)
    torch.testing.assert_close(out, ref, atol=1e-14, rtol=0)
    assert recorded[0, 0].triu(1).abs().max() == 0


def test_bf16_close_to_fp32():
    q, k, v = _qkv((2, 2, 17, 8), torch.float32, seed=7)
    slopes = alibi_slopes(2)
    ref = alibi_attention_reference(q, k, v, slopes, causal=True)
    out = alibi_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), slopes.bfloat16(), causal=True)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=0.05, rtol=0.05)


def test_bad_input_is_named():
    q, k, v = _qkv((1, 2, 4, 4), torch.float32)
    with pytest.raises(ValueError, match=r"slopes: expected 2 finite slopes \(one per head\)"):
        alibi_attention(q, k, v, alibi_slopes(3).float())
    with pytest.raises(ValueError, match=r"slopes: expected 2 finite slopes"):
        alibi_attention(q, k, v, torch.tensor([0.5, float("nan")]))
    with pytest.raises(TypeError, match=r"q_positions: expected an integer tensor of positions"):
        alibi_attention(q, k, v, alibi_slopes(2).float(), q_positions=torch.arange(4.0))
    with pytest.raises(ValueError, match=r"k_positions: expected 4 positions \(one per key\)"):
        alibi_attention(q, k, v, alibi_slopes(2).float(), k_positions=torch.arange(5))
    with pytest.raises(ValueError, match=r"num_heads"):
        alibi_slopes(0)
    with pytest.raises(ValueError, match=r"dropout_p: expected a float in \[0, 1\)"):
        alibi_attention(q, k, v, alibi_slopes(2).float(), dropout_p=1.0)
