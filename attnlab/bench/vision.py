"""Training throughput of the vision designs (P04, P07, P09, P10, P11, P13, P15, P26, P29, P31, P32), attnlab vs timm.

``python -m attnlab.bench.vision`` times forward + backward (cross-entropy,
fp32, batch 32 by default; ``--precisions fp32,bf16`` adds the bf16 autocast step) of each design at its tiny configuration and of
timm's model of the same configuration and weights layout (ConViT, CrossViT,
TNT, SHViT; the other designs have no timm counterpart and are timed alone),
interleaving the two implementations repeat by repeat so that machine noise
hits both alike; it prints a Markdown table of parameters,
images/s and the attnlab / timm speed ratio. The same pairs are registered as
``attnlab bench`` cases ``vision_<design>`` (there N is the image size).
"""
from __future__ import annotations

import argparse
from typing import Callable

import torch
from torch import nn

from attnlab.train.throughput import classifier_step_seconds
from attnlab.utils.precision import check_precision
from attnlab.bench.registry import register_case
from attnlab.bench.thunks import Impls

__all__ = ["PAIRS", "CASES", "build_pair", "run", "to_markdown", "main"]


def _timm():
    from attnlab.models.timm_compat import import_timm

    return import_timm()


def _convit(img: int):
    from attnlab.models.convit import CONVIT_CONFIGS, ConViT

    c = CONVIT_CONFIGS["tiny"]
    ours = ConViT(img_size=img, num_classes=10, **c)
    theirs = lambda: _timm().create_model(  # noqa: E731
        "convit_tiny", pretrained=False, img_size=img, patch_size=4, num_classes=10, embed_dim=c["embed_dim"] // c["num_heads"],
        num_heads=c["num_heads"], depth=c["depth"], local_up_to_layer=c["local_up_to_layer"])
    return ours, theirs


def _crossvit(img: int):
    from attnlab.models.crossvit import CROSSVIT_CONFIGS, CrossViT

    c = CROSSVIT_CONFIGS["tiny"]
    ours = CrossViT(img_size=img, num_classes=10, **c)
    theirs = lambda: _timm().models.crossvit.CrossVit(  # noqa: E731
        img_size=img, img_scale=(1.0, 1.0), num_classes=10, patch_size=list(c["patch_size"]),
        embed_dim=list(c["embed_dim"]), depth=[list(d) for d in c["depth"]], num_heads=list(c["num_heads"]),
        mlp_ratio=list(c["mlp_ratio"]))
    return ours, theirs


def _tnt(img: int):
    from attnlab.models.tnt import TNT, TNT_CONFIGS

    c = TNT_CONFIGS["tiny"]
    return TNT(img_size=img, num_classes=10, **c), (lambda: _timm().models.tnt.TNT(img_size=img, num_classes=10, **c))


def _shvit(img: int):
    from attnlab.models.shvit import SHVIT_CONFIGS, SHViT

    c = {k: v for k, v in SHVIT_CONFIGS["tiny"].items() if k != "stem_convs"}
    # timm's stem is fixed at 4 stride-2 convs; compare at the same token grid (img / 16).
    return SHViT(img_size=img, num_classes=10, stem_convs=4, **c), (lambda: _timm().models.shvit.SHViT(num_classes=10, **c))


def _shvit_tiny(img: int):
    from attnlab.models.shvit import shvit_tiny

    return shvit_tiny(img_size=img, num_classes=10), None


def _named(name: str) -> Callable:
    """Builder of a registered design without a timm counterpart."""

    def build(img: int):
        from attnlab.models import create

        return create(name, img_size=img, num_classes=10), None

    return build


#: designs timed on their own (timm has no model of the same configuration)
ATTNLAB_ONLY = ("spectformer_tiny", "activator_tiny", "biformer_tiny", "dinat_tiny", "s2aformer_tiny",
                "hyena_vit_tiny", "hyena_hybrid_tiny", "path_ensemble_tiny")

#: design -> (builder(img) -> (attnlab model, timm factory or None), default image size)
PAIRS: dict[str, tuple[Callable, int]] = {
    **{name: (_named(name), 32) for name in ATTNLAB_ONLY},
    "convit_tiny": (_convit, 32),
    "crossvit_tiny": (_crossvit, 32),
    "tnt_tiny": (_tnt, 32),
    "shvit_tiny": (_shvit_tiny, 32),
    "shvit_tiny_stem16": (_shvit, 128),
}


def build_pair(design: str, img: int | None = None) -> tuple[nn.Module, nn.Module | None, int]:
    """(attnlab model, timm model of the same configuration or None, image size) for ``design``."""
    if design not in PAIRS:
        raise KeyError(f"design: expected one of {sorted(PAIRS)}, received {design!r}")
    builder, default_img = PAIRS[design]
    img = img or default_img
    ours, theirs = builder(img)
    if theirs is not None:
        try:
            theirs = theirs()
        except ImportError:
            theirs = None
    return ours, theirs, img


