"""CST's shared context against the explicit N x N attention with query-independent rows: shapes incl. odd N,
fp32 and fp64, forward and backward, padding; every query receives the same context; a hand-computed case."""
from __future__ import annotations

import pytest
import torch

from attnlab.ops.context_sharing import context_sharing, context_sharing_reference, context_weights
from attnlab.ops.recording import record_attention


@pytest.mark.parametrize("shape", [(1, 1, 1, 3), (2, 3, 7, 4), (3, 1, 33, 8)])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_matches_the_explicit_attention_forward_and_backward(assert_close, shape, dtype, tol):
    x = torch.randn(*shape, dtype=dtype, requires_grad=True)
    logits = (3 * torch.randn(*shape[:3], dtype=dtype)).requires_grad_()
    assert_close(context_sharing(x, logits), context_sharing_reference(x, logits), atol=tol, rtol=tol,
                 grads_of=[x, logits])


def test_padded_positions_get_no_weight(assert_close):
    x = torch.randn(2, 2, 9, 4, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(2, 2, 9, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[0, 6:] = False
    assert_close(context_sharing(x, logits, key_padding_mask=mask),
                 context_sharing_reference(x, logits, key_padding_mask=mask), atol=1e-12, rtol=1e-12,
                 grads_of=[x, logits])
    y = x.detach().clone()
    y[0, :, 6:] = 1e3
    torch.testing.assert_close(context_sharing(y, logits, key_padding_mask=mask)[0],
                               context_sharing(x, logits, key_padding_mask=mask)[0], atol=1e-12, rtol=0)


def test_every_query_receives_the_same_context():
    """Query independence: the rows of the output differ by at most 1e-6 (they are one broadcast vector), and
    so do the rows of the explicit reference; the recorded map's rows are identical too."""
    x = torch.randn(2, 3, 17, 8)
    logits = torch.randn(2, 3, 17)
    for out in (context_sharing(x, logits), context_sharing_reference(x, logits)):
        assert (out - out[:, :, :1]).abs().max() <= 1e-6
    with record_attention() as rec:
        context_sharing(x, logits)
    (probs,) = rec.maps["call0"]
    assert probs.shape == (2, 3, 17, 17) and (probs - probs[:, :, :1]).abs().max() == 0


def test_hand_computed_case():
    # logits (0, ln 3): weights 1/4, 3/4; context = (1 * 1 + 3 * 5) / 4 = 4 for a 1-d feature (1, 5)
    x = torch.tensor([1.0, 5.0]).view(1, 1, 2, 1)
    logits = torch.tensor([0.0, torch.log(torch.tensor(3.0)).item()]).view(1, 1, 2)
    torch.testing.assert_close(context_weights(logits), torch.tensor([[[0.25, 0.75]]]))
    torch.testing.assert_close(context_sharing(x, logits), torch.full((1, 1, 2, 1), 4.0))


def test_bad_input_is_named():
    x = torch.randn(2, 1, 5, 4)
    with pytest.raises(ValueError, match=r"logits: expected shape \(B, H, N\)"):
        context_sharing(x, torch.randn(2, 1, 4))
    with pytest.raises(TypeError, match="logits: expected dtype torch.float32"):
        context_sharing(x, torch.randn(2, 1, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="x: expected a tensor of rank 4"):
        context_sharing(x[0], torch.randn(1, 5))
