"""Loading an LM and its text encoding from an attnlab run folder or a local Hugging Face folder; text windows."""
from __future__ import annotations

import pytest
import torch

from attnlab.analysis.lm_loading import load_lm, text_batches
from attnlab.models import SequenceModel
from attnlab.tasks.char_lm import encode
from attnlab.train import save_model


def test_text_batches_cut_consecutive_windows():
    ids = torch.arange(23)
    batches = text_batches(ids, 5, 2)
    assert [tuple(b.shape) for b in batches] == [(2, 5), (2, 5)]
    assert torch.equal(torch.cat(batches).flatten(), torch.arange(20))
    with pytest.raises(ValueError, match=r"--data: expected a text of at least seq_len=30 tokens, received 23 tokens"):
        text_batches(ids, 30, 2, arg="--data")


def test_attnlab_folder_uses_the_char_table(tmp_path):
    model = SequenceModel(vocab_size=98, dim=16, depth=1, num_heads=2, max_len=64)
    save_model(model, tmp_path / "m", task=type("T", (), {"name": "char_lm"})())
    lm = load_lm(str(tmp_path / "m"))
    assert lm.kind == "attnlab" and lm.max_len == 64 and lm.encoding == "char_lm characters"
    assert torch.equal(lm.encode("def f():\n"), torch.from_numpy(encode("def f():\n")).long())
    save_model(SequenceModel(vocab_size=10, dim=16, depth=1, num_heads=2), tmp_path / "other")
    with pytest.raises(ValueError, match="--model: expected an attnlab language model trained on char_lm"):
        load_lm(str(tmp_path / "other"), arg="--model")


def test_neither_kind_of_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"--model: expected an attnlab model/checkpoint/run folder or a Hugging Face "
                                         r"model folder \(config.json\)"):
        load_lm(str(tmp_path / "empty"), arg="--model")


def _char_tokenizer(transformers_module, path):
    """A character-level tokenizer built locally with ``tokenizers`` (no download) and saved beside the model."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {c: i for i, c in enumerate("\\nabcdefghijklmnopqrstuvwxyz ()=:.,_")}
    vocab["[UNK]"] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    fast = transformers_module.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    fast.save_pretrained(path)
    return fast


def test_hf_folder_with_and_without_tokenizer(tmp_path, hf_lm, transformers_module):
    hf_lm("llama", vocab_size=256).save_pretrained(tmp_path / "bytes")
    lm = load_lm(str(tmp_path / "bytes"))
    assert lm.kind == "hf" and lm.encoding.startswith("UTF-8 bytes") and lm.max_len == 128
    assert lm.encode("hé").tolist() == [104, 195, 169]
    hf_lm("gpt2", vocab_size=64).save_pretrained(tmp_path / "tok")
    tok = _char_tokenizer(transformers_module, tmp_path / "tok")
    lm = load_lm(str(tmp_path / "tok"))
    assert lm.encoding.startswith("tokenizer ")  # PreTrainedTokenizerFast or TokenizersBackend (transformers 5)
    assert lm.encode("ab c").tolist() == tok("ab c")["input_ids"] and len(lm.encode("ab c")) == 4
    hf_lm("qwen2", vocab_size=64).save_pretrained(tmp_path / "small")
    with pytest.raises(ValueError, match=r"--model: expected a Hugging Face model with a saved tokenizer, or a "
                                         r"vocabulary of at least 256 ids .* vocab_size 64\)"):
        load_lm(str(tmp_path / "small"), arg="--model")
    with pytest.raises(ValueError, match="--model: expected a local Hugging Face model folder or a model name in the "
                                         r"local Hugging Face cache \(attnlab never downloads weights\), received "
                                         "'no-such-org/no-such-model'"):
        load_lm("no-such-org/no-such-model", arg="--model")


def test_hf_folder_of_an_unsupported_family(tmp_path, transformers_module):
    tr = transformers_module
    tr.BertModel(tr.BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=16)).save_pretrained(tmp_path / "bert")
    with pytest.raises(ValueError, match=r"--model: expected a Hugging Face decoder of a supported family \(gpt2, "
                                         r"llama, mistral, qwen2, qwen3\), received model_type 'bert'"):
        load_lm(str(tmp_path / "bert"), arg="--model")
