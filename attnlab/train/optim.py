"""AdamW with the P02 weight-decay modes, and the rule for which parameters decay.

Weight-decay modes (``TrainConfig.wd_mode``), with ``lambda = weight_decay``,
``lr_t`` the scheduled LR of step t and ``lr`` its peak:

- ``"coupled"``: torch's AdamW as is; each step multiplies decayed parameters by
  ``1 - lr_t * lambda``. The effective decay grows with the peak LR, so an LR
  sweep also sweeps the decay.
- ``"independent"`` (P02, Wortsman et al. 2023, following Loshchilov & Hutter):
  each step multiplies them by ``1 - (lr_t / lr) * lambda``: the decay follows
  the schedule's *shape* (warm-up, cosine) but not the peak LR, so an LR sweep
  keeps the decay fixed. Implemented by giving torch ``weight_decay = lambda / lr``
  (torch multiplies it by ``lr_t``). P02 uses lambda = 1e-4 in this mode.

Which parameters decay: a parameter decays iff it has at least 2 dimensions, is
not the weight of an ``nn.Embedding``, and is not named in the model's
``no_weight_decay()`` set (timm's convention, e.g. ``{"pos_embed", "cls_token"}``).
So biases, norm gains/shifts, per-channel scales/gates and embedding tables do
not decay; weight matrices of linear / conv layers do.
"""
from __future__ import annotations

import torch
from torch import nn

from attnlab.train.config import TrainConfig

__all__ = ["decay_split", "build_optimizer", "set_lr"]


def _no_decay_names(model: nn.Module) -> set[str]:
    fn = getattr(model, "no_weight_decay", None)
    names = set(fn()) if callable(fn) else set()
    for mod_name, mod in model.named_modules():
        if isinstance(mod, nn.Embedding):
            names.add(f"{mod_name}.weight" if mod_name else "weight")
    return names


def decay_split(model: nn.Module) -> tuple[list[tuple[str, nn.Parameter]], list[tuple[str, nn.Parameter]]]:
    """Split trainable parameters into (decayed, not decayed) by the rule in the module doc.

    Returns two lists of ``(qualified name, parameter)``; a parameter shared by
    several modules appears once.
    """
    skip = _no_decay_names(model)
    decay, no_decay, seen = [], [], set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        if p.ndim < 2 or name in skip or name.split(".")[-1] in skip:
            no_decay.append((name, p))
        else:
            decay.append((name, p))
    return decay, no_decay


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """torch.optim.AdamW over ``model``'s trainable parameters, two groups (decay / no decay).

    The torch ``weight_decay`` of the decayed group is ``config.weight_decay`` in
    ``"coupled"`` mode and ``config.weight_decay / config.lr`` in ``"independent"`` mode.
    """
    decay, no_decay = decay_split(model)
    if not decay and not no_decay:
        raise ValueError("model: expected a module with trainable parameters, received one with none")
    wd = config.weight_decay if config.wd_mode == "coupled" else config.weight_decay / config.lr
    groups = []
    if decay:
        groups.append({"params": [p for _, p in decay], "weight_decay": wd})
    if no_decay:
        groups.append({"params": [p for _, p in no_decay], "weight_decay": 0.0})
    # foreach=False: one code path whatever the parameter count, so that a resumed run
    # performs bit-identical updates.
    return torch.optim.AdamW(groups, lr=config.lr_at(1), betas=config.betas, eps=config.eps, foreach=False)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for g in optimizer.param_groups:
        g["lr"] = lr
