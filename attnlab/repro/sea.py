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
import time

import torch

from attnlab.utils.threads import torch_threads
from attnlab.repro.base import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, ReproContext, ReproOutcome

PAPER = "P20"
CLAIM = (
    "SEA estimates the attention matrix with kernel-based linear attention, keeps the top-k entries per "
    "query and attends sparsely over them; its estimated attention follows a teacher's attention and its "
    "language-modelling loss stays close to the teacher's, where plain linear attention falls far behind."
)

TOPK_OVERLAP_K = 8
DISTILL_WEIGHT = 0.1


def judge(sim: dict, tuned: dict, teacher_bpc: float, arm: str = "sea+distill") -> tuple[str, bool, bool, bool]:
    """The verdict rule for SEA arm ``arm``: (verdict, A by KL, A by top-k overlap, B) from the figures and final bpc."""
    s, lin = sim[arm], sim["linear_attention"]
    a_kl = s["kl"] < lin["kl"]
    a_overlap = s["topk_overlap"] > lin["topk_overlap"]
    # signed gaps: a student that ends below the teacher is not "further" from it
    b_ok = tuned[arm] - teacher_bpc < tuned["linear_attention"] - teacher_bpc
    a_ok = a_kl and a_overlap
    verdict = HOLDS if a_ok and b_ok else DOES_NOT_HOLD if not (a_ok or b_ok) else INCONCLUSIVE
    return verdict, a_kl, a_overlap, b_ok


def _settings(quick: bool) -> dict:
    if quick:
        return dict(seq_len=64, dim=32, teacher_steps=40, finetune_steps=8, batch=8, top_k=8, t_m=16, block=16,
                    eval_batches=2)
    return dict(seq_len=256, dim=64, teacher_steps=1200, finetune_steps=200, batch=16, top_k=32, t_m=32, block=32,
                eval_batches=4)


def run(ctx: ReproContext) -> ReproOutcome:
    """Teacher, three students, similarity and loss; see the module docstring."""
    with torch_threads(1):  # small steps: a second intra-op thread is slower on the shared 2-core box
        return _run(ctx)


def _student(teacher, spec, mixer, mixer_kwargs, cfg, seed):
    from attnlab.models import build_for_task

    torch.manual_seed(seed)
    model = build_for_task(spec, mixer=mixer, mixer_kwargs=mixer_kwargs, dim=cfg["dim"], depth=2, num_heads=4)
    missing, unexpected = model.load_state_dict(teacher.state_dict(), strict=False)
    if unexpected or any(".mixer." not in k for k in missing):
        raise RuntimeError(f"teacher weights do not fit the {mixer} student: missing {missing}, unexpected {unexpected}")
    return model


def _mixers(model):
    return {name: mod for name, mod in model.named_modules() if getattr(mod, "is_token_mixer", False)}


def _sea_estimates(model, inputs, block):
    """SEA's estimated attention per layer, spread over the keys: {label: (B, H, N, N)}."""
    from attnlab.ops.sea import expand_estimate

    out = {}
    for name, mix in _mixers(model).items():
        mix.keep_estimate = True
    try:
        model(inputs)
        for name, mix in _mixers(model).items():
            out[name] = expand_estimate(mix.last_estimate, causal=True, block=block)
    finally:
        for mix in _mixers(model).values():
            mix.keep_estimate = False
            mix.last_estimate = None
    return out


@torch.no_grad()
def _linear_maps(model, inputs):
    """Linear attention's implicit map phi(q_i).phi(k_j) / sum_j' (causal), per layer, through hooks on qkv."""
    from attnlab.ops.linear_attention import feature_map

    captured, handles = {}, []
    for name, mix in _mixers(model).items():
        handles.append(mix.qkv.register_forward_hook(lambda _m, _a, out, _n=name: captured.__setitem__(_n, out)))
    try:
        model(inputs)
    finally:
        for h in handles:
            h.remove()
    maps = {}
    for name, mix in _mixers(model).items():
        b, n, three_c = captured[name].shape
        q, k, _ = captured[name].view(b, n, 3, mix.num_heads, -1).permute(2, 0, 3, 1, 4)
        scores = feature_map(q, mix.feature_map) @ feature_map(k, mix.feature_map).transpose(-1, -2)
        scores = scores * torch.ones(n, n, dtype=torch.bool).tril()
        maps[name] = scores / (scores.sum(-1, keepdim=True) + mix.eps)
    return maps


