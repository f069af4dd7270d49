"""Dropping modules (P17): a dropped module is the identity, restore is exact, decoding keeps working
(greedy decoding on a SequenceModel; generate() and KV-cache decoding on Hugging Face models); bad plans."""
from __future__ import annotations

import inspect

import pytest
import torch

from attnlab.analysis.decoder_layout import find_layout
from attnlab.analysis.module_drop import DropPlan, DroppedSublayer, drop_modules
from attnlab.models import SequenceModel


def _lm(**kw) -> SequenceModel:
    return SequenceModel(vocab_size=30, dim=16, depth=4, num_heads=2, **kw).eval()


@torch.no_grad()
def _reference_logits(model: SequenceModel, ids: torch.Tensor, plan: DropPlan) -> torch.Tensor:
    """The dropped model written out by hand: skipped sub-layers add nothing to the residual stream."""
    h = model.embed(ids) + model.pos_embed[:, : ids.shape[1]]
    for i, blk in enumerate(model.blocks):
        if i not in plan.attn:
            h = h + blk.mixer(blk.norm1(h), causal=True)
        if i not in plan.mlp:
            h = h + blk.ffn(blk.norm2(h))
    return model.head(model.norm(h))


@torch.no_grad()
def _greedy(model, prompt: torch.Tensor, steps: int) -> torch.Tensor:
    ids = prompt
    for _ in range(steps):
        ids = torch.cat([ids, model(ids)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids


@torch.no_grad()
def test_dropped_block_is_exactly_the_identity():
    model = _lm()
    blk = model.blocks[2]
    x = torch.randn(2, 7, 16)
    with drop_modules(model, DropPlan(attn=(2,), mlp=(2,))) as handle:
        assert torch.equal(blk(x, causal=True), x)
        assert handle.plan.blocks == (2,)
        assert isinstance(blk.mixer, DroppedSublayer) and "MultiHeadAttention" in repr(blk.mixer)
    with drop_modules(model, DropPlan(attn=(2,))):       # attention only: h + MLP(norm2 h)
        torch.testing.assert_close(blk(x, causal=True), x + blk.ffn(blk.norm2(x)), atol=0, rtol=0)


@torch.no_grad()
@pytest.mark.parametrize("plan", [DropPlan(attn=(0, 3)), DropPlan(mlp=(1,)), DropPlan(attn=(1, 2), mlp=(2,))])
def test_dropped_model_matches_hand_written_forward_and_restores(plan):
    model = _lm()
    ids = torch.randint(0, 30, (2, 9))
    before = model(ids)
    with drop_modules(model, plan):
        torch.testing.assert_close(model(ids), _reference_logits(model, ids, plan), atol=1e-6, rtol=1e-5)
        assert (model(ids) - before).abs().max() > 1e-3  # the drop changed the model
    assert torch.equal(model(ids), before)
    assert all(not isinstance(m, DroppedSublayer) for m in model.modules())


def test_greedy_decoding_after_a_drop_follows_the_dropped_model():
    model = _lm(mixer="deltanet,softmax")
    plan = DropPlan(attn=(1,), mlp=(3,))
    prompt = torch.randint(0, 30, (2, 4))
    with drop_modules(model, plan):
        out = _greedy(model, prompt, 6)
    ref = prompt
    for _ in range(6):  # the same greedy loop on the hand-written dropped forward
        ref = torch.cat([ref, _reference_logits(model, ref, plan)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, ref) and out.shape == (2, 10)


def test_bad_plans_are_refused():
    model = _lm()
    with pytest.raises(ValueError, match=r"plan.attn: expected block indices in \[0, 4\), received \[1, 4\] "
                                         r"\(\[4\] out of range\)"):
        drop_modules(model, DropPlan(attn=(1, 4)))
    with pytest.raises(TypeError, match="plan: expected an attnlab.analysis.DropPlan"):
        drop_modules(model, {"attn": [1]})
    with pytest.raises(TypeError, match="attn: expected a tuple of block indices"):
        DropPlan(attn=(1.0,))
    no_mlp = SequenceModel(vocab_size=30, dim=16, depth=2, num_heads=2, ffn="none")
    assert find_layout(no_mlp).mlp is None
    with pytest.raises(ValueError, match=r"plan.mlp: expected no MLP indices \(these blocks have no MLP\)"):
        drop_modules(no_mlp, DropPlan(mlp=(0,)))


def test_a_second_drop_of_the_same_module_keeps_it_dropped_until_the_first_restores():
    model = _lm()
    outer = drop_modules(model, DropPlan(attn=(0,)))
    inner = drop_modules(model, DropPlan(attn=(0, 1)))
    inner.restore()
    assert isinstance(model.blocks[0].mixer, DroppedSublayer) and not isinstance(model.blocks[1].mixer, DroppedSublayer)
    outer.restore()
    assert not isinstance(model.blocks[0].mixer, DroppedSublayer)


def _zero_attention_output(model, family: str, i: int) -> None:
    """An independent way to make attention i contribute nothing: zero its output projection."""
    layer = find_layout(model).blocks[i]
    proj = layer.attn.c_proj if family == "gpt2" else layer.self_attn.o_proj
    with torch.no_grad():
        proj.weight.zero_()
        if proj.bias is not None:
            proj.bias.zero_()


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2"])
@torch.no_grad()
def test_hf_dropped_attention_equals_a_zeroed_output_projection(family, hf_lm):
    model, zeroed = hf_lm(family), hf_lm(family)
    _zero_attention_output(zeroed, family, 1)
    ids = torch.randint(0, 64, (2, 9))
    with drop_modules(model, DropPlan(attn=(1,))):
        torch.testing.assert_close(model(input_ids=ids).logits, zeroed(input_ids=ids).logits, atol=1e-6, rtol=1e-5)
    layout = find_layout(model)
    x = torch.randn(2, 5, 32)
    with drop_modules(model, DropPlan(attn=(0,), mlp=(0,))):   # a dropped HF block returns its input
        out = layout.blocks[0](x, position_embeddings=model.model.rotary_emb(x, torch.arange(5)[None])) \
            if family != "gpt2" else layout.blocks[0](x)
        out = out if isinstance(out, torch.Tensor) else out[0]
        assert torch.equal(out, x)


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2"])
@pytest.mark.parametrize("plan", [DropPlan(attn=(0,)), DropPlan(attn=(0, 2), mlp=(0,))])
@torch.no_grad()
def test_hf_generate_and_cached_decoding_after_a_drop(family, plan, hf_lm):
    """generate() logits and step-by-step KV-cache logits equal a full forward pass of the dropped model.

    Block 0's attention is dropped on purpose: Hugging Face reads the cached length from layer 0.
    """
    model = hf_lm(family)
    ids = torch.randint(1, 64, (2, 6))
    mask = torch.ones_like(ids)
    with drop_modules(model, plan):
        out = model.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=False, output_logits=True,
                             return_dict_in_generate=True, pad_token_id=0)
        seq = out.sequences
        assert seq.shape == (2, 11)
        full = model(input_ids=seq, use_cache=False).logits
        torch.testing.assert_close(torch.stack(out.logits, dim=1), full[:, 5:-1], atol=1e-5, rtol=1e-4)
        first = model(input_ids=seq[:, :7], use_cache=True)
        cache = first.past_key_values
        assert cache.get_seq_length() == 7
        # transformers 5.x renamed past_key_values to cache
        name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        step = model(input_ids=seq[:, 7:9], use_cache=True, **{name: cache})
        torch.testing.assert_close(step.logits, full[:, 7:9], atol=1e-5, rtol=1e-4)
