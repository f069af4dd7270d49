"""Teacher and students: a trained model's weights carried into the same network with another attention,
fine-tuned with an optional extra loss, and the implicit attention maps of linear attention.

This is the shape of the conversion experiments (P20 SEA: a softmax teacher, SEA and linear-attention
students): the students keep every weight of the teacher except the token mixers' own, so what
differs after fine-tuning is what the attention can express.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

__all__ = ["token_mixers", "student_from_teacher", "finetune", "similarity_to_teacher", "linear_attention_maps"]


def token_mixers(model: nn.Module) -> dict[str, nn.Module]:
    """The model's token mixers by module name (those marked ``is_token_mixer``)."""
    return {name: mod for name, mod in model.named_modules() if getattr(mod, "is_token_mixer", False)}


def student_from_teacher(teacher: nn.Module, spec, mixer: str, mixer_kwargs: dict, *, seed: int,
                         **model_kw) -> nn.Module:
    """``build_for_task(spec, mixer=mixer, ...)`` with every teacher weight outside the token mixers loaded.

    RuntimeError if anything but mixer weights is missing or left over (the student is not the teacher's network).
    """
    from attnlab.models import build_for_task

    torch.manual_seed(seed)
    model = build_for_task(spec, mixer=mixer, mixer_kwargs=mixer_kwargs, **model_kw)
    missing, unexpected = model.load_state_dict(teacher.state_dict(), strict=False)
    if unexpected or any(".mixer." not in k for k in missing):
        raise RuntimeError(f"teacher weights do not fit the {mixer} student: missing {missing}, "
                           f"unexpected {unexpected}")
    return model


def finetune(model: nn.Module, task, *, steps: int, batch_size: int, seed: int, lr: float = 1e-3,
             first_batch: int = 10_000,
             add_loss: Callable[[nn.Module, object, torch.Tensor], torch.Tensor] | None = None) -> list[float]:
    """AdamW (no weight decay, grad-norm clip 1, linear warm-up over a tenth of the steps) on the task loss,
    on training batches from ``first_batch`` on (apart from those the model was trained on).

    ``add_loss(model, batch, loss)``, called after the forward pass, returns the loss to minimise (the
    task loss plus extra terms, e.g. a distillation loss). Returns the loss per step; the model ends in
    eval mode."""
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / max(1, steps // 10))
        batch = task.batch("train", first_batch + step, batch_size)
        loss, _ = task.loss(model(batch.inputs), batch)
        if add_loss is not None:
            loss = add_loss(model, batch, loss)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def similarity_to_teacher(teacher: nn.Module, students: Mapping[str, Callable[[torch.Tensor], dict]], task, *,
                          batches: int, batch_size: int, metrics: Mapping[str, Callable[[torch.Tensor, dict], float]],
                          split: str = "val") -> dict[str, dict[str, float]]:
    """How close each student's attention is to the teacher's: per student and metric, the mean over the
    first ``batches`` batches of ``split`` of the mean over layers.

    ``students[label](inputs)`` gives the student's maps per layer, ``{layer: {kind: (B, H, N, M)}}``
    (e.g. an estimate and a sparse map); ``metrics[name](teacher_map, maps_of_the_layer)`` scores one layer
    (NaN where a metric does not apply). The teacher's maps are recorded with ``attnlab.record_attention``.
    """
    from attnlab.analysis.attention_similarity import attention_maps

    sums: dict[str, dict[str, float]] = {}
    for i in range(batches):
        inputs = task.batch(split, i, batch_size).inputs
        target = attention_maps(teacher, inputs)
        with torch.no_grad():
            for label, maps_of in students.items():
                maps, fig = maps_of(inputs), sums.setdefault(label, {})
                for key, metric in metrics.items():
                    per = [metric(target[n], maps[n]) for n in target]
                    fig[key] = fig.get(key, 0.0) + sum(per) / len(per)
    return {label: {k: v / batches for k, v in fig.items()} for label, fig in sums.items()}


@torch.no_grad()
def linear_attention_maps(model: nn.Module, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Causal linear attention's implicit map phi(q_i).phi(k_j) / sum_j' per token mixer: {name: (B, H, N, N)}.

    Read through forward hooks on each mixer's ``qkv`` projection (the mixers of ``attnlab``'s
    ``linear_attention``: ``feature_map``, ``num_heads`` and ``eps`` attributes).
    """
    from attnlab.ops.linear_attention import feature_map

    captured, handles = {}, []
    for name, mix in token_mixers(model).items():
        handles.append(mix.qkv.register_forward_hook(lambda _m, _a, out, _n=name: captured.__setitem__(_n, out)))
    try:
        model(inputs)
    finally:
        for h in handles:
            h.remove()
    maps = {}
    for name, mix in token_mixers(model).items():
        b, n, _ = captured[name].shape
        q, k, _ = captured[name].view(b, n, 3, mix.num_heads, -1).permute(2, 0, 3, 1, 4)
        scores = feature_map(q, mix.feature_map) @ feature_map(k, mix.feature_map).transpose(-1, -2)
        scores = scores * torch.ones(n, n, dtype=torch.bool).tril()
        maps[name] = scores / (scores.sum(-1, keepdim=True) + mix.eps)
    return maps
