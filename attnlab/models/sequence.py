"""The sequence backbone: tokens or vectors in, LM / classification / regression out, any mixer per layer."""
from __future__ import annotations

import math

import torch
from torch import nn

from attnlab.utils.checks import check_choice, check_key_padding_mask, check_positive_int, describe, fail
from attnlab.layers import MixerBlock, drop_path_rates, make_norm
from attnlab.models.mixer_pattern import build_mixer, resolve_mixers, with_alibi, with_rope
from attnlab.ops.recording import is_recording, pause_recording

__all__ = ["SequenceModel", "sinusoidal_positions"]

HEADS = ("lm", "class", "regression")
POS = ("learned", "sinusoidal", "rope", "alibi", "none")
#: the extra context (``attnlab.mixers.context``) a SequenceModel provides; vector input has no token ids
CONTEXT_PROVIDED = ("token_ids", "embeddings", "random_stream", "text_stream")
POOLS = ("mean", "last")
#: sequence-parallel attentions a SequenceModel can be trained with under torchrun (attnlab.distributed)
SEQUENCE_PARALLEL = ("ulysses", "ring", "hybrid")


def sinusoidal_positions(n: int, dim: int) -> torch.Tensor:
    """The fixed sinusoidal table of Vaswani et al. (2017): (n, dim)."""
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    table = torch.zeros(n, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table.float()


class SequenceModel(nn.Module):
    """Pre-norm transformer-style sequence model with any token mixer per layer.

    Input: token ids (B, N) long (``vocab_size``) or vectors (B, N, in_dim) float
    (``in_dim``). Output by ``head``:
      - ``"lm"``: (B, N, num_classes) logits per position (num_classes defaults to vocab_size);
      - ``"class"``: (B, num_classes) logits from pooled tokens (``pool`` "mean" over real
        tokens, or "last": the last real token, which is what a causal model should use);
      - ``"regression"``: (B, N, out_dim) values per position.

    Args:
        vocab_size / in_dim: exactly one of them (token or continuous input).
        dim, depth, num_heads: width, layers, heads (passed to mixers that take it).
        mixer: a name, comma pattern (cycled over depth) or list; see ``attnlab.models.mixer_pattern``.
        mixer_kwargs: one dict for all layers or ``{mixer_name: dict}``.
        ffn: ``"mlp"``, ``"glu"`` or ``"none"``; mlp_ratio its hidden width over dim.
        max_len: longest sequence (size of the learned position table).
        pos: ``"learned"``, ``"sinusoidal"``, ``"rope"`` (rotary embeddings inside every mixer that takes
            ``rope=``; no absolute table), ``"alibi"`` (ALiBi's linear biases in every mixer that takes
            ``alibi=``; no absolute table) or ``"none"``.
        causal: mixing is causal; default True for the LM head, else False.
        dropout, drop_path: dropout on residual branches / stochastic depth (linear over depth).
        norm: ``"layernorm"`` or ``"rmsnorm"``.
        fixed_sequence: token ids (L,) of the fixed text for ``text_stream`` mixers (P08's FixedSeqQK);
            L >= the longest input.
        stream_std: standard deviation of the fixed random sequence of ``random_stream`` mixers (P08's
            RndEmbQK), a (max_len, dim) buffer drawn at construction.
        sequence_parallel: None, or ``"ulysses"``, ``"ring"`` or ``"hybrid"``: under torchrun
            (``attnlab.distributed.SequenceParallel``) the sequence is sharded across the ranks and every
            attention layer runs that distributed attention; in one process the model is unchanged.
            Needs softmax-attention mixers and a per-token head (``"lm"`` or ``"regression"``), and no RoPE.

    Mixers that declare extra context (``capabilities.context``, see ``attnlab.mixers.context``) get it
    from the model: the token ids, the layer-0 embeddings (token embedding plus absolute positions, as
    they enter block 0), and the per-layer hidden states of a fixed random sequence or of
    ``fixed_sequence`` run through the same blocks alongside the input (one extra sequence per forward,
    each layer's state normed by that layer's ``norm1`` like the layer's own input). A mixer whose
    context the model cannot provide is refused at construction.

    ``position_offset`` (attribute, default 0): the position in the whole sequence of the first token the
    model is given; sequence parallelism sets it to the start of this rank's shard.
    """

    def __init__(
        self, *, vocab_size: int | None = None, in_dim: int | None = None, dim: int = 64, depth: int = 2,
        num_heads: int = 4, mixer: object = "softmax", mixer_kwargs: dict | None = None, ffn: str = "mlp",
        mlp_ratio: float = 4.0, head: str = "lm", num_classes: int | None = None, out_dim: int | None = None,
        max_len: int = 1024, pos: str = "learned", causal: bool | None = None, dropout: float = 0.0,
        drop_path: float = 0.0, norm: str = "layernorm", pool: str = "mean",
        fixed_sequence: torch.Tensor | None = None, stream_std: float = 1.0, sequence_parallel: str | None = None,
    ):
        args = dict(locals())
        super().__init__()
        #: the constructor's arguments (``SequenceModel(**model.init_config)`` rebuilds the architecture;
        #: saved beside checkpoints by ``attnlab.train.saved_model``)
        self.init_config = {k: v for k, v in args.items() if k not in ("self", "__class__")}
        if (vocab_size is None) == (in_dim is None):
            fail("vocab_size/in_dim", "exactly one of them (token or vector input)",
                 f"vocab_size={vocab_size!r}, in_dim={in_dim!r}")
        check_positive_int("dim", dim)
        check_positive_int("depth", depth)
        check_positive_int("max_len", max_len)
        check_choice("head", head, HEADS)
        check_choice("pos", pos, POS)
        check_choice("pool", pool, POOLS)
        self.head_kind, self.pool, self.max_len = head, pool, max_len
        self.causal = (head == "lm") if causal is None else bool(causal)
        self.embed_dim = dim
        if vocab_size is not None:
            self.vocab_size = check_positive_int("vocab_size", vocab_size)
            self.embed = nn.Embedding(vocab_size, dim)
        else:
            self.vocab_size = None
            self.in_dim = check_positive_int("in_dim", in_dim)
            self.embed = nn.Linear(in_dim, dim)
        if pos == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, max_len, dim))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        elif pos == "sinusoidal":
            self.register_buffer("pos_embed", sinusoidal_positions(max_len, dim)[None], persistent=False)
        else:
            self.pos_embed = None
        self.layer_mixers = resolve_mixers(mixer, depth, mixer_kwargs)
        if pos == "rope":
            self.layer_mixers = with_rope(self.layer_mixers)
        elif pos == "alibi":
            self.layer_mixers = with_alibi(self.layer_mixers)
        rates = drop_path_rates(drop_path, depth)
        self.blocks = nn.ModuleList(
            MixerBlock(dim, build_mixer(name, dim, kw, num_heads), ffn=ffn, mlp_ratio=mlp_ratio, norm=norm,
                       dropout=dropout, drop_path=r)
            for (name, kw), r in zip(self.layer_mixers, rates)
        )
        self._setup_context(fixed_sequence, stream_std)
        self.norm = make_norm(norm, dim)
        self.sequence_parallel = _check_sequence_parallel(sequence_parallel, head, self.blocks, self.layer_mixers)
        self.position_offset = 0
        if head == "regression":
            self.out_dim = check_positive_int("out_dim", out_dim if out_dim is not None else 1)
            self.head = nn.Linear(dim, self.out_dim)
        else:
            n_out = num_classes if num_classes is not None else (vocab_size if head == "lm" else None)
            if n_out is None:
                fail("num_classes", f"an int for head={head!r}", None)
            self.num_classes = check_positive_int("num_classes", n_out)
            self.head = nn.Linear(dim, self.num_classes)
        # Token embeddings keep torch's N(0, 1) init: with GPT-2's 0.02 the token identity is too faint
        # in the pre-norm residual stream and associative recall stalls at its ln(num_pairs) plateau
        # (measured: accuracy 0.29 vs 1.00 after 600 steps, 4 pairs, softmax, d = 64).

    def _setup_context(self, fixed_sequence, stream_std) -> None:
        """Record the context kinds the mixers need; refuse what cannot be provided; build the fixed streams."""
        self.context_kinds = tuple(sorted({k for blk in self.blocks for k in blk.context_kinds}))
        for i, ((name, _), blk) in enumerate(zip(self.layer_mixers, self.blocks)):
            for kind in blk.context_kinds:
                if kind not in CONTEXT_PROVIDED or (self.vocab_size is None and kind in ("token_ids", "text_stream")):
                    fail("mixer", "mixers whose context this SequenceModel can provide (vector input has no token ids)",
                         f"layer {i}: {name!r} needs {kind!r}")
        if "random_stream" in self.context_kinds:
            if isinstance(stream_std, bool) or not isinstance(stream_std, (int, float)) or not stream_std > 0:
                fail("stream_std", "a positive float", describe(stream_std))
            self.register_buffer("random_sequence", torch.randn(1, self.max_len, self.embed_dim) * float(stream_std))
        if "text_stream" in self.context_kinds:
            if not isinstance(fixed_sequence, torch.Tensor) or fixed_sequence.dim() != 1 or \
                    fixed_sequence.is_floating_point() or fixed_sequence.numel() == 0:
                fail("fixed_sequence", "token ids (L,) of the fixed text that fixed_seq_qk layers read",
                     describe(fixed_sequence))
            if int(fixed_sequence.min()) < 0 or int(fixed_sequence.max()) >= self.vocab_size:
                fail("fixed_sequence", f"token ids in [0, {self.vocab_size})",
                     f"ids in [{int(fixed_sequence.min())}, {int(fixed_sequence.max())}]")
            self.register_buffer("fixed_sequence", fixed_sequence.detach().clone().long())

    def _positions(self, h: torch.Tensor) -> torch.Tensor:
        """Add the absolute positions of h's tokens, from ``position_offset`` (a shard's start under sequence parallelism)."""
        if self.pos_embed is None:
            return h
        return h + self.pos_embed[:, self.position_offset:self.position_offset + h.shape[1]].to(h.dtype)

    def _streams(self, n: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """The layer-0 states (1, n, dim) of the fixed sequences the mixers read (P08's RndEmbQK, FixedSeqQK)."""
        streams = {}
        if "random_stream" in self.context_kinds:
            streams["random_stream"] = self._positions(self.random_sequence[:, :n].to(dtype))
        if "text_stream" in self.context_kinds:
            if self.fixed_sequence.numel() < n:
                fail("x", f"at most {self.fixed_sequence.numel()} positions (the length of fixed_sequence)", f"N = {n}")
            streams["text_stream"] = self._positions(self.embed(self.fixed_sequence[None, :n]).to(dtype))
        return streams

    def _run_with_context(self, x, h, key_padding_mask):
        """The blocks when some mixer needs context: the input and the fixed streams advance layer by layer.

        The streams ride along as extra rows of the batch (one pass per block): a stream row's context is
        its own state, which is exactly what each stream kind holds. Inside ``record_attention`` (and with
        mixers that read token ids) the streams run as separate passes instead, unrecorded, so that the
        recorded maps are the input's only.
        """
        streams = self._streams(h.shape[1], h.dtype)
        if not streams:
            ctx = _present({"token_ids": x if self.vocab_size is not None else None, "embeddings": h})
            for blk in self.blocks:
                h = blk(h, causal=self.causal, key_padding_mask=key_padding_mask, context=ctx)
            return h
        if is_recording() or "token_ids" in self.context_kinds:
            return self._run_streams_apart(x, h, key_padding_mask, streams)
        b, kinds = h.shape[0], list(streams)
        h_all = torch.cat([h, *streams.values()], 0)
        embeddings = h_all
        if key_padding_mask is not None:
            key_padding_mask = torch.cat([key_padding_mask, key_padding_mask.new_ones(len(kinds), h.shape[1])], 0)
        for blk in self.blocks:
            normed = blk.norm1(h_all[b:])
            ctx = {"embeddings": embeddings, **{k: normed[i:i + 1] for i, k in enumerate(kinds)}}
            h_all = blk(h_all, causal=self.causal, key_padding_mask=key_padding_mask, context=ctx)
        return h_all[:b]

    def _run_streams_apart(self, x, h, key_padding_mask, streams):
        """The same as the joint pass, with each fixed stream run as its own (unrecorded) pass."""
        ctx = {"token_ids": x if self.vocab_size is not None else None, "embeddings": h}
        stream_ctx = {k: {"embeddings": s0, "token_ids": self.fixed_sequence[None, : h.shape[1]]
                          if k == "text_stream" else None} for k, s0 in streams.items()}
        for blk in self.blocks:
            states = {k: blk.norm1(s) for k, s in streams.items()}
            with pause_recording():  # record_attention records the input's attention, not the streams'
                streams = {k: blk(s, causal=self.causal, context=_present({**stream_ctx[k], **states}))
                           for k, s in streams.items()}
            h = blk(h, causal=self.causal, key_padding_mask=key_padding_mask, context=_present({**ctx, **states}))
        return h

    def no_weight_decay(self) -> set[str]:
        """Parameter names excluded from weight decay (read by attnlab.train)."""
        return {"pos_embed"}

    def _check(self, x: object) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            fail("x", "a torch.Tensor", describe(x), TypeError)
        if self.vocab_size is not None:
            if x.dim() != 2 or x.dtype not in (torch.long, torch.int32, torch.int64):
                fail("x", "token ids of shape (B, N) and an integer dtype", describe(x))
            if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.vocab_size):
                fail("x", f"token ids in [0, {self.vocab_size})", f"ids in [{int(x.min())}, {int(x.max())}]")
        elif x.dim() != 3 or x.shape[-1] != self.in_dim or not x.is_floating_point():
            fail("x", f"float vectors of shape (B, N, {self.in_dim})", describe(x))
        if x.shape[1] + self.position_offset > self.max_len:
            fail("x", f"at most max_len={self.max_len} positions (from position_offset={self.position_offset})",
                 describe(x))
        if x.shape[1] == 0:
            fail("x", "at least one position", describe(x))
        return x

    def forward_features(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Embed, run the blocks, final norm: (B, N) or (B, N, in_dim) -> (B, N, dim)."""
        x = self._check(x)
        b, n = x.shape[:2]
        if key_padding_mask is not None:
            key_padding_mask = check_key_padding_mask("key_padding_mask", key_padding_mask, b, n)
        h = self._positions(self.embed(x))
        if self.context_kinds:
            return self.norm(self._run_with_context(x, h, key_padding_mask))
        for blk in self.blocks:
            h = blk(h, causal=self.causal, key_padding_mask=key_padding_mask)
        return self.norm(h)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits or values; shapes as in the class docstring."""
        h = self.forward_features(x, key_padding_mask)
        if self.head_kind != "class":
            return self.head(h)
        if self.pool == "mean":
            if key_padding_mask is None:
                pooled = h.mean(dim=1)
            else:
                w = key_padding_mask.to(h.dtype)[..., None]
                pooled = (h * w).sum(1) / w.sum(1).clamp_min(1.0)
        else:
            if key_padding_mask is None:
                pooled = h[:, -1]
            else:
                last = (key_padding_mask.long().cumsum(1).argmax(1))  # index of the last real token
                pooled = h[torch.arange(h.shape[0], device=h.device), last]
        return self.head(pooled)


def _present(ctx: dict) -> dict:
    """The context entries that exist (a stream has no token ids of its own unless it is the text stream)."""
    return {k: v for k, v in ctx.items() if v is not None}


def _check_sequence_parallel(kind: str | None, head: str, blocks: nn.ModuleList, layer_mixers: list) -> str | None:
    """``kind`` if a model with this head and these mixers can shard its sequence that way; else the standard error."""
    if kind is None:
        return None
    check_choice("sequence_parallel", kind, (None,) + SEQUENCE_PARALLEL)
    if head == "class":
        fail("sequence_parallel", "a per-token head ('lm' or 'regression'): a 'class' head pools the whole sequence",
             f"{kind!r} with head='class'")
    for blk, (name, _) in zip(blocks, layer_mixers):
        if not getattr(blk.mixer, "supports_sequence_parallel", False):
            fail("sequence_parallel", "a model whose every mixer is softmax attention (softmax, softmax_qknorm)",
                 f"{kind!r} with mixer {name!r}")
        if getattr(blk.mixer, "rope", None) is not None:
            # a shard's queries and keys would be rotated from position 0, not from the shard's start
            fail("sequence_parallel", "mixers without RoPE (pos='learned', 'sinusoidal' or 'none')",
                 f"{kind!r} with mixer {name!r} using rope")
        if getattr(blk.mixer, "alibi_slopes", None) is not None:
            # the bias of a shard's queries needs their positions in the whole sequence
            fail("sequence_parallel", "mixers without ALiBi (pos='learned', 'sinusoidal' or 'none')",
                 f"{kind!r} with mixer {name!r} using alibi")
    return kind
