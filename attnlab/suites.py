"""Named suites for ``attnlab compare``: which mixers, on which tasks, how long.

A suite is a list of mixer specs (a registered mixer name, or a backbone pattern
such as ``"deltanet,softmax"`` for a hybrid) and a list of :class:`TaskRun`
(task name + kwargs + model size + training budget). The ``default`` suite is
sized to finish within 5 minutes on a 2-core CPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from attnlab.utils.names import lookup

__all__ = ["TaskRun", "Suite", "SUITES", "get_suite"]


@dataclass(frozen=True)
class TaskRun:
    """One task of a suite and the training budget every mixer gets on it."""

    task: str
    task_kwargs: dict = field(default_factory=dict)
    dim: int = 64
    depth: int = 2
    num_heads: int = 4
    steps: int = 300
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 30
    eval_batches: int = 4
    model_kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    """A named comparison: mixer specs x task runs."""

    name: str
    description: str
    mixers: tuple[str, ...]
    tasks: tuple[TaskRun, ...]


# The default suite: sized so that every run finishes its learning curve's decisive part within
# the 5-minute budget (measured: softmax solves this recall in 400 steps, accuracy 1.00, while
# linear attention stays at 0.25 and no mixing at chance 0.03; 300 char-LM steps separate softmax
# from no mixing by 0.3 bits per character).
_RECALL_DEFAULT = TaskRun("associative_recall", {"seq_len": 32, "num_pairs": 4, "vocab_size": 64}, dim=64, depth=2,
                          steps=400, batch_size=64, lr=3e-3)
_CHAR_DEFAULT = TaskRun("char_lm", {"seq_len": 128}, dim=64, depth=2, steps=300, lr=3e-3)

SUITES: dict[str, Suite] = {
    "default": Suite(
        "default",
        "Softmax attention (with and without qk-layernorm), linear attention and no mixing on associative recall "
        "and char-level LM (stdlib sources); about 3 minutes on 2 cores (budget: 5).",
        ("softmax", "softmax_qknorm", "linear_attention", "identity"),
        (_RECALL_DEFAULT, _CHAR_DEFAULT),
    ),
    "vision": Suite(
        "vision",
        "The vision designs (issue #5) at their tiny configs beside a plain ViT (softmax, width 64, depth 4): shapes "
        "(no distractors) and digits, 32 px; about 7 minutes on 2 cores.",
        ("softmax",) + tuple(f"model:{name}_tiny" for name in (
            "spectformer", "activator", "convit", "crossvit", "tnt", "shvit", "biformer", "dinat", "s2aformer",
            "hyena_vit", "hyena_hybrid", "path_ensemble")),
        (TaskRun("shapes", {"num_distractors": 0}, dim=64, depth=4, num_heads=4, steps=200, lr=2e-3, warmup_steps=20),
         TaskRun("digits", {}, dim=64, depth=4, num_heads=4, steps=100, lr=2e-3, warmup_steps=10)),
    ),
    "linear": Suite(
        "linear",
        "Linear-time mixers (issue #3: P12 DeltaNet and its softmax hybrid, P23 Mamba, P15 Hyena, linear attention) "
        "against softmax and identity on associative recall and char-level LM; about 7 minutes on 2 cores.",
        ("deltanet", "deltanet,softmax", "mamba", "hyena", "linear_attention", "softmax", "identity"),
        # the default suite's task runs: measured to separate softmax from linear attention and no mixing
        # (the earlier 8-pair / 250-step recall run was never checked to separate them)
        (_RECALL_DEFAULT, _CHAR_DEFAULT),
    ),
    "smoke": Suite(
        "smoke",
        "Seconds-long smoke run (tests, CI): two mixers, one short task.",
        ("softmax", "identity"),
        (TaskRun("associative_recall", {"seq_len": 32, "num_pairs": 4}, dim=32, depth=1, num_heads=2, steps=20,
                 batch_size=16, lr=3e-3, warmup_steps=2, eval_batches=1),),
    ),
}


def get_suite(name: str) -> Suite:
    """The suite called ``name``; KeyError listing the suites (and close matches) if unknown."""
    return lookup(SUITES, name, "suite", arg="suite")
