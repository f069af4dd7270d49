"""P26 DiNAT at CPU scale: dilated NA interleaved with NA beats NA alone at the same cost.

Setting. ``attnlab.models.ViT`` backbones (patch 4 on 64 px images: a 16 x 16 token grid,
depth 4, width 32, 4 heads) with a per-patch linear head (a dense-prediction model; the
paper's DiNAT gains are largest on dense tasks), trained on the generated ``far_cue``
task: every patch must be labelled with the colour class (4 classes) of one cue square
placed anywhere in the image among grey distractors. A patch can be labelled only if its
token's receptive field reaches the cue, so accuracy measures how much context the
layers carry.

Arms, identical except for the dilation of the neighbourhood-attention layers (equal
parameters and equal attention cost: 3 x 3 = 9 keys per query in every layer):

* ``NA``: kernel 3, dilation 1 in all four layers: receptive field 4 tokens each way;
* ``DiNA+NA``: kernel 3, dilations (1, 4, 1, 4): NA and DiNA interleaved as in DiNAT,
  receptive field 10 tokens each way.

Measured: validation accuracy over patches (mean over seeds), training step time
(forward + backward, batch 32, arms interleaved, one thread) and attention
multiply-accumulates per image and layer (counted: equal by construction).

Verdict rule: with ``gain`` = accuracy(DiNA+NA) - accuracy(NA) in points, ``noise`` the
larger seed std (points) and ``cost`` = step time of DiNA+NA over NA:
holds if gain >= 5 points, gain > noise and cost <= 1.15 (same cost within timing noise);
does not hold if gain <= 0 or cost > 1.5; inconclusive otherwise.
"""
from __future__ import annotations

import functools
import statistics
import time

import torch
from torch import nn

from attnlab.utils.threads import torch_threads
from attnlab.utils.timing import interleaved_median_seconds
from attnlab.repro.base import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, ReproContext, ReproOutcome

PAPER = "P26"
CLAIM = ("Dilated neighborhood attention (DiNA), interleaved with neighborhood attention (NA), captures more "
         "global context and expands the receptive field exponentially at no additional cost, so NA+DiNA "
         "(DiNAT) beats NA alone (NAT) at the same cost.")

KERNEL = 3
DILATIONS = {"NA": (1, 1, 1, 1), "DiNA+NA": (1, 4, 1, 4)}
TASK = {"img_size": 64, "patch": 4, "cue": 6, "num_classes": 4, "num_distractors": 6}
DIM, HEADS = 32, 4
QUICK = {"steps": 6, "batch_size": 8, "seeds": (0,), "eval_batches": 1, "timing_repeats": 1}
FULL = {"steps": 200, "batch_size": 32, "seeds": (0, 1), "eval_batches": 8, "timing_repeats": 5}

#: thresholds of the verdict rule (points / ratios)
MIN_GAIN, SAME_COST, TOO_COSTLY = 5.0, 1.15, 1.5


def judge(gain: float, noise: float, cost: float) -> str:
    """The module's verdict rule (see the module docstring)."""
    if gain <= 0.0 or cost > TOO_COSTLY:
        return DOES_NOT_HOLD
    if gain >= MIN_GAIN and gain > noise and cost <= SAME_COST:
        return HOLDS
    return INCONCLUSIVE


