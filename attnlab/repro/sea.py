"""Reproduction ``sea`` (P20: Lee et al., ICLR 2024): SEA follows a teacher's attention, linear attention does not.

Setting (CPU scale; the paper converts OPT-125m..1.3B on WikiText-2): character-level language
modelling (task ``char_lm``, the standard library's sources, N = 256). A 2-layer softmax
``SequenceModel`` (d = 64, 4 heads) is trained first: the **teacher**. Its weights are then
loaded into the same network with the attention replaced by

* ``sea`` — SEA: Performer estimate compressed to t_m = 32 columns, top-k bins per query
  (k = 32 keys of 256), exact softmax over them (:mod:`attnlab.mixers.sea`);
* ``sea`` + distillation — the same, fine-tuned with the paper's extra loss
  0.1 * KL(teacher attention || SEA's estimated attention) per layer (maps recorded with
  ``attnlab.record_attention``);
* ``linear_attention`` — plain kernel linear attention (elu + 1, normalised), the baseline.

Every student is fine-tuned for the same number of steps (task loss, AdamW). Measured on
fixed validation batches: bits per character (before and after fine-tuning) and, per
layer, how close each student's attention is to the teacher's on the same input
(:mod:`attnlab.analysis.attention_similarity`): KL(teacher || SEA's estimated attention,
spread back over the keys) and KL(teacher || linear attention's map) -- also at the estimate's
own resolution (``kl_binned``: both maps summed over SEA's t_m bins) --, top-k overlap (k = 8)
of SEA's sparse attention and of linear attention's map with the teacher's top keys, and
the teacher mass inside SEA's selected keys. Plot ``sea_similarity.png``.

Verdict rule, applied to SEA as the paper trains it (fine-tuned with the teacher's attention
as a distillation target, arm ``sea+distill``): (A) SEA's estimate has lower KL to the teacher
than linear attention's map AND SEA's sparse attention has higher top-k overlap; (B) after
fine-tuning SEA's bpc gap to the teacher (student minus teacher, signed) is smaller than linear
attention's. A and B -> holds; neither -> does not hold at this scale; one -> inconclusive. The
same rule on the arm without distillation is reported beside it (``judged_without_distillation``).
(The first version of this module judged the undistilled arm; it was changed after the first
full run, because the paper never trains SEA without its teacher's attention: see
docs/notes/sparse.md, which gives both.)

Measured (full run, seed 0): teacher 2.374 bpc; SEA+distillation 2.411, SEA 2.735, linear
attention 2.809; KL(teacher || estimate) 0.501 (distilled) / 1.692 (not) vs linear 0.778;
top-8 overlap 0.810 / 0.593 vs 0.559 -> holds with distillation, inconclusive without.
"""
from __future__ import annotations

import math

import torch

from attnlab.repro.harness.arms import mixer_arm, train_arms
from attnlab.repro.harness.distill import (
    finetune, linear_attention_maps, similarity_to_teacher, student_from_teacher, token_mixers,
)
from attnlab.repro.harness.plots import plot_bar_panels
from attnlab.repro.harness.rules import two_parts
from attnlab.repro.harness.runner import ReproOutcome

PAPER = "P20"
CLAIM = (
    "SEA estimates the attention matrix with kernel-based linear attention, keeps the top-k entries per "
    "query and attends sparsely over them; its estimated attention follows a teacher's attention and its "
    "language-modelling loss stays close to the teacher's, where plain linear attention falls far behind."
)

QUICK = dict(seq_len=64, dim=32, teacher_steps=40, finetune_steps=8, batch=8, top_k=8, t_m=16, block=16,
             eval_batches=2)
FULL = dict(seq_len=256, dim=64, teacher_steps=1200, finetune_steps=200, batch=16, top_k=32, t_m=32, block=32,
            eval_batches=4)
TOPK_OVERLAP_K = 8
DISTILL_WEIGHT = 0.1
STUDENTS = ("sea", "sea+distill", "linear_attention")

KL = "KL(teacher || estimated attention): {}"  # per student
OVERLAP = f"top-{TOPK_OVERLAP_K} overlap with the teacher: {{}}"  # per student
TUNED_BPC = "fine-tuned bpc: {}"  # per student
TEACHER_BPC = "teacher bpc"
FIGURES = (*(f.format(a) for f in (KL, OVERLAP, TUNED_BPC) for a in ("sea+distill", "linear_attention")), TEACHER_BPC)


