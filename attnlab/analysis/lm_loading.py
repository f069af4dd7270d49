"""A language model and its text encoding from a path or a name, for ``attnlab analyze``.

:func:`load_lm` accepts

- an attnlab model folder, checkpoint folder or run folder (``attnlab.train.load_model``): text
  maps to ids with the character table of the task the model was trained on (``char_lm``);
- a local Hugging Face folder (``save_pretrained`` output) or a model name already in the local
  Hugging Face cache (never downloaded): text maps to ids with the tokenizer saved with it, or,
  when there is none and the vocabulary has at least 256 ids, with the UTF-8 bytes of the text.

:func:`text_batches` cuts the encoded text into (B, seq_len) windows for calibration and evaluation.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from attnlab.analysis.hf_models import load_hf_causal_lm, load_hf_tokenizer
from attnlab.train.saved_model import RECORD_FILE, load_model
from attnlab.utils.checks import check_positive_int, fail

__all__ = ["LoadedLM", "load_lm", "text_batches"]


@dataclass
class LoadedLM:
    """A loaded model, ``encode(text) -> (n,) long ids``, and where the encoding came from."""

    model: nn.Module
    encode: Callable[[str], torch.Tensor]
    kind: str  # "attnlab" or "hf"
    encoding: str
    max_len: int | None


def _is_attnlab_folder(path: Path) -> bool:
    return path.is_dir() and ((path / RECORD_FILE).is_file() or (path / "state.json").is_file()
                              or (path / "checkpoints").is_dir())


def _attnlab(path: Path, arg: str) -> LoadedLM:
    from attnlab.tasks.char_lm import VOCAB, encode

    model, record = load_model(path)
    vocab = record["kwargs"].get("vocab_size")
    if record.get("task") != "char_lm" and vocab != len(VOCAB):
        fail(arg, "an attnlab language model trained on char_lm (text is encoded with its character table)",
             f"a model of task {record.get('task')!r} with vocab_size {vocab!r} ({path})")
    return LoadedLM(model, lambda text: torch.from_numpy(encode(text).astype("int64")), "attnlab",
                    "char_lm characters", record["kwargs"].get("max_len"))


def _hf(spec: str, arg: str) -> LoadedLM:
    model = load_hf_causal_lm(spec, arg=arg)
    tokenizer = load_hf_tokenizer(spec)
    max_len = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    if tokenizer is not None:
        return LoadedLM(model, lambda text: torch.tensor(tokenizer(text)["input_ids"], dtype=torch.long), "hf",
                        f"tokenizer {type(tokenizer).__name__}", max_len)
    if model.config.vocab_size < 256:
        fail(arg, "a Hugging Face model with a saved tokenizer, or a vocabulary of at least 256 ids "
             "(text is then encoded as UTF-8 bytes)", f"{spec!r} (no tokenizer, vocab_size {model.config.vocab_size})")
    return LoadedLM(model, lambda text: torch.tensor(list(text.encode("utf-8")), dtype=torch.long), "hf",
                    "UTF-8 bytes (no tokenizer found)", max_len)


def load_lm(spec: str, *, arg: str = "spec") -> LoadedLM:
    """The language model named by ``spec`` (a folder or a Hugging Face name; see the module docstring).

    ``arg``: the name errors give the argument (the CLI passes ``"--model"``).
    """
    path = Path(spec)
    if _is_attnlab_folder(path):
        return _attnlab(path, arg)
    if path.exists() and not (path / "config.json").is_file():
        fail(arg, "an attnlab model/checkpoint/run folder or a Hugging Face model folder (config.json)",
             f"{spec!r} (neither)")
    return _hf(spec, arg)


def text_batches(ids: torch.Tensor, seq_len: int, batch_size: int, *, arg: str = "ids") -> list[torch.Tensor]:
    """Consecutive non-overlapping windows of ``seq_len`` ids, grouped into (batch_size, seq_len) batches.

    The last, incomplete batch is kept (smaller B); leftover ids shorter than a window are dropped.
    ValueError naming ``arg`` if ``ids`` holds fewer than one window.
    """
    check_positive_int("seq_len", seq_len)
    check_positive_int("batch_size", batch_size)
    n = ids.numel() // seq_len
    if n == 0:
        fail(arg, f"a text of at least seq_len={seq_len} tokens", f"{ids.numel()} tokens")
    windows = ids[: n * seq_len].view(n, seq_len)
    return list(windows.split(batch_size))
