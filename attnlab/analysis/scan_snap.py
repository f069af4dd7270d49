"""Scan and Snap probes (P05): where the query's attention goes over training, and when the pattern freezes.

For a query m and sequence class f, a long context holds token l with frequency P(l | f), so the
attention mass the query puts on token l is

    c_l  proportional to  exp(Z[m, l]) P(l | f)        (P05's Fig. 4 statistic; :func:`expected_attention`)

P05's claims, in these terms: training *scans*: c moves to the distinct tokens of f (common tokens
lose mass), the logits Z[m, l] of distinct tokens growing faster for larger P(l | f); then it *snaps*:
the pattern freezes after a phase transition, earlier and at higher entropy when the decoder's
learning rate is larger relative to the attention's. :func:`attention_stats` gives the distinct and
common mass and the entropy of c, :func:`distinct_order` the Spearman correlation of Z[m, l] with
P(l | f) over the distinct tokens, :func:`freeze_step` the step by which the entropy has made
95 % of its total change. :func:`train_scan_snap` trains :class:`~attnlab.models.ScanSnapModel`
with P05's two SGD learning rates and records these statistics as it goes.

:func:`sequence_model_probe` measures the same on a trained ``SequenceModel``'s first attention
layer (through ``record_attention``): the last position's attention, summed per token id.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from attnlab.models.scan_snap import ScanSnapModel, yz_optimizers
from attnlab.ops.recording import record_attention
from attnlab.tasks.scan_snap import ScanSnapTask
from attnlab.utils.checks import check_positive_int, describe, fail

__all__ = ["expected_attention", "attention_stats", "distinct_order", "freeze_step", "train_scan_snap",
           "ScanSnapRun", "sequence_model_probe"]


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rho; NaN when either side is constant (to 1e-9 relative), where it is undefined."""
    from scipy.stats import spearmanr

    a, b = a.detach().double(), b.detach().double()
    if any(float(x.max() - x.min()) <= 1e-9 * float(x.abs().max()) for x in (a, b)):
        return float("nan")
    return float(spearmanr(a.numpy(), b.numpy()).statistic)


def expected_attention(Z: torch.Tensor, task: ScanSnapTask) -> torch.Tensor:
    """c (F, V): for each class f, exp(Z[m_f, l]) P(l | f), normalised over l."""
    if Z.shape != (task.vocab_size, task.vocab_size):
        fail("Z", f"a ({task.vocab_size}, {task.vocab_size}) matrix", describe(Z))
    logits = Z.detach().double()[task.query] + task.probs.clamp_min(1e-300).log()
    return torch.where(task.probs > 0, logits, torch.full_like(logits, -torch.inf)).softmax(dim=-1)


def attention_stats(c: torch.Tensor, task: ScanSnapTask) -> dict[str, float]:
    """Class-mean ``distinct_mass`` (on the class's own distinct tokens), ``common_mass`` and ``entropy`` (nats) of c."""
    own = torch.zeros_like(c, dtype=torch.bool)
    own.scatter_(1, task.distinct, True)
    entropy = -(c * c.clamp_min(1e-300).log()).sum(-1)
    return {"distinct_mass": float((c * own).sum(-1).mean()), "common_mass": float(c[:, task.common].sum(-1).mean()),
            "entropy": float(entropy.mean())}


def distinct_order(weights: torch.Tensor, task: ScanSnapTask) -> float:
    """Class-mean Spearman correlation between ``weights[f, l]`` and P(l | f) over the distinct tokens l of f.

    ``weights``: (F, V), e.g. ``Z[task.query]`` (the attention logits) or per-occurrence attention.
    """
    return sum(_spearman(weights[f, task.distinct[f]], task.probs[f, task.distinct[f]])
               for f in range(task.num_facts)) / task.num_facts


def freeze_step(steps: list[int], values: list[float], fraction: float = 0.95) -> int:
    """The first recorded step after which ``values`` stay within (1 - fraction) of their total change of the end."""
    if len(steps) != len(values) or not values:
        fail("steps, values", "two lists of equal, non-zero length", f"{len(steps)} and {len(values)}")
    total = abs(values[-1] - values[0])
    band = (1 - fraction) * total
    for k in range(len(values)):
        if all(abs(v - values[-1]) <= band for v in values[k:]):
            return steps[k]
    return steps[-1]


