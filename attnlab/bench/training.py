"""Benchmark cases of whole layers and training steps, where the precision targets are set (issue 16).

* ``sequence_step``: one training step's forward + backward of a ``SequenceModel`` language model
  (default: 4 layers, width 256, 4 heads, softmax mixers, batch 16; N = sequence length). Run it
  with ``--dtype float32,autocast`` to time the fp32 and the bf16-autocast step side by side.
* ``softmax_layer``: the ``softmax`` mixer against a hand-written module of the same size
  (``nn.Linear`` qkv, ``scaled_dot_product_attention``, ``nn.Linear`` out projection): what the
  mixer's contract (checks, padding, dtype rule) costs over the bare computation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnlab.bench.inputs import create_mixer
from attnlab.bench.registry import register_case
from attnlab.bench.thunks import Impls

__all__ = ["HandwrittenAttention"]


class HandwrittenAttention(nn.Module):
    """Multi-head self-attention as one would write it inline: Linear qkv, SDPA, Linear out; x (B, N, C) -> (B, N, C)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.proj(o.transpose(1, 2).reshape(b, n, c))


@register_case(
    "softmax_layer",
    description="softmax mixer layer (B=4, dim 256, 4 heads) vs a hand-written Linear qkv + SDPA + Linear out module "
    "of the same size and weights",
    sizes=(512, 2048),
    reference="handwritten",
    ops=("attnlab.mixers.softmax.MultiHeadAttention",),
    tests=("tests/mixers/test_softmax.py", "tests/mixers/test_contract.py"),
    tiny=(37, {"dim": 16, "heads": 2, "batch": 2}),
    oracle="handwritten",
    agree=("attnlab",),
    params={"batch": 4, "dim": 256, "heads": 4, "causal": False},
)
def setup_softmax_layer(n: int, dtype: torch.dtype, mode: str, *, batch: int, dim: int, heads: int,
                        causal: bool) -> Impls:
    """Input (batch, n, dim); impls ``attnlab`` (the registered mixer) and ``handwritten`` (same weights)."""
    torch.manual_seed(0)
    mixer = create_mixer("softmax", dim, heads).to(dtype).train()
    bare = HandwrittenAttention(dim, heads).to(dtype).train()
    bare.load_state_dict(mixer.state_dict())
    x = torch.randn(batch, n, dim, dtype=dtype, requires_grad=mode == "fwdbwd")
    impls = Impls(mode)
    impls.add("attnlab", lambda: mixer(x, causal=causal), [x])
    impls.add("handwritten", lambda: bare(x, causal), [x])
    return impls


@register_case(
    "sequence_step",
    description="training step (fwd+bwd) of a SequenceModel LM: B=16, dim 256, depth 4, 4 heads, softmax mixers; "
    "N = sequence length (--dtype float32,autocast for bf16 vs fp32)",
    sizes=(256, 1024),
    reference="attnlab",
    ops=("attnlab.models.sequence.SequenceModel",),
    tests=("tests/models/test_sequence.py", "tests/train/test_trainer.py"),
    tiny=(16, {"dim": 16, "depth": 1, "heads": 2, "batch": 2, "vocab": 11}),
    modes=("fwdbwd",),
    params={"batch": 16, "dim": 256, "depth": 4, "heads": 4, "mixer": "softmax", "vocab": 256},
)
def setup_sequence_step(n: int, dtype: torch.dtype, mode: str, *, batch: int, dim: int, depth: int, heads: int,
                        mixer: str, vocab: int) -> Impls:
    """Tokens (batch, n); impl ``attnlab``: the model's logits, whose backward reaches every weight."""
    from attnlab.models import SequenceModel

    torch.manual_seed(0)
    model = SequenceModel(vocab_size=vocab, dim=dim, depth=depth, num_heads=heads, mixer=mixer, max_len=n,
                          head="lm").to(dtype).train()
    tokens = torch.randint(0, vocab, (batch, n), generator=torch.Generator().manual_seed(0))
    impls = Impls(mode)
    impls.add("attnlab", lambda: model(tokens), [])
    return impls