def run(designs: list[str] | None = None, batch: int = 32, repeats: int = 7,
        precisions: tuple[str, ...] = ("fp32",)) -> list[dict]:
    """Rows {design, impl, precision, img, params, images_per_s, ratio_vs_timm, ratio_vs_fp32} for ``designs``
    (default: all), each model timed at every precision of ``precisions`` ("fp32", "bf16": the training step under
    CPU autocast), all interleaved. ``ratio_vs_timm`` compares at the same precision, ``ratio_vs_fp32`` the same
    model's fp32 step time over this one's."""
    rows = []
    for design in designs or list(PAIRS):
        ours, theirs, img = build_pair(design)
        base = {"attnlab": ours} | ({"timm": theirs} if theirs is not None else {})
        models = {f"{impl}@{p}": m for p in precisions for impl, m in base.items()}
        sec = classifier_step_seconds(models, img, batch, repeats, precision={k: k.split("@")[1] for k in models})
        for key, m in models.items():
            impl, p = key.split("@")
            rows.append(dict(
                design=design, impl=impl, precision=p, img=img, params=sum(t.numel() for t in m.parameters()),
                images_per_s=batch / sec[key],
                ratio_vs_timm=(sec[f"timm@{p}"] / sec[key]) if f"timm@{p}" in sec else None,
                ratio_vs_fp32=(sec[f"{impl}@fp32"] / sec[key]) if f"{impl}@fp32" in sec else None,
            ))
    return rows


def to_markdown(rows: list[dict]) -> str:
    """Markdown table of :func:`run` rows."""
    out = ["| design | impl | precision | img | params | train img/s (fwd+bwd) | speed vs timm | speed vs fp32 |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['ratio_vs_timm']:.2f}x" if r["ratio_vs_timm"] is not None else "-"
        vs32 = f"{r['ratio_vs_fp32']:.2f}x" if r.get("ratio_vs_fp32") is not None else "-"
        out.append(f"| {r['design']} | {r['impl']} | {r.get('precision', 'fp32')} | {r['img']} | {r['params'] / 1e6:.3f} M "
                   f"| {r['images_per_s']:.0f} | {ratio} | {vs32} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m attnlab.bench.vision [--designs convit_tiny tnt_tiny] [--batch 32] [--repeats 7]``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--designs", nargs="*", default=None, choices=sorted(PAIRS))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--precisions", default="fp32", help="comma-separated, timed side by side: fp32, bf16 (autocast)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    precisions = tuple(check_precision("--precisions", x.strip()) for x in a.precisions.split(","))
    print(f"training step (forward + cross-entropy backward), {'/'.join(precisions)}, batch {a.batch}, "
          f"median of {a.repeats}, torch threads {torch.get_num_threads()}\n")
    print(to_markdown(run(a.designs, a.batch, a.repeats, precisions)))


#: designs registered as ``attnlab bench`` cases: design -> (model class timed, image size of the tiny check)
CASES = {
    "convit_tiny": ("attnlab.models.convit.ConViT", 32),
    "crossvit_tiny": ("attnlab.models.crossvit.CrossViT", 32),
    "tnt_tiny": ("attnlab.models.tnt.TNT", 32),
    "shvit_tiny_stem16": ("attnlab.models.shvit.SHViT", 64),
}


def setup_vision(n: int, dtype: torch.dtype, mode: str, *, design: str, batch: int) -> Impls:
    """Images (batch, 3, n, n); impls ``attnlab`` and ``timm`` (when timm imports), each its own random weights."""
    ours, theirs, _ = build_pair(design, n)
    ours = ours.to(dtype)
    x = torch.randn(batch, 3, n, n, dtype=dtype, requires_grad=mode == "fwdbwd")
    impls = Impls(mode)
    impls.add("attnlab", lambda: ours(x), [x])
    if theirs is not None:
        theirs = theirs.to(dtype)
        impls.add("timm", lambda: theirs(x), [x])
    else:
        impls.skip("timm", "timm not importable here, or no timm model of this design")
    return impls


for _design, (_cls, _tiny_img) in CASES.items():
    register_case(
        f"vision_{_design}",
        description=f"{_design}: training step (fwd+bwd, batch 8) attnlab vs timm; N = image size",
        sizes=(PAIRS[_design][1], 2 * PAIRS[_design][1]),
        reference="timm",
        ops=(_cls,),
        tests=("tests/models/test_timm_compat.py",),
        tiny=(_tiny_img, {"batch": 2}),
        params={"design": _design, "batch": 8},
    )(setup_vision)


if __name__ == "__main__":
    main()