@dataclass
class ScanSnapRun:
    """A training run of the Y/Z model: the model and, every ``record_every`` steps (and at 0), ``history`` rows of
    step, loss, distinct_mass, common_mass, entropy, the Spearman ``order`` of Z over the distinct tokens and, when
    asked for, ``c`` (F, V) itself."""

    model: ScanSnapModel
    history: list[dict] = field(default_factory=list)

    def series(self, key: str) -> list[float]:
        """One statistic over the recorded steps."""
        return [row[key] for row in self.history]


def _record(run: ScanSnapRun, task: ScanSnapTask, step: int, loss: float, keep_c: bool) -> None:
    Z = run.model.Z.detach()
    c = expected_attention(Z, task)
    order = distinct_order(Z[task.query], task) if bool((Z != 0).any()) else float("nan")
    run.history.append({"step": step, "loss": loss, **attention_stats(c, task), "order": order,
                        **({"c": c} if keep_c else {})})


def train_scan_snap(task: ScanSnapTask, *, steps: int = 200, lr_z: float = 10.0, ratio: float = 1.0,
                    momentum: float = 0.9, batch_size: int = 128, seed: int = 0, record_every: int = 1,
                    keep_c: bool = False) -> ScanSnapRun:
    """Train a zero-initialised :class:`ScanSnapModel` on ``task`` with SGD: eta_Z = ``lr_z``, eta_Y = ``ratio * lr_z``.

    Batch i of the run is ``task.batch("train", i)`` with the task's seed; ``seed`` offsets the batch index
    (so seeds see different data and the same seed the same data). ``keep_c``: store c in every history row. fp32.
    """
    check_positive_int("steps", steps)
    check_positive_int("record_every", record_every)
    model = ScanSnapModel(task.vocab_size)
    opt_y, opt_z = yz_optimizers(model, lr_z=lr_z, ratio=ratio, momentum=momentum)
    run = ScanSnapRun(model)
    _record(run, task, 0, float("nan"), keep_c)
    for step in range(1, steps + 1):
        batch = task.batch("train", seed * 1_000_003 + step, batch_size)
        loss = F.cross_entropy(model(batch.inputs), batch.targets)
        opt_y.zero_grad()
        opt_z.zero_grad()
        loss.backward()
        opt_y.step()
        opt_z.step()
        if step % record_every == 0 or step == steps:
            _record(run, task, step, float(loss.detach()), keep_c)
    return run


@torch.no_grad()
def sequence_model_probe(model: nn.Module, task: ScanSnapTask, *, batches: int = 4, batch_size: int = 64,
                         split: str = "val") -> dict[str, float]:
    """P05's statistics on a trained ``SequenceModel`` (token input, last position predicts): its first layer.

    The last position's attention over the context (head mean, query position excluded and the rest
    renormalised), summed per token id and averaged per class, gives c (F, V); the per-occurrence
    attention (mass / count) stands in for exp(Z[m, l]) in :func:`distinct_order`.
    """
    was_training = model.training
    model.eval()
    v = task.vocab_size
    mass = torch.zeros(task.num_facts, v, dtype=torch.float64)
    count = torch.zeros(task.num_facts, v, dtype=torch.float64)
    try:
        for i in range(batches):
            batch = task.batch(split, i, batch_size)
            with record_attention(model) as rec:
                model(batch.inputs)
            if not rec.maps:
                fail("model", "a model whose first layer records attention probabilities", type(model).__name__)
            first = rec.maps[sorted(rec.maps, key=_layer_order)[0]][0]  # (B, H, N, N)
            att = first[:, :, -1, :-1].mean(1).double()                 # the query's attention to the context
            att = att / att.sum(-1, keepdim=True)
            context = batch.inputs[:, :-1]
            for f in range(task.num_facts):
                rows = batch.extras["fact"] == f
                mass[f] += torch.zeros(v, dtype=torch.float64).scatter_add(0, context[rows].reshape(-1),
                                                                            att[rows].reshape(-1))
                count[f] += torch.bincount(context[rows].reshape(-1), minlength=v).double()
    finally:
        model.train(was_training)
    c = mass / mass.sum(-1, keepdim=True)
    per_occurrence = mass / count.clamp_min(1)
    return {**attention_stats(c, task), "order": distinct_order(per_occurrence, task)}


def _layer_order(label: str) -> tuple:
    """Sort recorder labels ``blocks.<i>.mixer`` by block index."""
    return tuple(int(p) if p.isdigit() else 0 for p in label.split("."))
