"""Per-layer mixer patterns: ``resolve_mixers`` expands a backbone's ``mixer``, ``build_mixer`` builds one layer.

A backbone takes ``mixer`` as
  - one registered name (every layer), e.g. ``"softmax"``;
  - a comma pattern cycled over the depth, e.g. ``"deltanet,deltanet,softmax"``
    (P12's hybrids); ``"name*3"`` repeats an entry, so ``"deltanet*3,softmax"``
    is the same as the pattern above;
  - a list of names or ``(name, kwargs)`` pairs, cycled over the depth.
``mixer_kwargs`` is one dict for every layer, or ``{mixer_name: dict}`` when all
its keys are mixer names of the pattern.
"""
from __future__ import annotations

import inspect

from attnlab import mixers
from attnlab.utils.checks import describe, fail

__all__ = ["LayerSpec", "resolve_mixers", "build_mixer", "accepts_kwarg", "with_rope", "with_alibi", "refuse_context"]

LayerSpec = tuple[str, dict]


def _parse_entry(entry: object) -> list[LayerSpec]:
    if isinstance(entry, str):
        name, _, times = entry.strip().partition("*")
        name = name.strip()
        if not name:
            fail("mixer", "a registered mixer name", repr(entry))
        n = 1
        if times:
            if not times.strip().isdigit() or int(times) < 1:
                fail("mixer", "a repeat count such as 'deltanet*3'", repr(entry))
            n = int(times)
        return [(name, {})] * n
    if isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], str) and isinstance(entry[1], dict):
        return [(entry[0], dict(entry[1]))]
    fail("mixer", "a name, 'name*k', or a (name, kwargs) pair", describe(entry), TypeError)
    raise AssertionError  # unreachable


def resolve_mixers(mixer: object, depth: int, mixer_kwargs: dict | None = None) -> list[LayerSpec]:
    """Expand a mixer pattern to ``depth`` ``(name, kwargs)`` pairs (see module doc).

    Raises a clear error for unknown names, an empty pattern, or a pattern longer
    than the depth (which would silently drop layers).
    """
    if isinstance(mixer, str):
        entries = [e for e in mixer.split(",")]
    elif isinstance(mixer, (list, tuple)):
        entries = list(mixer)
        if len(entries) == 2 and isinstance(entries[0], str) and isinstance(entries[1], dict):
            entries = [tuple(entries)]
    else:
        fail("mixer", "a mixer name, a comma pattern or a list", describe(mixer), TypeError)
    pattern: list[LayerSpec] = [spec for e in entries for spec in _parse_entry(e)]
    if not pattern:
        fail("mixer", "at least one mixer name", repr(mixer))
    if len(pattern) > depth:
        fail("mixer", f"a pattern of at most depth={depth} layers", f"{len(pattern)} layers in {mixer!r}")
    for name, _ in pattern:
        mixers.get_info(name)  # KeyError with close matches if unknown
    names = {n for n, _ in pattern}
    kw = dict(mixer_kwargs or {})
    per_name = bool(kw) and all(k in names and isinstance(v, dict) for k, v in kw.items())
    out = []
    for i in range(depth):
        name, own = pattern[i % len(pattern)]
        shared = kw.get(name, {}) if per_name else kw
        out.append((name, {**shared, **own}))
    return out


def build_mixer(name: str, dim: int, kwargs: dict, num_heads: int | None) -> mixers.TokenMixer:
    """``mixers.create(name, dim, **kwargs)``, passing ``num_heads`` only if the mixer accepts it."""
    kw = dict(kwargs)
    if num_heads is not None and "num_heads" not in kw:
        params = inspect.signature(mixers.get_info(name).cls.__init__).parameters
        if "num_heads" in params:
            kw["num_heads"] = num_heads
    return mixers.create(name, dim, **kw)


def accepts_kwarg(name: str, kwarg: str) -> bool:
    """True when the mixer registered as ``name`` takes keyword ``kwarg`` in its constructor."""
    return kwarg in inspect.signature(mixers.get_info(name).cls.__init__).parameters


def with_rope(layers: list[LayerSpec]) -> list[LayerSpec]:
    """The layers with ``rope=True`` for every mixer that takes ``rope=`` (unless its kwargs set it).

    This is what a backbone's ``pos="rope"`` means. Raises a ValueError naming ``pos`` when no layer's
    mixer takes RoPE (the model would have no positions at all).
    """
    return _with_position_flag(layers, "rope", "softmax, softmax_qknorm, sliding_window, ssa, combiner_*, sea, "
                                               "taylor_attention, the *_qk mixers")


def with_alibi(layers: list[LayerSpec]) -> list[LayerSpec]:
    """The layers with ``alibi=True`` for every mixer that takes ``alibi=`` (unless its kwargs set it): what a
    backbone's ``pos="alibi"`` means (Press et al. 2022). ValueError naming ``pos`` when no layer's mixer takes it."""
    return _with_position_flag(layers, "alibi", "softmax, softmax_qknorm")


def _with_position_flag(layers: list[LayerSpec], flag: str, takers: str) -> list[LayerSpec]:
    out = [(name, kw if flag in kw or not accepts_kwarg(name, flag) else {**kw, flag: True}) for name, kw in layers]
    if not any(accepts_kwarg(name, flag) for name, _ in layers):
        fail("pos", f"{flag!r} with at least one mixer that takes {flag}= ({takers})",
             f"mixers {sorted({n for n, _ in layers})}")
    return out


def refuse_context(layers: list[LayerSpec], backbone: str) -> None:
    """ValueError naming ``mixer`` when a layer's mixer needs extra context (``capabilities.context``), for
    backbones that provide none (``ViT``: image patches have no token ids, embeddings or fixed streams here)."""
    for i, (name, _) in enumerate(layers):
        needs = mixers.get_info(name).capabilities.context
        if needs:
            fail("mixer", f"mixers that need no extra context ({backbone} provides none)",
                 f"layer {i}: {name!r} needs {list(needs)}")