def rule_parts(figures: dict, arm: str = "sea+distill") -> tuple[bool, bool, bool]:
    """(A by KL: the estimate is closer to the teacher than linear attention's map, A by top-k overlap,
    B: the student's signed bpc gap to the teacher is smaller than linear attention's) for SEA arm ``arm``."""
    f, lin, teacher = figures, "linear_attention", figures[TEACHER_BPC]
    a_kl = f[KL.format(arm)] < f[KL.format(lin)]
    a_overlap = f[OVERLAP.format(arm)] > f[OVERLAP.format(lin)]
    # signed gaps: a student that ends below the teacher is not "further" from it
    return a_kl, a_overlap, f[TUNED_BPC.format(arm)] - teacher < f[TUNED_BPC.format(lin)] - teacher


def judge(figures: dict, arm: str = "sea+distill") -> str:
    """A (both parts) and B -> holds; neither -> does not hold; one -> inconclusive (SEA as the paper trains it)."""
    a_kl, a_overlap, b_ok = rule_parts(figures, arm)
    return two_parts(a_kl and a_overlap, b_ok)


def _sea_maps(model, b):
    """Per layer: SEA's estimated attention spread over the keys, its sparse attention, and the estimate
    summed over SEA's bins (the estimate's own resolution)."""
    from attnlab.analysis.attention_similarity import attention_maps
    from attnlab.ops.sea import expand_estimate

    def maps(inputs):
        mixers = token_mixers(model)
        for mix in mixers.values():
            mix.keep_estimate = True
        try:
            model(inputs)
            est = {name: expand_estimate(mix.last_estimate, causal=True, block=b["block"])
                   for name, mix in mixers.items()}
        finally:
            for mix in mixers.values():
                mix.keep_estimate, mix.last_estimate = False, None
        sparse = attention_maps(model, inputs)
        return {n: {"estimate": est[n], "sparse": sparse[n], "binned": _binned(est[n], b)} for n in est}

    return maps


def _linear_maps(model, b):
    """Per layer: linear attention's implicit map (its estimate and its attention at once), and binned."""
    def maps(inputs):
        return {n: {"estimate": m, "binned": _binned(m, b)} for n, m in linear_attention_maps(model, inputs).items()}

    return maps


def _binned(p, b):
    """A map (B, H, N, N) summed over SEA's bins: (B, H, N, t_m)."""
    from attnlab.ops.sea import bin_edges

    n = p.shape[-1]
    edges = bin_edges(n, b["t_m"], True, b["block"]).expand(n, b["t_m"] + 1).expand(*p.shape[:2], n, -1)
    cs = torch.cat([torch.zeros_like(p[..., :1]), p.cumsum(-1)], dim=-1)
    return cs.gather(-1, edges[..., 1:]) - cs.gather(-1, edges[..., :-1])


def _metrics(b):
    """KL to the teacher's map, top-k overlap and mass recall of the attention used, KL at SEA's bins."""
    from attnlab.analysis.attention_similarity import attention_kl, mass_recall, topk_overlap

    return {"kl": lambda t, m: float(attention_kl(t, m["estimate"])),
            "topk_overlap": lambda t, m: topk_overlap(t, m.get("sparse", m["estimate"]), TOPK_OVERLAP_K),
            "mass_recall": lambda t, m: mass_recall(t, m["sparse"]) if "sparse" in m else math.nan,
            "kl_binned": lambda t, m: float(attention_kl(_binned(t, b), m["binned"]))}


def _distillation(teacher, block):
    """The paper's extra loss: DISTILL_WEIGHT * KL(teacher attention || SEA's estimate), added per layer."""
    from attnlab.analysis.attention_similarity import attention_kl, attention_maps
    from attnlab.ops.sea import expand_estimate

    def add(model, batch, loss):
        target = attention_maps(teacher, batch.inputs)
        for name, mix in token_mixers(model).items():
            est = expand_estimate(mix.last_estimate, causal=True, block=block)
            loss = loss + DISTILL_WEIGHT * attention_kl(target[name], est)
        return loss

    return add


