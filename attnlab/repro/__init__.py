"""Each paper's key finding reproduced at CPU scale: ``attnlab repro <slug>``.

``REPROS`` maps a slug (from PAPERS.md) to the module implementing it; modules are imported
only when run. A module holds its paper's claim, budgets, figure names, rule (``judge``) and
``run``; everything they share (runner, the protocol, intervals, rules, arms, vision studies, plots) is
in :mod:`attnlab.repro.harness`; ``attnlab repro --all`` and the HTML verdict book are in
:mod:`attnlab.repro.book`. Add one line per reproduction.
"""
from attnlab.repro.harness import (
    DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, VERDICTS, ReproContext, ReproOutcome, ReproResult, load_result, run_repro,
)

REPROS: dict[str, str] = {
    "spectformer": "attnlab.repro.spectformer",
    "activator": "attnlab.repro.activator",
    "convit": "attnlab.repro.convit",
    "crossvit": "attnlab.repro.crossvit",
    "tnt": "attnlab.repro.tnt",
    "shvit": "attnlab.repro.shvit",
    "path_ensemble": "attnlab.repro.path_ensemble",
    "hyena_nd": "attnlab.repro.hyena_nd",
    "instability_proxies": "attnlab.repro.instability_proxies",
    "icl_regression": "attnlab.repro.icl_regression",
    "deltanet": "attnlab.repro.deltanet",
    "random_features": "attnlab.repro.random_features",
    "mamba_ssm": "attnlab.repro.mamba_ssm",
    "biformer": "attnlab.repro.biformer",
    "s2aformer": "attnlab.repro.s2aformer",
    "ssa_pathways": "attnlab.repro.ssa_pathways",
    "combiner": "attnlab.repro.combiner",
    "sea": "attnlab.repro.sea",
    "dinat": "attnlab.repro.dinat",
    "axial": "attnlab.repro.axial",
    "kmax_deeplab": "attnlab.repro.kmax_deeplab",
    "fod": "attnlab.repro.fod",
    "fit": "attnlab.repro.fit",
    "unified_long_sequence": "attnlab.repro.unified_long_sequence",
    "attention_drop": "attnlab.repro.attention_drop",
    "scan_snap": "attnlab.repro.scan_snap",
    "att_svm": "attnlab.repro.att_svm",
    "complexformer": "attnlab.repro.complexformer",
    "deconstructing_attention": "attnlab.repro.deconstructing_attention",
    "echoatt": "attnlab.repro.echoatt",
    "isomer": "attnlab.repro.isomer",
    "video_anomaly": "attnlab.repro.video_anomaly",
}

__all__ = ["REPROS", "run_repro", "load_result", "ReproContext", "ReproOutcome", "ReproResult", "HOLDS",
           "DOES_NOT_HOLD", "INCONCLUSIVE", "VERDICTS"]