def _finetune(model, teacher, task, cfg, steps, distill, seed):
    """AdamW fine-tuning on the task loss (+ DISTILL_WEIGHT * KL(teacher || SEA estimate) per layer)."""
    from attnlab.analysis.attention_similarity import attention_kl, attention_maps
    from attnlab.ops.sea import expand_estimate

    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    model.train()
    mixers = _mixers(model)
    losses = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = 1e-3 * min(1.0, (step + 1) / max(1, steps // 10))
        batch = task.batch("train", 10_000 + step, cfg["batch"])
        for mix in mixers.values():
            mix.keep_estimate = distill
        loss, _ = task.loss(model(batch.inputs), batch)
        if distill:
            target = attention_maps(teacher, batch.inputs)
            for name, mix in mixers.items():
                est = expand_estimate(mix.last_estimate, causal=True, block=cfg["block"])
                loss = loss + DISTILL_WEIGHT * attention_kl(target[name], est)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    for mix in mixers.values():
        mix.keep_estimate = False
        mix.last_estimate = None
    model.eval()
    return losses


def _binned(maps, cfg):
    """Maps (B, H, N, N) summed over SEA's bins: (B, H, N, t_m), the estimate's own resolution."""
    from attnlab.ops.sea import bin_edges

    out = {}
    for name, p in maps.items():
        n = p.shape[-1]
        edges = bin_edges(n, cfg["t_m"], True, cfg["block"]).expand(n, cfg["t_m"] + 1).expand(*p.shape[:2], n, -1)
        cs = torch.cat([torch.zeros_like(p[..., :1]), p.cumsum(-1)], dim=-1)
        out[name] = cs.gather(-1, edges[..., 1:]) - cs.gather(-1, edges[..., :-1])
    return out


def _similarity(teacher, students, task, cfg):
    """Mean over layers and eval batches of the similarity figures of each student."""
    from attnlab.analysis.attention_similarity import attention_kl, attention_maps, mass_recall, topk_overlap

    sums: dict[str, dict[str, float]] = {}
    for i in range(cfg["eval_batches"]):
        inputs = task.batch("val", i, cfg["batch"]).inputs
        target = attention_maps(teacher, inputs)
        with torch.no_grad():
            target_bins = _binned(target, cfg)  # the teacher's maps are the same for every student
            for label, model in students.items():
                fig = sums.setdefault(label, {})
                if label.startswith("sea"):
                    est = _sea_estimates(model, inputs, cfg["block"])
                    est_bins = _binned(est, cfg)
                    sparse = attention_maps(model, inputs)
                    per = [(float(attention_kl(target[n], est[n])), topk_overlap(target[n], sparse[n], TOPK_OVERLAP_K),
                            mass_recall(target[n], sparse[n]), float(attention_kl(target_bins[n], est_bins[n])))
                           for n in target]
                else:
                    lin = _linear_maps(model, inputs)
                    lin_bins = _binned(lin, cfg)
                    per = [(float(attention_kl(target[n], lin[n])), topk_overlap(target[n], lin[n], TOPK_OVERLAP_K),
                            math.nan, float(attention_kl(target_bins[n], lin_bins[n]))) for n in target]
                for key, j in (("kl", 0), ("topk_overlap", 1), ("mass_recall", 2), ("kl_binned", 3)):
                    fig[key] = fig.get(key, 0.0) + sum(p[j] for p in per) / len(per)
    return {label: {k: v / cfg["eval_batches"] for k, v in fig.items()} for label, fig in sums.items()}


def _run(ctx: ReproContext) -> ReproOutcome:
    from attnlab.models import build_for_task
    from attnlab.tasks import create as create_task
    from attnlab.train import TrainConfig, evaluate, train

    cfg = _settings(ctx.quick)
    t_start, c_start = time.perf_counter(), time.process_time()
    task = create_task("char_lm", seq_len=cfg["seq_len"], seed=ctx.seed)
    torch.manual_seed(ctx.seed)
    teacher = build_for_task(task.spec, mixer="softmax", dim=cfg["dim"], depth=2, num_heads=4)
    steps = cfg["teacher_steps"]
    tcfg = TrainConfig(steps=steps, batch_size=cfg["batch"], lr=3e-3, warmup_steps=max(1, steps // 10),
                       eval_every=steps, eval_batches=cfg["eval_batches"], log_every=max(1, steps // 10), seed=ctx.seed)
    train(teacher, task, tcfg, progress=ctx.progress)
    teacher.eval()

    def bpc(model):
        return float(evaluate(model, task, batches=cfg["eval_batches"], batch_size=cfg["batch"])["bpc"])

    sea_kw = {"top_k": cfg["top_k"], "t_m": cfg["t_m"], "block": cfg["block"]}
    arms = {"sea": ("sea", sea_kw, False), "sea+distill": ("sea", sea_kw, True), "linear_attention": ("linear_attention", {}, False)}
    students, zero_shot, tuned, curves = {}, {}, {}, {}
    for label, (mixer, kw, distill) in arms.items():
        model = _student(teacher, task.spec, mixer, kw, cfg, ctx.seed).eval()
        zero_shot[label] = bpc(model)
        curves[label] = _finetune(model, teacher, task, cfg, cfg["finetune_steps"], distill, ctx.seed)
        tuned[label] = bpc(model)
        students[label] = model
    teacher_bpc = bpc(teacher)
    sim = _similarity(teacher, students, task, cfg)

    verdict, a_kl, a_overlap, b_ok = judge(sim, tuned, teacher_bpc)
    a_ok = a_kl and a_overlap
    plain = judge(sim, tuned, teacher_bpc, arm="sea")
    s, d, lin = sim["sea"], sim["sea+distill"], sim["linear_attention"]

    plots = _plot(ctx, sim, teacher_bpc, zero_shot, tuned)
    measured = {
        "teacher_bpc": round(teacher_bpc, 4),
        "bpc_zero_shot": {k: round(v, 4) for k, v in zero_shot.items()},
        "bpc_finetuned": {k: round(v, 4) for k, v in tuned.items()},
        "similarity_to_teacher": {k: {m: round(x, 4) for m, x in v.items() if not math.isnan(x)} for k, v in sim.items()},
        "A_estimate_closer_kl": a_kl,
        "A_sparse_topk_overlap_higher": a_overlap,
        "B_sea_bpc_closer_to_teacher": b_ok,
        "judged_without_distillation": {"verdict": plain[0], "A_kl": plain[1], "A_topk_overlap": plain[2], "B": plain[3]},
        "settings": cfg,
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "cpu_seconds": round(time.process_time() - c_start, 1),
    }
    summary = (
        f"Teacher (softmax) {teacher_bpc:.3f} bpc. After {cfg['finetune_steps']} fine-tuning steps from the teacher's "
        f"weights: SEA {tuned['sea']:.3f}, SEA+distillation {tuned['sea+distill']:.3f}, linear attention "
        f"{tuned['linear_attention']:.3f} (zero-shot {zero_shot['sea']:.3f} / {zero_shot['linear_attention']:.3f}). "
        f"KL(teacher || estimated attention): SEA+distillation {d['kl']:.3f}, SEA {s['kl']:.3f}, linear "
        f"{lin['kl']:.3f} nats; top-{TOPK_OVERLAP_K} overlap {d['topk_overlap']:.3f} / {s['topk_overlap']:.3f} vs "
        f"{lin['topk_overlap']:.3f}; SEA keeps {d['mass_recall']:.3f} / {s['mass_recall']:.3f} of the teacher's "
        f"attention mass with {cfg['top_k']} of {cfg['seq_len']} keys. Judged on SEA+distillation (how the paper "
        f"trains SEA): (A) {a_ok}, (B) {b_ok}; without distillation: {plain[0]} (A {plain[1] and plain[2]}, B "
        f"{plain[3]}). Scale: 2 layers, d={cfg['dim']}, char-level stdlib text, not OPT on WikiText-2; SEA's "
        "estimator is the Performer estimate without the paper's learned decoder."
    )
    return ReproOutcome(measured=measured, verdict=verdict, summary=summary, plots=plots)


def _plot(ctx, sim, teacher_bpc, zero_shot, tuned):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    labels = list(sim)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    axes[0].bar(labels, [sim[k]["kl"] for k in labels], color=["C0", "C2", "C1"])
    axes[0].set_title("KL(teacher || estimated map), nats")
    axes[1].bar(labels, [sim[k]["topk_overlap"] for k in labels], color=["C0", "C2", "C1"])
    axes[1].set_title(f"top-{TOPK_OVERLAP_K} overlap with teacher")
    x = range(len(labels))
    axes[2].bar([i - 0.2 for i in x], [zero_shot[k] for k in labels], width=0.4, label="teacher weights, no tuning")
    axes[2].bar([i + 0.2 for i in x], [tuned[k] for k in labels], width=0.4, label="fine-tuned")
    axes[2].axhline(teacher_bpc, color="k", ls="--", label="teacher")
    axes[2].set_xticks(list(x), labels)
    axes[2].set_title("validation bits per char")
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle("P20 SEA: attention of students vs the softmax teacher")
    fig.tight_layout()
    path = ctx.path("sea_similarity.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [str(path)]