class PatchLabeler(nn.Module):
    """A ViT whose linear head is applied to every token: images -> (B, N, num_classes) per-patch logits."""

    def __init__(self, dilations: tuple[int, ...], num_classes: int):
        super().__init__()
        from attnlab.models import ViT

        layers = [("neighborhood", {"kernel_size": KERNEL, "dilation": d}) for d in dilations]
        self.vit = ViT(img_size=TASK["img_size"], patch_size=TASK["patch"], in_chans=3, num_classes=num_classes,
                       dim=DIM, depth=len(dilations), num_heads=HEADS, mixer=layers)

    def no_weight_decay(self) -> set[str]:
        """The backbone's position embedding (read by attnlab.train)."""
        return {f"vit.{n}" for n in self.vit.no_weight_decay()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, N, num_classes)."""
        return self.vit.head(self.vit.forward_features(x))


def _step_times(models: dict[str, nn.Module], task, batch_size: int, repeats: int) -> dict[str, float]:
    """Median seconds of a training step (forward + backward) per model, interleaved repeat by repeat."""
    batch = task.batch("train", 0, batch_size)

    def step(model):
        model.zero_grad(set_to_none=True)
        task.loss(model(batch.inputs), batch)[0].backward()

    return interleaved_median_seconds({k: functools.partial(step, m) for k, m in models.items()}, repeats)


def _plot(accs: dict[str, list[float]], path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    names = list(accs)
    ax.bar(range(len(names)), [100 * statistics.fmean(accs[n]) for n in names], color=["tab:gray", "tab:blue"],
           yerr=[100 * (statistics.pstdev(accs[n]) if len(accs[n]) > 1 else 0.0) for n in names])
    ax.axhline(100 / TASK["num_classes"], color="k", ls=":", lw=1, label="chance")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names)
    ax.set_ylabel("patches labelled right (%)")
    ax.set_title("far_cue: NA vs NA+DiNA, same cost", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def run(ctx: ReproContext) -> ReproOutcome:
    """Train the NA and DiNA+NA patch labellers on far_cue; judge the accuracy gain at equal cost."""
    from attnlab.tasks import create
    from attnlab.train import TrainConfig, evaluate, train

    t0, c0 = time.perf_counter(), time.process_time()
    cfg = QUICK if ctx.quick else FULL
    accs: dict[str, list[float]] = {name: [] for name in DILATIONS}
    rows, last = [], {}
    with torch_threads(1):  # small steps: a second intra-op thread is slower on the shared 2-core box
        for seed in cfg["seeds"]:
            task = create("far_cue", seed=seed + ctx.seed, **TASK)
            for name, dil in DILATIONS.items():
                torch.manual_seed(seed + ctx.seed)
                model = PatchLabeler(dil, TASK["num_classes"])
                tc = TrainConfig(steps=cfg["steps"], batch_size=cfg["batch_size"], lr=2e-3,
                                 warmup_steps=min(25, max(1, cfg["steps"] // 5)), weight_decay=0.05, eval_every=0,
                                 eval_batches=cfg["eval_batches"], log_every=max(1, cfg["steps"] // 5), seed=seed)
                res = train(model, task, tc, progress=ctx.progress)
                acc = float(evaluate(model, task, batches=cfg["eval_batches"], batch_size=64, split="val")["accuracy"])
                accs[name].append(acc)
                rows.append({"arm": name, "seed": seed, "accuracy": acc, "train_seconds": float(res.train_seconds)})
                last[name] = model
        step = _step_times(last, task, 32 if not ctx.quick else 8, cfg["timing_repeats"])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    mean = {k: statistics.fmean(v) for k, v in accs.items()}
    std = {k: statistics.pstdev(v) if len(v) > 1 else 0.0 for k, v in accs.items()}
    gain = 100 * (mean["DiNA+NA"] - mean["NA"])
    noise = 100 * max(std.values())
    cost = step["DiNA+NA"] / step["NA"]
    params = sum(p.numel() for p in last["NA"].parameters())
    n = (TASK["img_size"] // TASK["patch"]) ** 2
    measured = {
        "NA accuracy": mean["NA"], "DiNA+NA accuracy": mean["DiNA+NA"],
        "NA accuracy std": std["NA"], "DiNA+NA accuracy std": std["DiNA+NA"],
        "accuracy gain DiNA+NA - NA (points)": gain, "seed noise (points)": noise,
        "NA step seconds": step["NA"], "DiNA+NA step seconds": step["DiNA+NA"], "step time DiNA+NA / NA": cost,
        "parameters (each arm)": params,
        "attention MACs per image and layer (each arm)": 2 * n * KERNEL**2 * DIM,
        "per-seed": rows, "wall seconds": round(wall, 1), "cpu seconds": round(cpu, 1),
    }
    verdict = judge(gain, noise, cost)
    summary = (
        f"Per-patch labelling of a far cue on a 16x16 token grid (chance {100 / TASK['num_classes']:.0f}%), ViT "
        f"depth 4 with 3x3 neighbourhood attention: NA only {100 * mean['NA']:.1f}% vs NA and DiNA interleaved "
        f"(dilations {DILATIONS['DiNA+NA']}) {100 * mean['DiNA+NA']:.1f}% (gain {gain:+.1f} points, seed noise "
        f"{noise:.1f}, {len(cfg['seeds'])} seed(s), {cfg['steps']} steps), at {cost:.2f}x the step time, identical "
        f"parameters ({params}) and attention MACs. Rule: holds if gain >= {MIN_GAIN:g} points, above noise, and step "
        f"time <= {SAME_COST}x; does not hold if gain <= 0 or step time > {TOO_COSTLY}x; else inconclusive. "
        f"Deviation: the paper's models are hierarchical (4 stages, k=7, ImageNet/COCO/ADE20K); here one stage, k=3, "
        f"a generated task. Wall {wall:.0f} s, CPU {cpu:.0f} s."
    )
    plots = [p for p in [_plot(accs, ctx.path("dinat.png"))] if p]
    return ReproOutcome(measured, verdict, summary, plots)
