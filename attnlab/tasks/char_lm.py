"""Character-level language modelling on a text corpus (default: this Python's standard library sources)."""
from __future__ import annotations

import functools
import sysconfig
import zlib
from pathlib import Path

import numpy as np
import torch

from attnlab.utils.checks import check_positive_int, fail
from attnlab.tasks.base import Batch, Task, TaskSpec, split_seed
from attnlab.tasks.registry import register
from attnlab.tasks.scoring import token_ce

__all__ = ["CharLM", "encode", "decode", "VOCAB", "stdlib_files"]

#: id 0 = any character outside the table, 1 = tab, 2 = newline, 3.. = printable ASCII 32..126
VOCAB = ["\ufffd", "\t", "\n"] + [chr(c) for c in range(32, 127)]
_LUT = np.zeros(256, dtype=np.uint8)
_LUT[9], _LUT[10] = 1, 2
_LUT[32:127] = np.arange(3, 98, dtype=np.uint8)


def encode(text: str) -> np.ndarray:
    """Text -> uint8 ids in [0, len(VOCAB)); characters outside the table map to 0."""
    cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return np.where(cp < 256, _LUT[np.minimum(cp, 255)], 0).astype(np.uint8)


def decode(ids) -> str:
    """Ids -> text (id 0 shown as U+FFFD)."""
    return "".join(VOCAB[int(i)] for i in ids)


def stdlib_files() -> list[Path]:
    """The standard library's ``.py`` files (no site-packages, no test suites), sorted by relative path."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "test", "tests", "idlelib", "__pycache__"}
    files = [p for p in root.rglob("*.py") if not skip & set(p.relative_to(root).parts[:-1])]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _split_of(name: str) -> str:
    # A file's split depends only on its name: stable across machines and corpus sizes.
    h = zlib.crc32(name.encode()) % 20
    return "val" if h == 0 else "test" if h == 1 else "train"


@functools.lru_cache(maxsize=8)
def _load(path: str | None, max_chars: int) -> dict[str, np.ndarray]:
    if path is None:
        root = Path(sysconfig.get_paths()["stdlib"])
        files = stdlib_files()
        if not files:
            raise FileNotFoundError(f"corpus: expected Python sources under {root}, found none; pass path=<file>")
        parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        total = 0
        for f in files:
            try:
                text = f.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            parts[_split_of(f.relative_to(root).as_posix())].append(text)
            total += len(text)
            if total >= max_chars:
                break
        out = {k: encode("\n".join(v)) for k, v in parts.items()}
    else:
        p = Path(path)
        if not p.is_file():
            fail("path", "an existing text file", repr(path))
        ids = encode(p.read_text(encoding="utf-8", errors="replace")[:max_chars])
        a, b = int(len(ids) * 0.9), int(len(ids) * 0.95)
        out = {"train": ids[:a], "val": ids[a:b], "test": ids[b:]}
    return out


@register("char_lm")
class CharLM(Task):
    """Next-character prediction on a text corpus; metric ``bpc`` (bits per character, lower is better).

    Default corpus: the ``.py`` sources of the running Python's standard library
    (read from disk, up to ``max_chars`` characters in sorted path order; each
    file goes to train / val / test by a hash of its path, 90/5/5). ``path``: any
    text file instead (split 90/5/5 by position). Characters: printable ASCII,
    tab and newline (98 ids, others map to id 0). A batch is ``batch_size``
    random windows of ``seq_len + 1`` characters of the split.

    Shapes: inputs (B, seq_len) long, targets (B, seq_len) long (inputs shifted by one);
    model outputs (B, seq_len, 98) logits.
    """

    metric = "bpc"
    higher_is_better = False

    def __init__(self, seq_len: int = 128, path: str | None = None, max_chars: int = 2_000_000, seed: int = 0):
        super().__init__(seed)
        self.seq_len = check_positive_int("seq_len", seq_len)
        self.max_chars = check_positive_int("max_chars", max_chars)
        self.path = None if path is None else str(path)
        self.data = _load(self.path, self.max_chars)
        for split, ids in self.data.items():
            if len(ids) < seq_len + 2:
                fail("path", f"a corpus whose {split} split holds more than seq_len + 1 = {seq_len + 1} characters",
                     f"{len(ids)} characters")

    @property
    def spec(self) -> TaskSpec:
        """Tokens in, next-token logits out, causal."""
        return TaskSpec(input="tokens", output="lm", seq_len=self.seq_len, vocab_size=len(VOCAB),
                        num_classes=len(VOCAB), causal=True)

    def batch(self, split: str, index: int, batch_size: int) -> Batch:
        """``batch_size`` windows of the split, deterministic in (seed, split, index)."""
        self._check_batch_args(split, index, batch_size)
        ids = self.data[split]
        rng = np.random.default_rng(split_seed(self.seed, split, index))
        start = rng.integers(0, len(ids) - self.seq_len - 1, size=batch_size)
        win = torch.from_numpy(ids[start[:, None] + np.arange(self.seq_len + 1)].astype(np.int64))
        return Batch(win[:, :-1].contiguous(), win[:, 1:].contiguous())

    def loss(self, outputs: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict]:
        """Cross-entropy per character; metrics ``bpc``, ``loss`` (nats) and ``accuracy``."""
        return token_ce(outputs, batch.targets, len(VOCAB))
