"""Next-token loss and perplexity of attnlab and Hugging Face LMs: hand-computed cases, masks, bad batches."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from attnlab.analysis.lm_eval import lm_logits, next_token_nll, perplexity, split_batch


class _FixedLogits(nn.Module):
    """Logits that put probability p on token 1 and spread the rest uniformly over the other V - 1 ids."""

    def __init__(self, vocab: int, p: float):
        super().__init__()
        self.vocab, self.p = vocab, p

    def forward(self, ids, key_padding_mask=None):
        probs = torch.full((*ids.shape, self.vocab), (1 - self.p) / (self.vocab - 1))
        probs[..., 1] = self.p
        return probs.log()


def test_uniform_model_has_perplexity_v_and_masked_pairs_do_not_count():
    ids = torch.tensor([[1, 1, 1, 2], [1, 2, 1, 1]])
    assert perplexity(_FixedLogits(8, 1 / 8), [ids]) == pytest.approx(8.0, rel=1e-6)
    model = _FixedLogits(5, 0.6)
    nll, count = next_token_nll(model, [ids])
    # predicted tokens: row 0 -> 1, 1, 2; row 1 -> 2, 1, 1: four 1s (-log 0.6) and two 2s (-log 0.1)
    assert count == 6 and nll == pytest.approx((4 * -math.log(0.6) + 2 * -math.log(0.1)) / 6, rel=1e-6)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])  # the pair (1 -> 2) at the end of row 0 is padding
    nll, count = next_token_nll(model, [{"input_ids": ids, "attention_mask": mask}])
    assert count == 5 and nll == pytest.approx((4 * -math.log(0.6) - math.log(0.1)) / 5, rel=1e-6)


def test_bad_batches_are_refused():
    with pytest.raises(TypeError, match=r"batch: expected token ids of shape \(B, N\)"):
        split_batch(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"batch\['attention_mask'\]: expected a tensor of shape \(2, 3\)"):
        split_batch({"input_ids": torch.zeros(2, 3, dtype=torch.long), "attention_mask": torch.ones(2, 4)})
    with pytest.raises(ValueError, match="batches: expected at least one batch with two real tokens in a row"):
        next_token_nll(_FixedLogits(4, 0.5), [torch.zeros(2, 1, dtype=torch.long)])
    with pytest.raises(ValueError, match=r"model: expected a language model returning logits of shape \(B, N, V\)"):
        lm_logits(nn.Identity(), torch.zeros(2, 3, dtype=torch.long))


@torch.no_grad()
def test_hf_loss_matches_its_own_labels_loss(hf_lm):
    model = hf_lm("llama")
    ids = torch.randint(0, 64, (2, 10))
    nll, count = next_token_nll(model, [ids])
    assert count == 18 and nll == pytest.approx(float(model(input_ids=ids, labels=ids).loss), rel=1e-5)