def run(ctx):
    """Teacher, three students, similarity and loss; see the module docstring."""
    from attnlab.tasks import create as create_task
    from attnlab.train import TrainConfig, evaluate

    b = ctx.budget
    task = create_task("char_lm", seq_len=b["seq_len"], seed=ctx.seed)
    steps, model_kw = b["teacher_steps"], dict(dim=b["dim"], depth=2, num_heads=4)
    tcfg = TrainConfig(steps=steps, batch_size=b["batch"], lr=3e-3, warmup_steps=max(1, steps // 10), eval_every=steps,
                       eval_batches=b["eval_batches"], log_every=max(1, steps // 10), seed=ctx.seed)
    teacher = train_arms(task, [mixer_arm("teacher", "softmax", **model_kw)], tcfg, seed=ctx.seed,
                         progress=ctx.progress).models["teacher"].eval()
    bpc = lambda model: float(evaluate(model, task, batches=b["eval_batches"], batch_size=b["batch"])["bpc"])  # noqa
    sea_kw = {"top_k": b["top_k"], "t_m": b["t_m"], "block": b["block"]}
    students, zero_shot, tuned = {}, {}, {}
    arms = (("sea", "sea", sea_kw), ("sea+distill", "sea", sea_kw), ("linear_attention", "linear_attention", {}))
    for label, mixer, kw in arms:
        model = students[label] = student_from_teacher(teacher, task.spec, mixer, kw, seed=ctx.seed, **model_kw).eval()
        zero_shot[label] = bpc(model)
        distill = label == "sea+distill"
        for mix in token_mixers(model).values():
            mix.keep_estimate = distill  # SEA keeps its estimate, with autograd, for the distillation loss
        finetune(model, task, steps=b["finetune_steps"], batch_size=b["batch"], seed=ctx.seed,
                 add_loss=_distillation(teacher, b["block"]) if distill else None)
        for mix in token_mixers(model).values():
            mix.keep_estimate, mix.last_estimate = False, None
        tuned[label] = bpc(model)
    sim = similarity_to_teacher(
        teacher, {k: (_sea_maps if k.startswith("sea") else _linear_maps)(m, b) for k, m in students.items()}, task,
        batches=b["eval_batches"], batch_size=b["batch"], metrics=_metrics(b))
    figures = {TEACHER_BPC: bpc(teacher), **{KL.format(a): sim[a]["kl"] for a in STUDENTS},
               **{OVERLAP.format(a): sim[a]["topk_overlap"] for a in STUDENTS},
               **{TUNED_BPC.format(a): tuned[a] for a in STUDENTS}}
    a_kl, a_overlap, b_ok = rule_parts(figures)
    plain = rule_parts(figures, arm="sea")
    measured = {
        "teacher_bpc": round(figures[TEACHER_BPC], 4),
        "bpc_zero_shot": {k: round(v, 4) for k, v in zero_shot.items()},
        "bpc_finetuned": {k: round(v, 4) for k, v in tuned.items()},
        "similarity_to_teacher": {k: {m: round(x, 4) for m, x in v.items() if not math.isnan(x)}
                                  for k, v in sim.items()},
        "A_estimate_closer_kl": a_kl, "A_sparse_topk_overlap_higher": a_overlap, "B_sea_bpc_closer_to_teacher": b_ok,
        "judged_without_distillation": {"verdict": judge(figures, arm="sea"), "A_kl": plain[0],
                                        "A_topk_overlap": plain[1], "B": plain[2]},
        "settings": b, **figures,
    }
    plot_bar_panels(ctx, {"KL(teacher || estimated map), nats": {a: sim[a]["kl"] for a in STUDENTS},
                          f"top-{TOPK_OVERLAP_K} overlap with teacher": {a: sim[a]["topk_overlap"] for a in STUDENTS},
                          "val bpc, teacher weights, no tuning": zero_shot, "val bpc, fine-tuned": tuned},
                    "sea_similarity.png", ylabel="", colors=["C0", "C2", "C1"], panel_width=3.2,
                    hline={"val bpc, teacher weights, no tuning": figures[TEACHER_BPC],
                           "val bpc, fine-tuned": figures[TEACHER_BPC]}, hline_label="teacher",
                    suptitle="P20 SEA: attention of students vs the softmax teacher")
    s, d, lin = sim["sea"], sim["sea+distill"], sim["linear_attention"]
    summary = (
        f"Teacher (softmax) {figures[TEACHER_BPC]:.3f} bpc. After {b['finetune_steps']} fine-tuning steps from the "
        f"teacher's weights: SEA {tuned['sea']:.3f}, SEA+distillation {tuned['sea+distill']:.3f}, linear attention "
        f"{tuned['linear_attention']:.3f} (zero-shot {zero_shot['sea']:.3f} / {zero_shot['linear_attention']:.3f}). "
        f"KL(teacher || estimated attention): SEA+distillation {d['kl']:.3f}, SEA {s['kl']:.3f}, linear "
        f"{lin['kl']:.3f} nats; top-{TOPK_OVERLAP_K} overlap {d['topk_overlap']:.3f} / {s['topk_overlap']:.3f} vs "
        f"{lin['topk_overlap']:.3f}; SEA keeps {d['mass_recall']:.3f} / {s['mass_recall']:.3f} of the teacher's "
        f"attention mass with {b['top_k']} of {b['seq_len']} keys. Judged on SEA+distillation (how the paper "
        f"trains SEA): (A) {a_kl and a_overlap}, (B) {b_ok}; without distillation: "
        f"{measured['judged_without_distillation']['verdict']} (A {plain[0] and plain[1]}, B {plain[2]}). Scale: "
        f"2 layers, d={b['dim']}, char-level stdlib text, not OPT on WikiText-2; SEA's estimator is the Performer "
        "estimate without the paper's learned decoder."
    )
    return ReproOutcome(measured, summary)
