"""Reproduction ``fod`` (P16: Yao et al., ICCV 2023): do FOD's intra- and inter-correlation terms add detection power
over a plain reconstruction of the same features?

Setting (CPU scale): the generated ``anomaly`` task at 48 px (four texture families as the normal class; scratches,
blobs, colour shifts and missing pieces as defects, with pixel masks). Features: a small convolutional autoencoder
(:class:`attnlab.models.fod.FeatureExtractor`, 32 channels at stride 4: a 12 x 12 grid) trained by this run on the
*normal training images only*, then frozen; its 3x3 average-pooled encoder features are what every arm reads.
Deviation: the paper uses a WideResNet-50 pretrained on ImageNet; no pretrained weights can be downloaded here.

Arms (each trained alike: same seed, batches, steps, Adam at the same LR; 3 layers, width 64, 4 heads):

* ``FOD``: I2Correlation layers, both losses (the paper's two-pass scheme, lambda1 = lambda2 = 0.5), scored by the
  reconstruction error times the inter-correlation discrepancy;
* ``reconstruction``: the paper's patch-wise reconstruction baseline (plain self-attention in a residual, rec loss,
  scored by the reconstruction error);
* ``I2Correlation, rec only`` (reported, not judged): FOD's layers without the correlation terms (rec loss and rec
  score), which isolates the terms from the architecture.

Measured: image AUROC (image score = the maximum of the blurred map) and pixel AUROC (scikit-learn) on
``test_batches`` x 32 test images (about half with a defect), pooled; the same on 64 validation images every
``eval_every`` steps (the curves); per-defect image AUROC.

Rule, written before the run (points = 100 x AUROC): with ``img_gain`` and ``pix_gain`` FOD's AUROC minus the
reconstruction baseline's,

* inconclusive if no arm finds the defects' pixels (best pixel AUROC below :data:`FOUND`: the features carry no
  defect signal, and comparing scorers of noise measures nothing);
* holds if ``img_gain > BAND`` and ``pix_gain > BAND``;
* does not hold if neither gain exceeds ``BAND`` and at least one is below ``-BAND``;
* inconclusive otherwise.

Further deviations: one feature level (the paper: two), widths 64 (256/512), LR 1e-3 for a few hundred steps
(the paper: 1e-4 for many epochs), the map blurred with sigma 4 px x 48 / 256 (the paper's 4 px at 256 px), one
seed.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from attnlab.repro.harness.plots import pyplot
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE
from attnlab.repro.harness.runner import ReproOutcome

PAPER = "P16"
CLAIM = ("FOD's intra- and inter-correlation learning (Gaussian target correlations, an entropy-constrained "
         "symmetric-KL objective in two passes, and the inter-correlation discrepancy in the score) detects and "
         "localises anomalies better than patch-wise reconstruction of the same features alone.")

IMG_SIZE, STRIDE = 48, 4
QUICK = dict(extractor_steps=4, steps=3, eval_every=3, batch_size=8, channels=16, test_batches=1, val_batches=1,
             reference_batches=1, lr=1e-3)
FULL = dict(extractor_steps=400, steps=300, eval_every=50, batch_size=16, channels=32, test_batches=8, val_batches=2,
            reference_batches=8, lr=1e-3)
ARMS = {"FOD": "fod", "reconstruction": "reconstruction", "I2Correlation, rec only": "i2c_rec"}
BLUR = 4.0 * IMG_SIZE / 256

#: thresholds of the rule (AUROC points)
BAND, FOUND = 1.0, 60.0

IMG_GAIN = "image AUROC FOD - reconstruction (points)"
PIX_GAIN = "pixel AUROC FOD - reconstruction (points)"
BEST_PIX = "best pixel AUROC (points)"
FIGURES = (IMG_GAIN, PIX_GAIN, BEST_PIX)


def judge(figures: dict) -> str:
    """The rule of the module docstring, on the figures named in ``FIGURES``."""
    if not figures[BEST_PIX] >= FOUND:
        return INCONCLUSIVE
    img, pix = figures[IMG_GAIN], figures[PIX_GAIN]
    if img > BAND and pix > BAND:
        return HOLDS
    if img <= BAND and pix <= BAND and min(img, pix) < -BAND:
        return DOES_NOT_HOLD
    return INCONCLUSIVE


def train_extractor(task, steps: int, batch_size: int, channels: int, seed: int):
    """The frozen feature extractor: an autoencoder trained on the train split (normal images only); its MSE curve."""
    from attnlab.models.fod import FeatureExtractor

    torch.manual_seed(seed)
    ext = FeatureExtractor(channels=channels)
    opt = torch.optim.Adam(ext.parameters(), lr=2e-3)
    losses = []
    for i in range(steps):
        x = task.batch("train", 10_000 + i, 2 * batch_size).inputs
        loss = F.mse_loss(ext(x), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return ext.eval(), losses


def evaluate_arm(model, ext, task, split: str, batches: int, first: int = 0) -> dict:
    """Image and pixel AUROC (x 100) over ``batches`` x 32 images of ``split`` pooled, and image AUROC per defect."""
    from attnlab.models.fod import anomaly_maps, fod_patch_scores
    from attnlab.tasks.anomaly import DEFECTS, auroc

    grid = (IMG_SIZE // STRIDE,) * 2
    maps, labels, masks, kinds = [], [], [], []
    for i in range(batches):
        batch = task.batch(split, first + i, 32)
        maps.append(anomaly_maps(fod_patch_scores(model, ext.encode(batch.inputs)), grid, IMG_SIZE, BLUR).numpy())
        labels.append(batch.targets.numpy())
        masks.append(batch.extras["mask"].numpy())
        kinds.append(batch.extras["defect"].numpy())
    maps, labels, masks, kinds = (np.concatenate(a) for a in (maps, labels, masks, kinds))
    img_scores = maps.reshape(len(maps), -1).max(1)
    out = {"image_auroc": 100 * auroc(labels, img_scores), "pixel_auroc": 100 * auroc(masks, maps)}
    for k, name in enumerate(DEFECTS):
        keep = (kinds == -1) | (kinds == k)
        out[f"image_auroc {name}"] = 100 * auroc(labels[keep], img_scores[keep])
    return out


def train_arm(mode: str, ext, task, b: dict, seed: int):
    """Train one arm; its model, loss rows and validation curve [(step, image AUROC, pixel AUROC)]."""
    from attnlab.models.fod import FOD, fod_train_step

    reference = torch.cat([ext.encode(task.batch("train", 20_000 + i, 32).inputs) for i in range(b["reference_batches"])])
    torch.manual_seed(seed)
    model = FOD(in_dim=ext.channels, grid=(IMG_SIZE // STRIDE,) * 2, dim=64, num_heads=4, depth=3, mode=mode)
    model.set_reference(reference)
    opt = torch.optim.Adam(model.parameters(), lr=b["lr"])
    rows, curve = [], []
    for step in range(1, b["steps"] + 1):
        feats = ext.encode(task.batch("train", step - 1, b["batch_size"]).inputs)
        rows.append({"step": step, **fod_train_step(model, feats, opt)})
        if step % b["eval_every"] == 0 or step == b["steps"]:
            ev = evaluate_arm(model, ext, task, "val", b["val_batches"])
            curve.append((step, ev["image_auroc"], ev["pixel_auroc"]))
    return model, rows, curve


def _plot(ctx, curves: dict, ext_losses: list) -> None:
    fig, axes = pyplot().subplots(1, 3, figsize=(12, 3.3))
    for k, ylabel in ((1, "val image AUROC (%)"), (2, "val pixel AUROC (%)")):
        for name, pts in curves.items():
            axes[k - 1].plot([p[0] for p in pts], [p[k] for p in pts], marker="o", ms=3, label=name)
        axes[k - 1].set_xlabel("training step")
        axes[k - 1].set_ylabel(ylabel)
        axes[k - 1].grid(alpha=0.3)
        axes[k - 1].legend(fontsize=7)
    axes[2].plot(ext_losses)
    axes[2].set_yscale("log")
    axes[2].set_xlabel("extractor step")
    axes[2].set_ylabel("autoencoder MSE (normal images)")
    fig.suptitle("P16: FOD vs reconstruction on generated textures (features: an autoencoder on normals)", fontsize=9)
    ctx.save_plot(fig, "fod_curves.png")


def run(ctx):
    """Train the extractor, then the three arms; record the pooled test AUROCs, the curves and the gains."""
    import time

    from attnlab.tasks import create as create_task

    b = ctx.budget
    task = create_task("anomaly", img_size=IMG_SIZE, seed=ctx.seed)
    t0 = time.process_time()
    ext, ext_losses = train_extractor(task, b["extractor_steps"], b["batch_size"], b["channels"], ctx.seed)
    ext_cpu = time.process_time() - t0
    final, curves, rows, cpu = {}, {}, {}, {}
    for name, mode in ARMS.items():
        t0 = time.process_time()
        model, rows[name], curves[name] = train_arm(mode, ext, task, b, ctx.seed)
        cpu[name] = round(time.process_time() - t0, 1)
        final[name] = evaluate_arm(model, ext, task, "test", b["test_batches"])
    fod, rec = final["FOD"], final["reconstruction"]
    measured = {
        IMG_GAIN: fod["image_auroc"] - rec["image_auroc"], PIX_GAIN: fod["pixel_auroc"] - rec["pixel_auroc"],
        BEST_PIX: max(f["pixel_auroc"] for f in final.values()),
        "test AUROC (points)": {k: {m: round(v, 2) for m, v in f.items()} for k, f in final.items()},
        "validation curves (step, image AUROC, pixel AUROC)": curves,
        "last loss parts": {k: v[-1] for k, v in rows.items()},
        "extractor MSE first / last": [ext_losses[0], ext_losses[-1]], "extractor CPU seconds": round(ext_cpu, 1),
        "arm CPU seconds": cpu, "test images": 32 * b["test_batches"], "steps": b["steps"],
    }
    _plot(ctx, curves, ext_losses)
    ablation = final["I2Correlation, rec only"]
    summary = (
        f"Test ({32 * b['test_batches']} images): FOD image / pixel AUROC {fod['image_auroc']:.1f} / "
        f"{fod['pixel_auroc']:.1f}, reconstruction baseline {rec['image_auroc']:.1f} / {rec['pixel_auroc']:.1f} "
        f"(gains {measured[IMG_GAIN]:+.1f} / {measured[PIX_GAIN]:+.1f} points); I2Correlation layers with the "
        f"reconstruction loss only {ablation['image_auroc']:.1f} / {ablation['pixel_auroc']:.1f}. {b['steps']} steps "
        f"x {b['batch_size']} normal images per arm on the features of an autoencoder trained on normal images "
        f"({b['extractor_steps']} steps; no pretrained backbone here). Rule: holds if both gains > {BAND:g}; does not "
        f"hold if neither exceeds {BAND:g} and one is below -{BAND:g}; inconclusive if no arm reaches pixel AUROC "
        f"{FOUND:g} or otherwise."
    )
    return ReproOutcome(measured, summary)
