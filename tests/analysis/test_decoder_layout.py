"""Finding a decoder's blocks: attnlab models, each supported Hugging Face family, and the errors for the rest."""
from __future__ import annotations

import pytest
from torch import nn

from attnlab.analysis.decoder_layout import LOOKED_FOR, find_layout
from attnlab.analysis.hf_models import HF_FAMILIES
from attnlab.models import SequenceModel, ViT


def test_attnlab_layouts():
    lm = SequenceModel(vocab_size=10, dim=8, depth=3, num_heads=2)
    layout = find_layout(lm)
    assert (layout.kind, layout.family, layout.depth, layout.attn, layout.mlp) == ("attnlab", "MixerBlock", 3, "mixer",
                                                                                    "ffn")
    assert layout.attn_module(1) is lm.blocks[1].mixer and layout.mlp_module(2) is lm.blocks[2].ffn
    assert find_layout(ViT(img_size=8, patch_size=4, dim=8, depth=2, num_heads=2, num_classes=3)).depth == 2


def test_models_without_known_blocks_are_refused_naming_what_was_looked_for():
    with pytest.raises(ValueError) as e:
        find_layout(nn.Sequential(nn.Linear(2, 2)))
    msg = str(e.value)
    assert msg.startswith("model: expected a decoder whose blocks the drop tool can find (") and msg.endswith(
        "received Sequential")
    for needle in ("blocks[i] of MixerBlock (.mixer, .ffn)", "llama: model.layers[i] or layers[i] (.self_attn, .mlp)",
                   "gpt2: transformer.h[i] or h[i] (.attn, .mlp)"):
        assert needle in msg and needle in LOOKED_FOR
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module, received str"):
        find_layout("llama")


def test_the_test_configs_cover_every_supported_family(hf_lm):
    assert set(hf_lm.families) == set(HF_FAMILIES)


@pytest.mark.parametrize("family", sorted(HF_FAMILIES))
def test_hf_families(family, hf_lm):
    model = hf_lm(family)
    layout = find_layout(model)
    assert layout.kind == "hf" and layout.family == family and layout.depth == 3
    assert layout.attn == ("attn" if family == "gpt2" else "self_attn") and layout.mlp == "mlp"
    assert layout.block_names[0] == ("transformer.h.0" if family == "gpt2" else "model.layers.0")


def test_unsupported_hf_family_is_refused(transformers_module):
    tr = transformers_module
    bert = tr.BertModel(tr.BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=16))
    with pytest.raises(ValueError, match=r"model: expected a Hugging Face decoder of a supported family "
                                         r"\(gpt2, llama, mistral, qwen2, qwen3\), received model_type 'bert' "
                                         r"\(BertModel\)"):
        find_layout(bert)
