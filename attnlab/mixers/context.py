"""Extra context a token mixer may declare it needs, beyond its input x, and the checks of what it is given.

Most mixers read only their input x (B, N, C). Some of P08's deconstructed attentions take their
queries and keys from elsewhere: the token ids, the layer-0 embeddings, or a fixed sequence run
through the same network. Such a mixer declares the kinds it needs in
``Capabilities(context=("embeddings",))``; its ``forward`` then requires ``context={kind: tensor}``
and its ``mix`` receives the checked mapping as ``context=``. Mixers that declare nothing are
untouched (``forward`` refuses a context for them, as it refuses a mask a mixer cannot use).

The kinds (:data:`CONTEXT_KINDS`), with N the number of tokens and C' any width:

* ``"token_ids"`` — (B, N) integer token ids of the input;
* ``"embeddings"`` — (B, N, C') float: the backbone's layer-0 embeddings of the input (what
  enters the first block: token embedding plus absolute position embedding, if any);
* ``"random_stream"`` — (1 or B, N, C') float: this layer's (normed) hidden states of a fixed
  random sequence run through the same network (P08's RndEmbQK);
* ``"text_stream"`` — the same for a fixed token sequence (P08's FixedSeqQK).

Backbones provide what they can (``attnlab.models.SequenceModel`` provides all four for token
input, all but ``token_ids`` and ``text_stream`` for vector input; ``ViT`` provides none) and refuse,
when they are built, a mixer whose context they cannot provide.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from attnlab.utils.checks import check_tensor, describe, fail

__all__ = ["CONTEXT_KINDS", "check_context_kinds", "check_context"]

CONTEXT_KINDS: dict[str, str] = {
    "token_ids": "(B, N) integer token ids",
    "embeddings": "(B, N, C') float layer-0 embeddings",
    "random_stream": "(1 or B, N, C') float hidden states of a fixed random sequence at this layer",
    "text_stream": "(1 or B, N, C') float hidden states of a fixed token sequence at this layer",
}


def check_context_kinds(kinds: object, arg: str = "context") -> tuple[str, ...]:
    """A declared context: a tuple of distinct names from :data:`CONTEXT_KINDS`."""
    if not isinstance(kinds, tuple) or any(k not in CONTEXT_KINDS for k in kinds) or len(set(kinds)) != len(kinds):
        fail(arg, f"a tuple of distinct context kinds among {sorted(CONTEXT_KINDS)}", describe(kinds), TypeError)
    return kinds


def check_context(owner: str, kinds: tuple[str, ...], context: object, batch: int, n: int,
                  device: torch.device) -> dict[str, torch.Tensor]:
    """The entries of ``context`` that mixer ``owner`` declared (``kinds``), each checked for its shape and dtype.

    Raises a ValueError / TypeError naming ``context`` (or ``context[kind]``), the expected and the received value.
    """
    needed = ", ".join(f"{k!r} ({CONTEXT_KINDS[k]})" for k in kinds)
    if not isinstance(context, Mapping):
        fail("context", f"a mapping with {needed}: {owner} needs it", describe(context), TypeError)
    missing = [k for k in kinds if k not in context]
    if missing:
        fail("context", f"a mapping with {needed}: {owner} needs it", f"keys {sorted(context)}")
    out = {}
    for kind in kinds:
        arg = f"context[{kind!r}]"
        t = check_tensor(arg, context[kind])
        if kind == "token_ids":
            if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool or tuple(t.shape) != (batch, n):
                fail(arg, f"integer token ids of shape (B, N) = ({batch}, {n})", describe(t))
        else:
            rows = (1, batch) if kind.endswith("_stream") else (batch,)
            if not t.is_floating_point() or t.dim() != 3 or t.shape[0] not in rows or t.shape[1] != n:
                fail(arg, f"a float tensor of shape ({' or '.join(map(str, rows))}, N={n}, C')", describe(t))
        if t.device != device:
            fail(arg, f"device {device} (as x)", t.device)
        out[kind] = t
    return out
